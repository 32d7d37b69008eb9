//! `[[suite.services]]`: background processes a suite needs (a server, a database), started
//! in the suite's environment before `setup` and stopped after `teardown`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Command;

/// One service of a suite, as written in `ptest.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Name, unique within the suite (`ptest proc list` shows it).
    pub name: String,
    /// The command (a string run by `sh -c`, or an argv array), run in the suite's working
    /// directory.
    pub run: Command,
    /// Extra variables.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// Ready when this port (a number or the name of a port lease) accepts connections.
    #[serde(default)]
    pub ready_port: Option<String>,
    /// Ready when a line of its output matches this regular expression.
    #[serde(default)]
    pub ready_log: Option<String>,
    /// Ready when `URL[=STATUS]` answers (any 2xx by default).
    #[serde(default)]
    pub ready_http: Option<String>,
    /// Ready when this command exits 0.
    #[serde(default)]
    pub ready_cmd: Option<String>,
    /// How long to wait for readiness (default 60s).
    #[serde(default, with = "ptest_core::duration::option")]
    pub ready_timeout: Option<Duration>,
}
