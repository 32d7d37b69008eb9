//! What cleanup reports: the contract between [`crate::Engine::collect_garbage`] and
//! `gc`, `remove_all` and `shutdown`.

use serde::Serialize;

/// One thing done by `gc`, `remove_all` or `shutdown`.
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    /// The environment's (or host object's) name.
    pub name: String,
    /// The environment's id.
    pub id: String,
    /// What was done: `removed` (an environment or a host object), `reclaimed` (ports) or
    /// `repaired` (a record whose process died unwatched).
    pub action: &'static str,
    /// Why it was chosen.
    pub reason: String,
    /// `None` when done, else what went wrong.
    pub error: Option<String>,
}
