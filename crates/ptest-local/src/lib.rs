//! ptest's local engines: environments that live on this host as directories.
//!
//! [`DirectoryEngine`] implements the `basic` level as a directory tree (the root's anatomy, a
//! marker, commands run with the root's `workspace/` as working directory) sandboxed by
//! `ptest-sandbox`: at activation the spec's security level, network mode and limits are
//! resolved against the host (`isolation`), then a cgroup `ptest/env-<id>` and, at `medium`
//! and above, a pod holder are made (`sandbox`); each command enters them (`enter`). Without
//! cgroups or namespaces, commands run as plain children in their own process group
//! (`exec`), found again through the `PTEST_ENV_ID` they carry (`procscan`).
//!
//! [`VirtualenvEngine`] adds a Python venv at `<root>/venv` (uv or pip, one shared cache,
//! templates reused by spec hash); [`Packages`] installs into it and reads its metadata.
//!
//! Flow of `exec`: [`exec::spawn`] starts the command with a pidfd open on it; `wait` waits on
//! the pidfd, kills what the command left in its process group while the leader is still an
//! unreaped zombie (so the group id cannot be reused), then reaps it and collects the output.

mod capture;
mod directory;
mod enter;
mod exec;
mod isolation;
mod packages;
mod procscan;
mod quota;
mod sandbox;
pub mod supervisor;
mod virtualenv;

pub use directory::DirectoryEngine;
pub use packages::Packages;
pub use virtualenv::{VirtualenvEngine, venv_path};
