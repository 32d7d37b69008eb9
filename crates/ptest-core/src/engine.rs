//! The contract every isolation level implements, and the registry the manager looks engines
//! up in. The manager owns records, events and policy; an engine owns only what exists on the
//! host (directories, sandboxes, containers), so a new level plugs in without touching the
//! manager.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use ptest_python::{Conflict, Distribution, InstallOutcome, InstallRequest, TreeNode};

use crate::error::Result;
use crate::home::Home;
use crate::model::{
    AddressLease, Environment, EnvironmentSpec, IsolationEvent, IsolationLevel, ProcessInfo,
    ProcessResult, Removal, ResourceUsage,
};

/// Where a command's output goes.
#[derive(Debug, Clone, Default)]
pub enum OutputMode {
    /// Captured into the [`ProcessResult`].
    #[default]
    Capture,
    /// Written straight to the caller's stdout and stderr as it comes (the CLI's `env exec`).
    Inherit,
    /// Written to these descriptors as it comes: the write ends of pipes whose readers keep a
    /// background process's logs, so that a process can supervise several at once.
    Fds {
        /// Where standard output goes.
        stdout: Arc<OwnedFd>,
        /// Where standard error goes.
        stderr: Arc<OwnedFd>,
    },
}

/// A writer an engine passes a command's output on through, as it comes ([`OutputMode::sinks`]).
pub type OutputSink = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

impl OutputMode {
    /// The stdout and stderr writers of a mode that passes output on: the caller's own streams
    /// (`Inherit`) or copies of the given descriptors (`Fds`); `None` for `Capture`. For engines
    /// that relay a command's streams themselves (the command is not a child of this host).
    pub fn sinks(&self) -> std::io::Result<Option<(OutputSink, OutputSink)>> {
        let file = |fd: &OwnedFd| -> std::io::Result<OutputSink> {
            Ok(Box::pin(tokio::fs::File::from_std(std::fs::File::from(
                fd.try_clone()?,
            ))))
        };
        Ok(match self {
            OutputMode::Capture => None,
            OutputMode::Inherit => Some((
                Box::pin(tokio::io::stdout()) as OutputSink,
                Box::pin(tokio::io::stderr()) as OutputSink,
            )),
            OutputMode::Fds { stdout, stderr } => {
                Some((file(stdout.as_ref())?, file(stderr.as_ref())?))
            }
        })
    }
}

/// Writes `bytes` through `sink`. A closed stdout or stderr of the caller does not stop the
/// command: the rest of its output is dropped.
pub async fn pass_on(sink: &mut OutputSink, bytes: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let _ = sink.write_all(bytes).await;
    let _ = sink.flush().await;
}

/// A command to run in an environment.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra variables, on top of the environment's own.
    pub env: Vec<(String, String)>,
    /// Kill the whole process tree after this long.
    pub timeout: Option<Duration>,
    /// Where output goes.
    pub output: OutputMode,
    /// Working directory. As given to [`crate::Manager::execute_command`]: relative to the
    /// workspace (or absolute, beneath the root); as handed to an engine: relative to the
    /// root, checked to stay in it. `None`: the workspace.
    pub cwd: Option<std::path::PathBuf>,
    /// Pass SIGINT, SIGTERM, SIGHUP and SIGQUIT that this program receives while the command
    /// runs on to the command's process group, and keep waiting for it: what a terminal's
    /// Ctrl-C or a CI runner's stop should reach. For command-line front ends; a library
    /// caller keeps its own signal handling by leaving it off.
    pub forward_signals: bool,
}

impl ExecRequest {
    /// A request to run `argv` with captured output and no timeout.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> Self {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Why an engine mounts no project overlay for a spec ([`Engine::overlay_refusal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayRefusal {
    /// Why, as a clause ("security low shares the host's mount namespace").
    pub reason: String,
    /// Never for such a spec, whatever the host (a container, security `low`): a caller that
    /// did not ask for an overlay copies the project without a word. `false`: this host
    /// cannot, which is worth a warning.
    pub by_design: bool,
}

