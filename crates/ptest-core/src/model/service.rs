//! Background processes (`ptest proc start`): what to run, when to restart it, when it counts
//! as ready, and what the store knows about it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ProcessInfo;
use crate::duration;

/// Whether a background process is started again after it ends (Docker's `--restart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RestartPolicy {
    /// Never (`no`).
    #[default]
    No,
    /// After a non-zero exit or a signal death, at most `max` times (`on-failure[:N]`).
    OnFailure {
        /// The most restarts; `None` for no bound.
        max: Option<u32>,
    },
    /// After any end (`always`), unless it was asked to stop.
    Always,
}

impl RestartPolicy {
    /// Whether a process that ended with `success` after `restarts` restarts goes again.
    pub fn restarts_after(self, success: bool, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max } => !success && max.is_none_or(|m| restarts < m),
            RestartPolicy::Always => true,
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max: Some(n) } => write!(f, "on-failure:{n}"),
            RestartPolicy::Always => f.write_str("always"),
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "no" => Ok(RestartPolicy::No),
            None if s == "always" => Ok(RestartPolicy::Always),
            None if s == "on-failure" => Ok(RestartPolicy::OnFailure { max: None }),
            Some(("on-failure", n)) => n
                .parse()
                .map(|n| RestartPolicy::OnFailure { max: Some(n) })
                .map_err(|_| format!("{n:?} is not a number of restarts")),
            _ => Err(format!(
                "unknown restart policy {s:?} (expected no, on-failure[:N] or always)"
            )),
        }
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// When a started background process counts as ready (testcontainers' wait strategies). Every
/// given check must pass; with none, it is ready once it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    /// A TCP port accepting connections inside the environment's network: a number or the
    /// name of one of its port leases.
    pub port: Option<String>,
    /// A regular expression matched against each line of its output.
    pub log: Option<String>,
    /// `URL[=STATUS]`: an HTTP GET answering with STATUS (default: any 2xx).
    pub http: Option<String>,
    /// A command run in the environment that exits 0.
    pub cmd: Option<String>,
    /// How long to wait.
    #[serde(with = "duration::text")]
    pub timeout: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            port: None,
            log: None,
            http: None,
            cmd: None,
            timeout: Duration::from_secs(60),
        }
    }
}

impl Readiness {
    /// Whether any check is asked for.
    pub fn any(&self) -> bool {
        self.port.is_some() || self.log.is_some() || self.http.is_some() || self.cmd.is_some()
    }
}

/// A background process to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Its name in the environment (`[a-z0-9][a-z0-9_.-]{0,62}`).
    pub name: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra variables.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// When to start it again.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// When it counts as ready.
    #[serde(default)]
    pub ready: Readiness,
}

/// A background process as recorded, with what its supervisor and procfs say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The process record (pid of the current run, status, exit).
    #[serde(flatten)]
    pub process: ProcessInfo,
    /// Its name in the environment.
    pub name: String,
    /// The environment's name.
    pub env_name: String,
    /// What was asked for.
    pub spec: ServiceSpec,
    /// How many times it was started again.
    pub restarts: u32,
    /// The supervisor's host pid and start time.
    pub supervisor_pid: Option<u32>,
    /// The supervisor's start time in clock ticks after boot.
    pub supervisor_ticks: Option<u64>,
    /// Whether the supervisor is a task inside the program that started the process (the Rust
    /// API) rather than a `ptest __supervise` of its own; such a supervisor (that program) is
    /// never signalled by another `ptest`.
    #[serde(default)]
    pub supervisor_embedded: bool,
    /// Where its standard output goes.
    pub stdout_log: PathBuf,
    /// Where its standard error goes.
    pub stderr_log: PathBuf,
    /// Why it is in `error` (or other notes from its supervisor).
    pub note: Option<String>,
    /// What it uses now (its whole tree), when it runs.
    pub stats: Option<ProcessStats>,
}

/// What a process tree uses, read from procfs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// Processes in the tree.
    pub processes: u32,
    /// CPU use since start, in percent of one core.
    pub cpu_percent: f64,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Seconds since the current run started.
    pub uptime: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_and_decide() {
        let p: RestartPolicy = "on-failure:2".parse().unwrap();
        assert_eq!(p, RestartPolicy::OnFailure { max: Some(2) });
        assert_eq!(p.to_string(), "on-failure:2");
        assert!(p.restarts_after(false, 1) && !p.restarts_after(false, 2));
        assert!(!p.restarts_after(true, 0));
        assert!(
            "always"
                .parse::<RestartPolicy>()
                .unwrap()
                .restarts_after(true, 99)
        );
        assert!("sometimes".parse::<RestartPolicy>().is_err());
        assert!("on-failure:x".parse::<RestartPolicy>().is_err());
    }
}
