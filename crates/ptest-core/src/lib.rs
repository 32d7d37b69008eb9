//! ptest's core: the model, the [`Engine`] trait every isolation level implements, the
//! [`Manager`] that runs environments through their lifecycle, the SQLite [`Store`] shared by
//! every `ptest` process of a home, the event log and the layered [`config`].
//!
//! A typical call: open a [`Manager`] on a [`Home`] with the engines you have, create an
//! environment from an [`EnvironmentSpec`], run commands in it, remove it. Each step is one
//! store transaction with its [`IsolationEvent`]; the engine only does the host-side work.
//!
//! ```no_run
//! # use ptest_core::*;
//! # async fn demo(home: &std::path::Path, engines: EngineRegistry) -> ptest_core::Result<()> {
//! // `engines` holds the levels this program has: ptest-local's `DirectoryEngine` for
//! // `basic`, registered with `engines.register(Arc::new(DirectoryEngine::new()))`.
//! let manager = Manager::open(Home::at(home), Config::default(), engines)?;
//!
//! let spec = EnvironmentSpec::new(IsolationLevel::Basic).name(EnvName::new("demo")?);
//! let env = manager.create_environment(spec).await?;
//! let result = manager
//!     .execute_command(&env, ExecRequest::new(["sh", "-c", "echo hi from $PTEST_ENV_NAME"]))
//!     .await?;
//! assert_eq!(result.stdout, "hi from demo\n");
//! manager.cleanup(&env, RemoveOptions::default()).await?;
//! assert!(!env.root.exists());
//! # Ok(()) }
//! ```

pub mod beneath;
mod blocking;
pub mod captured;
pub mod config;
pub mod duration;
mod engine;
mod error;
pub mod failpoint;
mod home;
pub mod hooks;
pub mod limited_root;
pub mod liveness;
mod manager;
pub mod model;
pub mod monitor;
mod name;
pub mod ports;
pub mod repair;
pub mod root;
pub mod services;
mod size;
mod store;

pub use blocking::blocking;
pub use config::Config;
pub use engine::{
    Engine, EngineContext, EngineRegistry, EngineTraits, EnvPackages, ExecRequest, Finding,
    OutputMode, OutputSink, OverlayRefusal, RunningProcess, pass_on,
};
pub use error::{Error, ErrorKind, Result};
pub use home::Home;
pub use manager::{
    EnvFilter, EventFilter, GcOptions, Listener, ListenerId, Manager, RemoveOptions,
    STOPPED_REASON, Subscription,
};
pub use model::*;
pub use name::{EnvId, EnvName, InvalidName};
pub use ports::{PortLease, PortName, PortRange};
pub use size::ByteSize;
pub use store::{EventQuery, Store};
