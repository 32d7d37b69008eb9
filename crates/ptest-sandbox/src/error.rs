//! The crate's error type: each variant names the missing or failing piece.

use std::io;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while creating, entering or tearing down a sandbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No usable cgroup hierarchy (neither v1 controllers nor a v2 mount with controllers).
    #[error("no usable cgroup hierarchy: {reason}")]
    NoCgroupHierarchy {
        /// What was looked for and not found.
        reason: String,
    },
    /// A limit needs a controller that is not mounted or not enabled.
    #[error("no cgroup controller {controller} {reason}")]
    ControllerMissing {
        /// Controller name (`memory`, `cpu`, `pids`, ...).
        controller: &'static str,
        /// Why it is unavailable, e.g. "mounted" (v1) or "enabled in /sys/fs/cgroup/cgroup.controllers".
        reason: String,
    },
    /// A cgroup file could not be read, written or created.
    #[error("cgroup {action} {path}: {source}")]
    CgroupIo {
        /// What was attempted ("write", "read", "create", "remove").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A cgroup file held something unexpected.
    #[error("cgroup file {path} has unexpected content {content:?}")]
    CgroupParse {
        /// The file.
        path: PathBuf,
        /// What it held.
        content: String,
    },
    /// `Cgroup::open` found no such group.
    #[error("cgroup {name} not found under {parent}")]
    CgroupNotFound {
        /// Parent group name.
        parent: String,
        /// Group name.
        name: String,
    },
    /// Processes survived `kill_all`.
    #[error("cgroup {path} still has {remaining} process(es) after kill")]
    CgroupNotEmpty {
        /// The group.
        path: PathBuf,
        /// How many remain.
        remaining: usize,
    },
    /// A name that cannot be a cgroup or host name.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// What the name is for.
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// A spec value that cannot be used.
    #[error("invalid {what}: {reason}")]
    InvalidSpec {
        /// Which field.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// User namespaces are needed (not root) but disabled.
    #[error("user namespaces blocked: {reason}")]
    UserNamespacesBlocked {
        /// The sysctl and its value.
        reason: String,
    },
    /// A system call made by the caller failed.
    #[error("{call} failed: {source}")]
    Syscall {
        /// The call and its subject, e.g. "fork" or "open /proc/42/ns/net".
        call: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The pod holder failed while setting itself up.
    #[error("pod holder setup failed at step \"{step}\": {source}")]
    HolderSetup {
        /// The step that failed, e.g. "bind /tmp/root -> /tmp/root".
        step: String,
        /// The errno it got.
        #[source]
        source: io::Error,
    },
    /// The holder exited before reporting readiness.
    #[error("pod holder exited before it was ready")]
    HolderDiedEarly,
    /// No process with the holder's pid.
    #[error("pod holder {pid} is gone")]
    HolderGone {
        /// The pid.
        pid: i32,
    },
    /// The pid now belongs to another process.
    #[error("pid {pid} was reused: start time {found}, expected {expected}")]
    HolderPidReused {
        /// The pid.
        pid: i32,
        /// Start time recorded when the pod was created.
        expected: u64,
        /// Start time of the process holding the pid now.
        found: u64,
    },
    /// The process exists but shares the caller's mount namespace, so it is not a pod holder.
    #[error("process {pid} is not a pod holder (it shares this process's mount namespace)")]
    NotAHolder {
        /// The pid.
        pid: i32,
    },
    /// A command could not be started.
    #[error("spawn {program:?} failed at step \"{step}\": {source}")]
    Spawn {
        /// argv\[0\].
        program: String,
        /// The failing step, e.g. "setns net" or "execve".
        step: &'static str,
        /// The errno it got.
        #[source]
        source: io::Error,
    },
    /// A network tool (`ip`, `nft`) refused a change.
    #[error("{action}: `{command}` failed: {message}")]
    NetworkTool {
        /// What was being done.
        action: String,
        /// The command line.
        command: String,
        /// Its error output, or why it did not run.
        message: String,
    },
}

impl Error {
    pub(crate) fn syscall(call: impl Into<String>, source: io::Error) -> Self {
        Error::Syscall {
            call: call.into(),
            source,
        }
    }

    pub(crate) fn last_os(call: impl Into<String>) -> Self {
        Error::syscall(call, io::Error::last_os_error())
    }
}
