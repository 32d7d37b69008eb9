//! One entry of the event log.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::IsolationEvent;

/// Something that happened to an environment, with when and the details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log (increasing).
    pub id: i64,
    /// When it happened.
    pub time: Timestamp,
    /// What happened.
    pub event: IsolationEvent,
    /// The environment's id.
    pub env_id: Option<String>,
    /// The environment's name (kept after the environment is gone).
    pub env_name: Option<String>,
    /// Event-specific details (pid, exit code, error text, ...).
    pub details: serde_json::Value,
}
