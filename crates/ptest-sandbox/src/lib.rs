//! Linux sandboxing primitives: cgroups (v1 and v2), resource limits, and *pods* — a
//! long-lived holder process owning PID, mount, IPC, UTS and network namespaces and living in
//! the pod's cgroup, which forks the pod's commands itself, so a command costs one fork/exec
//! and never migrates between namespaces or cgroups. The crate knows nothing of test
//! environments; it is the kernel layer below them.
//!
//! Main types:
//! - [`Cgroup`] creates, limits, measures, kills and removes one control group, whichever
//!   hierarchy the host uses; [`cgroup::probe`] says what the host offers.
//! - [`Pod`] is the holder: [`Pod::create`] builds it from a [`PodSpec`], [`Pod::attach`]
//!   reopens it by pid and start time from another process, [`Pod::spawn`] runs a
//!   [`CommandSpec`] inside it (the holder forks it: the request goes over a Unix socket in
//!   the pod's view, reached through `/proc/<holder>/root`), [`Pod::destroy`] tears it down.
//!   The [`SpawnedChild`] is the connection the holder reports the command's end on;
//!   dropping it (or dying) kills the command's process group.
//! - [`spawn_in_cgroup`] runs a command on the host, optionally in a cgroup (no namespaces),
//!   through a relay process that ends the command's group if the caller dies.
//! - [`Rlimits`] are applied in the child before `execve`, then (when asked) the Landlock
//!   rules ([`FsRules`], see [`landlock`]), a [`seccomp`] deny-list filter, and last the
//!   [`Capabilities`] the command keeps.
//! - [`Overlay`] is a copy-on-write layer over a host directory, mounted inside a running pod
//!   by [`Pod::mount_overlay`] (and replaced after [`Pod::unmount`]).
//! - [`tmpfs`] mounts size- and inode-limited roots on the host (disk quotas).
//! - [`bridge::Hub`] is a private switch (a network namespace with a bridge, joined to the
//!   host by an uplink) that pods' network namespaces are plugged into.
//!
//! A typical call sequence:
//!
//! ```no_run
//! use ptest_sandbox::{Cgroup, CommandSpec, Limits, Pod, PodSpec};
//! # fn main() -> ptest_sandbox::Result<()> {
//! let limits = Limits { memory_bytes: Some(256 << 20), pids_max: Some(512), ..Limits::default() };
//! let cgroup = Cgroup::create("ptest", "env-1a2b", &limits)?;
//! let mut spec = PodSpec::new("/home/me/envs/1a2b", "env-1a2b");
//! spec.cgroup = Some(cgroup);
//! let pod = Pod::create(&spec)?;            // holder ready: namespaces, view, lo up
//! let (pid, started) = (pod.holder_pid(), pod.start_time()); // store these
//!
//! // later, possibly in another process:
//! let pod = Pod::attach(pid, started, Some(Cgroup::open("ptest", "env-1a2b")?))?;
//! let cmd = CommandSpec::new(["sh", "-c", "echo hello"]).env("PATH", "/usr/bin:/bin");
//! let child = pod.spawn(&cmd)?;             // the holder forks + execs it
//! let status = child.wait()?;               // or child.exit_fd() in an async reactor
//! assert!(status.success());
//! pod.destroy()?;                           // kill cgroup, holder; remove cgroup
//! # Ok(()) }
//! ```
//!
//! Everything that runs between `fork` and `execve`, and the holder's whole life (it is forked
//! from the caller, and executes a program only when the caller opted in with
//! [`hold_pods_in_program`] or [`hold_pods_in_this_program`]), is async-signal-safe system
//! calls on data prepared beforehand, so these functions may be called from a multi-threaded
//! program. They block (briefly): call them from a dedicated thread, not from an async task.

#![cfg(target_os = "linux")]
// Every `unsafe` block says why it holds (`// SAFETY:`); the workspace denies warnings.
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod bridge;
mod capability;
pub mod cgroup;
mod child;
mod command;
mod error;
pub mod landlock;
mod launch;
mod overlay;
mod pod;
pub mod procfs;
mod relay;
mod rlimit;
pub mod seccomp;
mod step_pipe;
mod sys;
pub mod tmpfs;
pub mod watchdog;
mod zygote;

pub use capability::Capabilities;
pub use cgroup::{Cgroup, CgroupVersion, Controller, Gauges, Limits, Usage};
pub use child::SpawnedChild;
pub use command::{CommandSpec, ExitStatus, Stdio};
pub use error::{Error, Result};
pub use landlock::FsRules;
pub use overlay::Overlay;
pub use pod::{
    Bind, HostView, NetworkMode, Pod, PodSpec, Scratch, hold_pods_in_program,
    hold_pods_in_this_program, serve_if_holder,
};
pub use relay::spawn_in_cgroup;
pub use rlimit::Rlimits;