/// What a level's environments let callers above the engines do: the runner and the CLI ask
/// this instead of naming levels ([`Engine::traits`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineTraits {
    /// Commands see the environment's root at its host path, so a file ptest writes beneath
    /// the root is found inside by that same path (`ptest run` places its pytest plugin so).
    pub root_at_host_path: bool,
    /// ptest's fault proxy can serve the environment's ports from its network namespace
    /// (`ptest net`).
    pub network_faults: bool,
    /// Its environments have Python packages of their own ([`Engine::packages`]).
    pub packages: bool,
    /// Its environments' workspace is a directory on this host, under the root ptest made:
    /// `ptest run` copies, overlays or binds the project there.
    pub host_workspace: bool,
    /// A copy of a host directory can be placed in its environments ([`Engine::copy_in`]):
    /// how `ptest run` puts the project in a workspace that is not on this host.
    pub copies_in: bool,
    /// A file or directory of its environments can be copied to this host
    /// ([`Engine::copy_out`]): how `ptest run` reads a suite's JUnit report from a workspace
    /// that is not on this host.
    pub copies_out: bool,
}

/// An environment's Python packages (`ptest pkg`), from an engine whose environments have a
/// Python of their own ([`Engine::packages`]). Installs and uninstalls run inside the
/// environment; reads come from the installed metadata.
#[async_trait]
pub trait EnvPackages: Send + Sync {
    /// Installs `request`, logging `package_installing` and `package_installed`.
    async fn install(&self, request: InstallRequest) -> Result<InstallOutcome>;
    /// Uninstalls packages by name.
    async fn uninstall(&self, names: &[String]) -> Result<InstallOutcome>;
    /// Every installed distribution, sorted by name.
    fn list(&self) -> Result<Vec<Distribution>>;
    /// One installed distribution ([`crate::Error::Missing`] when it is not installed).
    fn show(&self, name: &str) -> Result<Distribution>;
    /// `name==version` lines, as `pip freeze` prints them.
    fn freeze(&self) -> Result<Vec<String>>;
    /// The dependency tree, from `root` or from every top-level distribution.
    fn tree(&self, root: Option<&str>) -> Result<Vec<TreeNode>>;
    /// Unmet requirements, as `pip check` finds them.
    fn check(&self) -> Result<Vec<Conflict>>;
}

/// A command that has been spawned and is running.
#[async_trait]
pub trait RunningProcess: Send {
    /// Its host pid and the kernel's start time for it (see [`crate::liveness`]).
    fn pid(&self) -> (u32, u64);
    /// Whether it has ended already, learnt without waiting. The manager then records its
    /// start and end in one transaction (a short command often ends before its engine has
    /// even reported it started). `false` where that is not known cheaply.
    fn has_ended(&mut self) -> bool {
        false
    }
    /// Waits for it to end (or kills its tree at the timeout) and reports.
    async fn wait(self: Box<Self>) -> Result<ProcessResult>;
}

impl Finding {
    /// Whether an object outside the store carries `env`'s and its home's owner labels
    /// ([`crate::ENV_LABEL`], [`crate::HOME_LABEL`]), read through `label`, for
    /// `env validate`.
    pub fn owner_labels<'a>(
        env: &Environment,
        home_hash: &str,
        label: impl Fn(&str) -> Option<&'a str>,
    ) -> Finding {
        let (env_label, home_label) = (label(crate::ENV_LABEL), label(crate::HOME_LABEL));
        Finding {
            check: "labels".into(),
            ok: env_label == Some(env.id.as_str()) && home_label == Some(home_hash),
            detail: format!(
                "{}={} {}={} (expected {} and {home_hash})",
                crate::ENV_LABEL,
                env_label.unwrap_or("<none>"),
                crate::HOME_LABEL,
                home_label.unwrap_or("<none>"),
                env.id,
            ),
        }
    }
}

/// What the engine found when asked whether an environment is intact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// What was checked.
    pub check: String,
    /// Whether it holds.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// What an engine may record through the manager while it works on an environment.
pub trait EngineContext: Send + Sync {
    /// Logs an event about the environment (e.g. `package_installed`).
    fn event(&self, event: IsolationEvent, details: serde_json::Value) -> Result<()>;
    /// Keeps a fact about what was built, shown by `env show` (e.g. the interpreter used).
    fn note(&self, key: &str, value: serde_json::Value) -> Result<()>;
    /// The home the environment belongs to: host objects its environments share (a network
    /// bridge) are named after it.
    fn home(&self) -> &Home;
    /// Leases the environment the first of `candidates` that no environment holds on
    /// `network`, so that concurrent creates never share an address; the lease goes with the
    /// environment's record.
    fn lease_address(
        &self,
        network: &str,
        candidates: &mut dyn Iterator<Item = Ipv4Addr>,
    ) -> Result<Ipv4Addr>;
    /// The addresses environments of this home hold on `network` (to resolve a name to one).
    fn address_leases(&self, network: &str) -> Result<Vec<AddressLease>>;
}

