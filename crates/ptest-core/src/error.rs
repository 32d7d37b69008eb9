//! The errors of ptest's core, each carrying what a user needs to act on it.

use std::path::PathBuf;

use crate::model::{EnvironmentStatus, IsolationLevel, ProcessInfo};
use crate::name::InvalidName;

/// Result with ptest's core error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, sorted by who can fix it (see [`Error::kind`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name that breaks the naming rule.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),

    /// Bad input other than a name.
    #[error("{0}")]
    Usage(String),

    /// No environment has this id or name.
    #[error("no environment named {0:?} (see `ptest env list`)")]
    NotFound(String),

    /// Something other than an environment is not there (a package, a port lease); the text
    /// says what and where.
    #[error("{0}")]
    Missing(String),

    /// The name is already used.
    #[error("an environment named {0:?} already exists; pick another name or remove it first")]
    NameTaken(String),

    /// `max_environments` would be exceeded.
    #[error(
        "limit reached: {current} environments exist and max_environments is {max}; remove some \
         (`ptest env rm`) or raise the limit (PTEST_MAX_ENVIRONMENTS, config key max_environments)"
    )]
    LimitReached {
        /// The configured limit.
        max: u32,
        /// How many exist.
        current: u32,
    },

    /// A quota (`quota.memory`, `level.docker.max_environments`, ...) would be exceeded.
    #[error(
        "quota {quota} reached: the environments that exist hold {used} of {limit}, and this \
         one asks for {request}; remove some (`ptest env rm`) or raise {quota}"
    )]
    QuotaExceeded {
        /// The configuration key.
        quota: String,
        /// What the existing environments hold.
        used: String,
        /// The quota.
        limit: String,
        /// What the new environment asks for.
        request: String,
    },

    /// A quota is set on a resource, and the new environment has no limit on it (none given,
    /// no default configured), so it cannot be counted.
    #[error(
        "quota {quota} is set, so every environment needs a {resource} limit: give one \
         (`--{resource}`) or configure a default ({default_key})"
    )]
    QuotaNeedsLimit {
        /// The quota's key.
        quota: String,
        /// The resource (`memory`, `cpus`, `disk`).
        resource: &'static str,
        /// The default to set (`level.basic.memory`).
        default_key: String,
    },

    /// The environment already holds a port under this name.
    #[error(
        "environment {env:?} already has a port named {name:?} ({port}); pick another name or release it"
    )]
    PortTaken {
        /// The environment.
        env: String,
        /// The port's name.
        name: String,
        /// The port it holds.
        port: u16,
    },

    /// No port of the range is free.
    #[error(
        "no free port in range {range}: {leased} held by ptest leases, {busy} busy with other \
         programs; release some (`ptest port release`, `ptest env rm`) or widen the range \
         (config key ports.range)"
    )]
    PortsExhausted {
        /// The range.
        range: String,
        /// How many ports of it ptest leases hold.
        leased: usize,
        /// How many were busy with other listeners.
        busy: u32,
    },

    /// Every address of a network is leased.
    #[error(
        "no address left on network {network}: {leased} are leased; remove environments that \
         use it (`ptest env list`)"
    )]
    AddressesExhausted {
        /// The network.
        network: String,
        /// How many addresses are leased.
        leased: usize,
    },

    /// The environment's status does not allow the action.
    #[error("environment {name:?} is {status}, cannot {action}{}", hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
    WrongState {
        /// The environment.
        name: String,
        /// Its status.
        status: EnvironmentStatus,
        /// What was asked.
        action: &'static str,
        /// What to do instead.
        hint: Option<String>,
    },

    /// The environment's engine or this host cannot do what was asked (pause without a
    /// cgroup freezer, say).
    #[error("cannot {action} environment {name:?}: {why}")]
    Unsupported {
        /// The environment.
        name: String,
        /// What was asked.
        action: &'static str,
        /// Why it cannot be done here.
        why: String,
    },

    /// The project overlay could not be mounted on the workspace (its directory on a
    /// filesystem overlayfs refuses as a layer, or a root it refuses as the upper one).
    #[error("the project overlay could not be mounted: {reason}")]
    Overlay {
        /// What the kernel or the engine said.
        reason: String,
    },

    /// Processes still run in the environment.
    #[error(
        "environment {name:?} has {} running process(es) ({}); stop them or use --force",
        processes.len(),
        processes.iter().map(|p| format!("pid {}: {}", p.pid, p.command.join(" "))).collect::<Vec<_>>().join(", ")
    )]
    Busy {
        /// The environment.
        name: String,
        /// What still runs.
        processes: Vec<ProcessInfo>,
    },

    /// The environment has no background process of this name.
    #[error("environment {env:?} has no process named {name:?} (see `ptest proc list {env}`)")]
    NoProcess {
        /// The environment.
        env: String,
        /// The process name asked for.
        name: String,
    },

    /// A background process of this name still runs in the environment.
    #[error(
        "a process named {name:?} already runs in environment {env:?}; stop it first or pick another name"
    )]
    ProcessNameTaken {
        /// The environment.
        env: String,
        /// The process name.
        name: String,
    },

    /// The root directory cannot be used or removed.
    #[error("root {}: {reason}", path.display())]
    Root {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// No engine for this level is available in this build or on this host.
    #[error("the {level} level is not available: {reason}")]
    LevelUnavailable {
        /// The level asked for.
        level: IsolationLevel,
        /// Why not.
        reason: String,
    },

    /// An engine operation failed.
    #[error("{level} engine could not {action}: {source}")]
    Engine {
        /// The engine's level.
        level: IsolationLevel,
        /// What it was doing.
        action: &'static str,
        /// What went wrong: the engine's own error where it has one (an I/O error, the
        /// sandbox's, the Docker or Kubernetes client's), else a message.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The state store failed.
    #[error("state store: {action}: {source}")]
    Store {
        /// What ptest was doing.
        action: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },

    /// The state database is missing, empty, truncated or not a database while there is
    /// state it should hold: nothing is made over it.
    #[error(
        "the state database {0} {reason}; nothing was changed. `ptest doctor --repair` keeps \
         it aside and records the environments whose roots are under {1} again (keep a copy \
         of it first if you mean to inspect it)",
        path.display(),
        path.with_file_name("envs").display()
    )]
    StoreDamaged {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What ptest was doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Who can fix an error; the CLI maps each kind to its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input was wrong (exit 2).
    Usage,
    /// The environment is missing, taken, busy or in the wrong state (exit 3).
    State,
    /// ptest or the host failed (exit 125).
    Internal,
}

