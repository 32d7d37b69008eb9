//! The seed's enums, with exactly its names and values (snake_case on the wire).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Defines a string-valued enum with `Display`, `FromStr` and a list of all values, so that the
/// wire name, the CLI value and the SQL column always agree.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name (snake_case).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        kind: stringify!($name),
                        value: s.to_owned(),
                        expected: &[$($wire),+],
                    }),
                }
            }
        }
    };
}

/// A string that names no value of an enum.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {kind} {value:?}; expected one of: {}", expected.join(", "))]
pub struct UnknownValue {
    /// The enum's name.
    pub kind: &'static str,
    /// The rejected input.
    pub value: String,
    /// The accepted values.
    pub expected: &'static [&'static str],
}

wire_enum! {
    /// How strongly an environment is separated from the host and from other environments.
    IsolationLevel {
        /// A directory tree, sandboxed in a Linux pod where the host allows.
        Basic => "basic",
        /// `basic` plus a Python virtual environment.
        Virtualenv => "virtualenv",
        /// One container on a Docker engine.
        Docker => "docker",
        /// One pod on a Kubernetes cluster.
        Kubernetes => "kubernetes",
    }
}

/// The plainest level, taken when nothing asks for another.
impl Default for IsolationLevel {
    fn default() -> Self {
        Self::Basic
    }
}

impl IsolationLevel {
    /// The level a spec calls for when it names none: what its container settings ask for
    /// ([`ContainerArgs::level`](crate::model::ContainerArgs::level)), else `virtualenv` for
    /// Python settings, else `default` (the configured one). One rule for `env create`,
    /// `ptest.toml` templates and the Python API.
    pub fn implied(containers: &crate::model::ContainerArgs, python: bool, default: Self) -> Self {
        match containers.level() {
            Some(level) => level,
            None if python => Self::Virtualenv,
            None => default,
        }
    }
}

wire_enum! {
    /// Where an environment is in its lifecycle.
    ///
    /// Creation goes `initializing → created → activating → active` (`env create --no-start`
    /// stops at `created`); `env stop` goes `deactivating → inactive`, `env start` back through
    /// `activating → active`; `env pause` makes it `paused` and `env resume` `active` again;
    /// removal goes `deactivating → inactive → cleanup_start → cleaning → cleanup_complete`,
    /// after which the record is deleted. A failed or interrupted step leaves `error`.
    EnvironmentStatus {
        /// The record exists; the engine is building the environment.
        Initializing => "initializing",
        /// The engine has built the environment (root, container, ...).
        Created => "created",
        /// The engine is starting what the environment runs on.
        Activating => "activating",
        /// Ready: commands can run in it.
        Active => "active",
        /// Its processes are being stopped.
        Deactivating => "deactivating",
        /// Nothing runs in it any more; it still exists on disk.
        Inactive => "inactive",
        /// Its processes are frozen (cgroup freezer, `docker pause`): they keep their memory
        /// and ports and run on when it is resumed.
        Paused => "paused",
        /// Removal has been decided.
        CleanupStart => "cleanup_start",
        /// The engine is deleting it.
        Cleaning => "cleaning",
        /// Everything is gone; the record is about to be deleted.
        CleanupComplete => "cleanup_complete",
        /// A step failed or was interrupted; see the environment's `error`.
        Error => "error",
    }
}

wire_enum! {
    /// What a process inside an environment is doing.
    ProcessStatus {
        /// Being spawned.
        Starting => "starting",
        /// Alive.
        Running => "running",
        /// Being signalled to stop.
        Stopping => "stopping",
        /// Exited (see its exit code or signal).
        Stopped => "stopped",
        /// Could not be started or its fate is unknown.
        Error => "error",
        /// Killed because it ran past its timeout.
        Timeout => "timeout",
    }
}

impl ProcessStatus {
    /// Whether the process may still be alive: starting, running or stopping.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Starting | Self::Running | Self::Stopping)
    }
}

wire_enum! {
    /// The state of an environment's network.
    NetworkStatus {
        /// Being set up.
        Initializing => "initializing",
        /// Set up, nothing attached yet.
        Ready => "ready",
        /// Attached and usable.
        Connected => "connected",
        /// Detached.
        Disconnected => "disconnected",
        /// Set-up failed.
        Error => "error",
    }
}

wire_enum! {
    /// A kind of resource that can be limited or measured.
    ResourceType {
        /// CPU time.
        Cpu => "cpu",
        /// Memory.
        Memory => "memory",
        /// Disk space and file count.
        Disk => "disk",
        /// Network traffic.
        Network => "network",
        /// Host ports.
        Port => "port",
    }
}

wire_enum! {
    /// How much of the host an environment's processes may see and do.
    SecurityLevel {
        /// Own directories and cgroup; host namespaces.
        Low => "low",
        /// Plus PID/mount/IPC/UTS namespaces, private /tmp, host filesystem read-only.
        Medium => "medium",
        /// Plus no network by default, no capabilities, no_new_privs.
        High => "high",
        /// Plus a seccomp filter and Landlock.
        Strict => "strict",
    }
}