/// One isolation level's implementation.
#[async_trait]
pub trait Engine: Send + Sync {
    /// The level it implements.
    fn level(&self) -> IsolationLevel;

    /// What the engine needs from this host, for `ptest doctor`: the level is available when
    /// every one of these holds.
    fn capabilities(&self) -> Vec<Finding>;

    /// What callers may count on from this level's environments; nothing by default.
    fn traits(&self) -> EngineTraits {
        EngineTraits::default()
    }

    /// The packages of `env`, one of this engine's environments, where its environments
    /// have a Python of their own; `None` where they have none.
    fn packages<'a>(
        &self,
        _manager: &'a crate::Manager,
        _env: Environment,
    ) -> Option<Result<Box<dyn EnvPackages + 'a>>> {
        None
    }

    /// What `env create --dry-run` prints for `spec` (the level's `defaults` applied): the
    /// objects the engine would make, as text, with nothing made or recorded. `None` where
    /// the level makes nothing it could show beforehand.
    async fn manifests(
        &self,
        _spec: EnvironmentSpec,
        _defaults: &crate::config::LevelDefaults,
    ) -> Option<Result<String>> {
        None
    }

    /// Optional features (sandboxing, limits) and whether this host offers them; a missing
    /// feature does not make the level unavailable, asking for it is an error.
    fn features(&self) -> Vec<Finding> {
        Vec::new()
    }

    /// Refuses a spec asking for what this engine or host cannot apply (a limit, a network
    /// mode, a security level), naming what is missing. Called before anything is recorded.
    fn check(&self, spec: &EnvironmentSpec) -> Result<()>;

    /// Builds the environment on the host (root, sandbox, container). On error, whatever was
    /// made is left for [`Engine::cleanup`] to remove. Events and facts worth keeping go
    /// through `ctx`.
    async fn create(&self, env: &Environment, ctx: &dyn EngineContext) -> Result<()>;

    /// Installs the project's wheel without its dependencies (the spec's packages carried
    /// them) into `env`, just after [`Engine::create`] and before anything ran in it:
    /// [`crate::Manager::create_environment_then`] hands the wheel over only then, so that
    /// building it overlaps the engine's own work. `Err(`[`crate::Error::Unsupported`]`)`
    /// where the level installs no Python packages.
    async fn install_project(
        &self,
        env: &Environment,
        project: &crate::model::ProjectWheel,
        ctx: &dyn EngineContext,
    ) -> Result<()> {
        let _ = (project, ctx);
        Err(crate::Error::Unsupported {
            name: env.name.to_string(),
            action: "install a project's wheel into",
            why: format!("the {} level installs no Python packages", env.level),
        })
    }

    /// Starts what the environment needs to run commands (a sandbox holder, a container).
    async fn activate(&self, env: &Environment, ctx: &dyn EngineContext) -> Result<()>;

    /// Spawns a command in the environment.
    async fn spawn(
        &self,
        env: &Environment,
        request: ExecRequest,
    ) -> Result<Box<dyn RunningProcess>>;

    /// Kills a process ptest started in the environment, with its whole tree.
    async fn kill(&self, env: &Environment, process: &ProcessInfo) -> Result<()>;

    /// Checks that what the environment is made of is still there and sound.
    async fn validate(&self, env: &Environment) -> Result<Vec<Finding>>;

    /// Stops what [`Engine::activate`] started. [`Engine::activate`] may be called again
    /// afterwards (`env start`).
    async fn deactivate(&self, env: &Environment) -> Result<()>;

    /// Why this engine would mount no project overlay on the workspace of an environment
    /// made from `spec` (`ptest run`'s `project = "overlay"`), or `None` when it would.
    fn overlay_refusal(&self, spec: &EnvironmentSpec) -> Option<OverlayRefusal> {
        Some(OverlayRefusal {
            reason: format!("a {} environment has no project overlay", spec.level),
            by_design: true,
        })
    }

    /// Gives the overlaid workspace of `env` an empty upper layer again (a retry starts from
    /// the project as it is). Where an overlay was mounted, an engine that can mount one
    /// does this too.
    async fn renew_overlay(&self, env: &Environment) -> Result<()> {
        Err(crate::Error::Unsupported {
            name: env.name.to_string(),
            action: "renew the overlay of",
            why: format!("the {} level mounts no overlay", env.level),
        })
    }

    /// Makes directory `to` of `env` (relative to its root, as an [`ExecRequest::cwd`] handed
    /// to an engine) a copy of the host directory `from`: what `to` held before is removed,
    /// then `from`'s files, directories and symbolic links (as links) are written there. How
    /// `ptest run` places the project where the workspace is not on this host
    /// ([`EngineTraits::copies_in`]). `Err(`[`crate::Error::Unsupported`]`)` where the engine
    /// cannot.
    async fn copy_in(
        &self,
        env: &Environment,
        from: &std::path::Path,
        to: &std::path::Path,
    ) -> Result<()> {
        let _ = (from, to);
        Err(crate::Error::Unsupported {
            name: env.name.to_string(),
            action: "copy a directory into",
            why: format!("the {} level takes no copy of a host directory", env.level),
        })
    }

    /// Copies the file or directory `from` of `env` (relative to its root, as
    /// [`Engine::copy_in`]'s `to`) into the existing host directory `to`, under its own name:
    /// what `to` held under that name is replaced; nothing else of `to` is touched. Only
    /// regular files, directories and symbolic links that stay within the copy come out, and
    /// no more than the engine's bound. How `ptest run` reads a suite's JUnit report where the
    /// workspace is not on this host ([`EngineTraits::copies_out`]).
    /// `Err(`[`crate::Error::Missing`]`)` where `from` is not there;
    /// `Err(`[`crate::Error::Unsupported`]`)` where the engine cannot.
    async fn copy_out(
        &self,
        env: &Environment,
        from: &std::path::Path,
        to: &std::path::Path,
    ) -> Result<()> {
        let _ = (from, to);
        Err(crate::Error::Unsupported {
            name: env.name.to_string(),
            action: "copy a file out of",
            why: format!("the {} level gives no copy of its files", env.level),
        })
    }

    /// Freezes every process of the environment: they keep their memory and open ports and
    /// run on at [`Engine::resume`]. `Err(`[`crate::Error::Unsupported`]`)` where the engine or
    /// host cannot.
    async fn pause(&self, env: &Environment) -> Result<()> {
        Err(crate::Error::Unsupported {
            name: env.name.to_string(),
            action: "pause",
            why: format!("the {} level has no way to freeze processes", env.level),
        })
    }

    /// Lets the processes [`Engine::pause`] froze run again.
    async fn resume(&self, env: &Environment) -> Result<()> {
        Err(crate::Error::Unsupported {
            name: env.name.to_string(),
            action: "resume",
            why: format!("the {} level has no way to freeze processes", env.level),
        })
    }

    /// Deletes everything the environment is made of. Must succeed on a half-made environment
    /// and on one that is already gone.
    async fn cleanup(&self, env: &Environment) -> Result<()>;

    /// What the environment uses now.
    async fn resource_usage(&self, env: &Environment) -> Result<ResourceUsage>;

    /// A port lease of `env` came (`leased`) or went after the environment was made (`ptest
    /// port alloc`, a fault proxy's port): engines that forward host ports into their
    /// environments follow it. Leases made at creation are the engine's to forward then.
    fn port_lease_changed(&self, env: &Environment, port: u16, leased: bool) -> Result<()> {
        let _ = (env, port, leased);
        Ok(())
    }

    /// Removes host objects this engine made for environments that no longer exist (a
    /// `ptest` killed mid-create), given the ids of every recorded environment. Only objects
    /// marked as `home`'s are touched.
    async fn collect_garbage(&self, home: &Home, live_ids: &[String]) -> Vec<Removal> {
        let _ = (home, live_ids);
        Vec::new()
    }
}

/// Engines by level.
#[derive(Clone, Default)]
pub struct EngineRegistry {
    engines: BTreeMap<IsolationLevel, Arc<dyn Engine>>,
}

impl EngineRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the engine for its level.
    pub fn register(&mut self, engine: Arc<dyn Engine>) {
        self.engines.insert(engine.level(), engine);
    }

    /// The engine for `level`, if one is registered.
    pub fn get(&self, level: IsolationLevel) -> Option<&Arc<dyn Engine>> {
        self.engines.get(&level)
    }

    /// The levels that have an engine.
    pub fn levels(&self) -> impl Iterator<Item = IsolationLevel> + '_ {
        self.engines.keys().copied()
    }
}
