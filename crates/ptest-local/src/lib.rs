//! ptest's local engines: environments that live on this host as directories.
//!
//! [`DirectoryEngine`] implements the `basic` level as a directory tree (the root's anatomy, a
//! marker, commands run with the root's `workspace/` as working directory) sandboxed by
//! `ptest-sandbox`: at activation the spec's security level, network mode and limits are
//! resolved against the host (`isolation`), then a cgroup `ptest/env-<id>` and, at `medium`
//! and above, a pod holder are made (`sandbox`); each command enters them (`enter`): the
//! pod's holder forks it, or on the host a relay process does (in the cgroup, if there is
//! one), and ends the command's process group when the caller dies. What leaves the group
//! without a pod is found again through the `PTEST_ENV_ID` it carries (`procscan`). A spec's
//! `overlay` is mounted on `workspace/` inside the pod (`Engine::renew_overlay` replaces its upper
//! layer with an empty one). With `--network bridge` the pod is then plugged into its home's
//! bridge, with an address leased in the store and its `--allow` rules (`network`).
//!
//! [`VirtualenvEngine`] adds a Python venv at `<root>/venv` (uv or pip, one shared cache,
//! templates reused by spec hash); [`Packages`] installs into it and reads its metadata.
//!
//! Background processes (logs, restarts, readiness) are `ptest-supervisor`'s, for every
//! engine.

mod capture;
mod directory;
mod enter;
mod isolation;
mod network;
mod packages;
mod procscan;
mod quota;
mod sandbox;
mod virtualenv;

pub use directory::DirectoryEngine;
pub use packages::Packages;
pub use virtualenv::{VirtualenvEngine, venv_path};