/// Capabilities a container drops at security `medium` (the docker and kubernetes levels
/// alike): those a test suite has no business with (raw sockets, device nodes, audit,
/// chroot, file capabilities), keeping what package installs need (`CHOWN`,
/// `DAC_OVERRIDE`, `FOWNER`, `SETUID`, `SETGID`, `KILL`, `NET_BIND_SERVICE`, ...).
pub const MEDIUM_CAP_DROP: [&str; 6] = [
    "NET_RAW",
    "MKNOD",
    "AUDIT_WRITE",
    "SYS_CHROOT",
    "SETFCAP",
    "SETPCAP",
];

wire_enum! {
    /// When an environment is removed.
    CleanupPolicy {
        /// As soon as no command runs in it: after each `env exec`, and by `ptest gc`.
        Immediate => "immediate",
        /// Only when asked: `ptest env rm` (the default).
        OnRequest => "on_request",
        /// When the session that created it shuts down (`Manager::shutdown`, the end of
        /// `ptest run`), or by `ptest gc --shutdown`.
        OnShutdown => "on_shutdown",
        /// By `ptest gc` once its time to live has passed.
        Scheduled => "scheduled",
        /// Never automatically; `env rm` needs `--force` and `env rm --all` skips it.
        Never => "never",
    }
}

wire_enum! {
    /// Something that happened to an environment, persisted in the event log.
    IsolationEvent {
        /// Creation started.
        EnvironmentCreating => "environment_creating",
        /// The engine built the environment.
        EnvironmentCreated => "environment_created",
        /// Activation started.
        EnvironmentActivating => "environment_activating",
        /// The environment is ready for commands.
        EnvironmentActivated => "environment_activated",
        /// Its processes are being stopped.
        EnvironmentDeactivating => "environment_deactivating",
        /// Nothing runs in it any more.
        EnvironmentDeactivated => "environment_deactivated",
        /// Its processes were frozen.
        EnvironmentPaused => "environment_paused",
        /// Its processes run again.
        EnvironmentResumed => "environment_resumed",
        /// Removal started.
        EnvironmentCleanupStart => "environment_cleanup_start",
        /// Removal finished.
        EnvironmentCleanupComplete => "environment_cleanup_complete",
        /// A process is being spawned.
        ProcessStarting => "process_starting",
        /// A process is running.
        ProcessStarted => "process_started",
        /// A process is being signalled to stop.
        ProcessStopping => "process_stopping",
        /// A process ended.
        ProcessStopped => "process_stopped",
        /// A network resource is being allocated.
        NetworkAllocating => "network_allocating",
        /// A network resource was allocated.
        NetworkAllocated => "network_allocated",
        /// A network resource is being released.
        NetworkReleasing => "network_releasing",
        /// A network resource was released.
        NetworkReleased => "network_released",
        /// Packages are being installed.
        PackageInstalling => "package_installing",
        /// Packages were installed.
        PackageInstalled => "package_installed",
        /// A snapshot is being taken.
        SnapshotCreating => "snapshot_creating",
        /// A snapshot was taken.
        SnapshotCreated => "snapshot_created",
        /// A snapshot is being restored.
        SnapshotRestoring => "snapshot_restoring",
        /// A snapshot was restored.
        SnapshotRestored => "snapshot_restored",
        /// A snapshot is being deleted.
        SnapshotDeleting => "snapshot_deleting",
        /// A snapshot was deleted.
        SnapshotDeleted => "snapshot_deleted",
        /// A step failed.
        ErrorOccurred => "error_occurred",
        /// A reading crossed a `[monitor]` threshold of the environment's limits.
        ResourceThresholdExceeded => "resource_threshold_exceeded",
        /// A `[[hooks]]` command failed, timed out or could not start.
        HookFailed => "hook_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for v in EnvironmentStatus::ALL {
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("\"{}\"", v.as_str()));
            assert_eq!(v.as_str().parse::<EnvironmentStatus>().unwrap(), *v);
        }
        assert_eq!(
            IsolationEvent::EnvironmentCleanupComplete.as_str(),
            "environment_cleanup_complete"
        );
    }

    #[test]
    fn seed_values_are_exact() {
        let names = |all: &[CleanupPolicy]| all.iter().map(|v| v.as_str()).collect::<Vec<_>>();
        assert_eq!(
            names(CleanupPolicy::ALL),
            [
                "immediate",
                "on_request",
                "on_shutdown",
                "scheduled",
                "never"
            ]
        );
        assert_eq!(IsolationEvent::ALL.len(), 29);
        assert_eq!(EnvironmentStatus::ALL.len(), 11);
    }

    #[test]
    fn unknown_value_lists_choices() {
        let err = "pod".parse::<IsolationLevel>().unwrap_err().to_string();
        assert!(
            err.contains("basic, virtualenv, docker, kubernetes"),
            "{err}"
        );
    }
}