impl Error {
    /// Who can fix it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidName(_) | Error::Usage(_) | Error::Root { .. } => ErrorKind::Usage,
            Error::LevelUnavailable { .. } => ErrorKind::Usage,
            Error::NotFound(_)
            | Error::Missing(_)
            | Error::NameTaken(_)
            | Error::LimitReached { .. }
            | Error::QuotaExceeded { .. }
            | Error::QuotaNeedsLimit { .. }
            | Error::WrongState { .. }
            | Error::Unsupported { .. }
            | Error::Busy { .. }
            | Error::PortTaken { .. }
            | Error::PortsExhausted { .. }
            | Error::AddressesExhausted { .. }
            | Error::NoProcess { .. }
            | Error::ProcessNameTaken { .. }
            | Error::StoreDamaged { .. } => ErrorKind::State,
            Error::Engine { .. }
            | Error::Overlay { .. }
            | Error::Store { .. }
            | Error::Io { .. } => ErrorKind::Internal,
        }
    }

    /// This error, as the `level` engine's: an engine built on another (virtualenv on the
    /// directory engine) says which level failed, not which it delegated to.
    pub fn at_level(self, level: IsolationLevel) -> Self {
        match self {
            Error::Engine { action, source, .. } => Error::Engine {
                level,
                action,
                source,
            },
            other => other,
        }
    }

    /// An I/O error with what was being done and where.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Adds "what ptest was doing" to SQLite errors.
pub(crate) trait StoreContext<T> {
    fn ctx(self, action: &'static str) -> Result<T>;
}

impl<T> StoreContext<T> for rusqlite::Result<T> {
    fn ctx(self, action: &'static str) -> Result<T> {
        self.map_err(|source| Error::Store { action, source })
    }
}
