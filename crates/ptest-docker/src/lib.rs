//! ptest's `docker` level: every environment is one container on a Docker engine, reached
//! through [bollard]. [`DockerEngine`] implements [`ptest_core::Engine`]; the manager drives it.
//!
//! A typical life: [`Engine::check`](ptest_core::Engine::check) refuses what a container cannot
//! apply (an overlaid workspace, a missing image setting); `create` checks the sockets the
//! environment asks for, makes the environment root as the `basic` level does (marker and
//! anatomy, via [`ptest_core::root`]; a size-limited tmpfs with `--disk`/`--files`, see
//! [`ptest_core::limited_root`]), resolves the image
//! (local, else a pull, else a clear error; or a build of a local directory tagged
//! `ptest-build:<content hash>` and reused), and creates the container: labelled
//! `ptest.env=<id>` and `ptest.home=<hash of PTEST_HOME>`, the root bind-mounted at `/ptest`
//! and its `workspace/` at `/workspace`, Docker's init as PID 1 reaping children, limits and
//! security options from the spec (see [`container`]). `activate` starts it; `spawn` runs a
//! command through the exec API with stdout and stderr kept apart, tied to the caller by a
//! watchdog that kills it if the caller dies (see `exec`); `kill` kills the command's
//! process tree; `deactivate` stops the container; `cleanup` removes it and then the root.
//! [`DockerEngine::gc`] removes containers, networks and volumes this home labelled whose
//! environment is no longer recorded (and a removed container's root, unmounting a `--disk`
//! tmpfs), and never anything unlabelled.
//!
//! The engine connects lazily (honouring `DOCKER_HOST`, negotiating the API version), so
//! constructing it never fails, even when no engine runs.

mod cgroup;
mod connection;
pub mod container;
mod engine;
mod exec;
mod gc;
mod image;
mod network;

pub use container::{CONTAINER_ROOT, CONTAINER_WORKSPACE, LABEL_ENV, LABEL_HOME, LABEL_NAME};
pub use engine::{DockerEngine, IMAGE_COMMAND};
pub use gc::{ObjectKind, Reaped};
