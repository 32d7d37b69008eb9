//! What a pod is made of, as the caller asks for it: [`PodSpec`] and the choices it holds
//! (network, host view, binds, scratch space). Plain data; [`super::view`] turns it into the
//! holder's system calls.

use std::path::PathBuf;

use crate::cgroup::Cgroup;

/// The pod's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NetworkMode {
    /// Share the host's network namespace.
    Host,
    /// Own network namespace with only `lo`, which is up: services bind 127.0.0.1 freely.
    #[default]
    Loopback,
    /// Own network namespace, nothing up: no network at all.
    None,
}

/// How much of the host filesystem the pod sees (always read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HostView {
    /// The whole host tree, recursively read-only (Linux 5.12+ for `mount_setattr`; older
    /// kernels only make the top mount read-only).
    #[default]
    Full,
    /// Only system directories: `/usr`, `/bin`, `/sbin`, `/lib`, `/lib32`, `/lib64`,
    /// `/libx32`, `/etc` (those that exist; symlinks such as `/bin -> usr/bin` are kept as
    /// symlinks). Anything else must be bound through [`PodSpec::binds`].
    System,
}

/// An extra bind mount into the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Absolute host path (file or directory).
    pub source: PathBuf,
    /// Absolute path inside the pod; created when missing (its parent must be writable or
    /// already exist).
    pub target: PathBuf,
    /// Mount it read-only (recursively).
    pub read_only: bool,
}

impl Bind {
    /// A read-only bind at the same path.
    pub fn read_only(path: impl Into<PathBuf>) -> Bind {
        let path = path.into();
        Bind {
            source: path.clone(),
            target: path,
            read_only: true,
        }
    }

    /// A read-write bind at the same path.
    pub fn read_write(path: impl Into<PathBuf>) -> Bind {
        let path = path.into();
        Bind {
            source: path.clone(),
            target: path,
            read_only: false,
        }
    }
}

/// The pod's scratch space, `/tmp` and `/dev/shm`: always private to the pod, always bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scratch {
    /// A tmpfs of its own for each, of these sizes (in bytes; the pages count against the
    /// memory limit of whoever writes them).
    Tmpfs {
        /// Size of `/tmp`.
        tmp_bytes: u64,
        /// Size of `/dev/shm`.
        shm_bytes: u64,
    },
    /// Host directories bound read-write at `/tmp` and `/dev/shm` (inside a size-limited root,
    /// they count against its limit).
    Dirs {
        /// Shown at `/tmp`.
        tmp: PathBuf,
        /// Shown at `/dev/shm`.
        shm: PathBuf,
    },
}

impl Scratch {
    /// Default size of `/tmp`: 1 GiB.
    pub const TMP_BYTES: u64 = 1 << 30;
    /// Default size of `/dev/shm`: 64 MiB, as Docker's.
    pub const SHM_BYTES: u64 = 64 << 20;
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch::Tmpfs {
            tmp_bytes: Scratch::TMP_BYTES,
            shm_bytes: Scratch::SHM_BYTES,
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// Absolute host directory bound read-write at the same path inside the pod.
    pub root: PathBuf,
    /// Hostname inside the pod's UTS namespace.
    pub hostname: String,
    /// Network namespace mode.
    pub network: NetworkMode,
    /// How much of the host is visible (read-only).
    pub host_view: HostView,
    /// Extra binds, mounted in order after the root.
    pub binds: Vec<Bind>,
    /// Host paths hidden inside the pod. A directory is covered by an empty read-only tmpfs
    /// before the root and the binds are mounted, so a root or bind beneath a mask stays
    /// visible while its siblings do not (e.g. mask `$PTEST_HOME`: the environment sees its
    /// own root, not the others' nor the state database). A file (e.g. `/etc/shadow`) is
    /// covered by `/dev/null`. Paths that do not exist on the host, `/`, and the root itself
    /// or paths beneath it are ignored.
    pub masks: Vec<PathBuf>,
    /// Mount a private `devpts` on `/dev/pts` (with `/dev/ptmx`).
    pub dev_pts: bool,
    /// What the pod's `/tmp` and `/dev/shm` are.
    pub scratch: Scratch,
    /// The cgroup the holder (and so every command) is placed in before it forks anything.
    pub cgroup: Option<Cgroup>,
    /// Keep every process of the pod from the host's abstract Unix sockets: with
    /// [`NetworkMode::Host`] they share the host's (abstract sockets belong to a network
    /// namespace: X11's, systemd's, a container runtime's). The holder enforces a Landlock
    /// scope on itself, which every command inherits; commands of one pod still reach each
    /// other's. Needs Landlock ABI 6 ([`crate::landlock::abstract_socket_scope`]).
    pub scope_abstract_sockets: bool,
}

impl PodSpec {
    /// A spec with loopback network, full read-only host view, no extra binds, no cgroup.
    pub fn new(root: impl Into<PathBuf>, hostname: impl Into<String>) -> PodSpec {
        PodSpec {
            root: root.into(),
            hostname: hostname.into(),
            network: NetworkMode::Loopback,
            host_view: HostView::Full,
            binds: Vec::new(),
            masks: Vec::new(),
            dev_pts: false,
            scratch: Scratch::default(),
            cgroup: None,
            scope_abstract_sockets: false,
        }
    }
}
