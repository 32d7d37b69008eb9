//! ptest's local engines: environments that live on this host as directories.
//!
//! [`DirectoryEngine`] implements the `basic` level as a plain directory tree (the root's
//! anatomy, a marker, commands run with the root's `workspace/` as working directory). Each
//! command runs in its own process group and carries `PTEST_ENV_ID`, so the engine can find and
//! kill everything an environment started, daemons included, and measure what it uses.
//!
//! [`VirtualenvEngine`] adds a Python venv at `<root>/venv` (uv or pip, one shared cache,
//! templates reused by spec hash); [`Packages`] installs into it and reads its metadata.
//!
//! Flow of `exec`: [`exec::spawn`] starts the command with a pidfd open on it; `wait` waits on
//! the pidfd, kills what the command left in its process group while the leader is still an
//! unreaped zombie (so the group id cannot be reused), then reaps it and collects the output.

mod directory;
mod exec;
mod packages;
mod procscan;
mod virtualenv;

pub use directory::DirectoryEngine;
pub use packages::Packages;
pub use virtualenv::{VirtualenvEngine, venv_path};
