//! The manager: the one place that decides an environment's lifecycle. It records every step
//! in the store (with its event), asks the level's engine to do the host-side work, and applies
//! the cleanup policies.

use std::path::Path;
use std::sync::{Arc, RwLock};

use jiff::Timestamp;

use crate::config::Config;
use crate::engine::{EngineContext, EngineRegistry, ExecRequest, Finding, RunningProcess};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::model::{
    CleanupPolicy, EnvSummary, Environment, EnvironmentSpec, EnvironmentStatus as S, Event,
    IsolationEvent, IsolationLevel, ProcessInfo, ProcessResult, ProcessStatus, ProjectWheel,
    Removal, ResourceUsage,
};
use crate::name::EnvId;
use crate::ports::{PortLease, PortName};
use crate::store::{EventQuery, EventRecord, Store};
use crate::{Engine, root};

/// A function called with every event this manager records.
pub type Listener = Box<dyn Fn(&Event) + Send + Sync>;

/// The handle of a listener, to remove it with [`Manager::remove_listener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

/// Which events a listener or a [`Subscription`] gets.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only these kinds (all when empty).
    pub events: Vec<IsolationEvent>,
    /// Only events of the environment with this name or id.
    pub env: Option<String>,
}

impl EventFilter {
    fn matches(&self, event: &Event) -> bool {
        (self.events.is_empty() || self.events.contains(&event.event))
            && self.env.as_deref().is_none_or(|env| {
                event.env_name.as_deref() == Some(env) || event.env_id.as_deref() == Some(env)
            })
    }
}

/// The persisted event log followed from a point on ([`Manager::subscribe`]): every event
/// recorded into the home, by any process.
#[derive(Debug, Clone)]
pub struct Subscription {
    filter: EventFilter,
    after: i64,
}

impl Subscription {
    /// The events recorded since the last call that the filter lets through (none yet:
    /// empty); does not wait.
    pub fn poll(&mut self, manager: &Manager) -> Result<Vec<Event>> {
        let events = manager.store.events(&EventQuery {
            after: Some(self.after),
            ..Default::default()
        })?;
        if let Some(last) = events.last() {
            self.after = last.id;
        }
        Ok(events
            .into_iter()
            .filter(|e| self.filter.matches(e))
            .collect())
    }

    /// The next event the filter lets through, polling the log every 100 ms.
    pub async fn next(&mut self, manager: &Manager) -> Result<Event> {
        let mut pending = std::collections::VecDeque::new();
        loop {
            pending.extend(self.poll(manager)?);
            if let Some(event) = pending.pop_front() {
                // Put back what came with it: the log position already moved past them.
                if let Some(first) = pending.front() {
                    self.after = first.id - 1;
                }
                return Ok(event);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// Which environments to list.
#[derive(Debug, Clone, Default)]
pub struct EnvFilter {
    /// Only this level.
    pub level: Option<IsolationLevel>,
    /// Only this status.
    pub status: Option<S>,
    /// Only environments carrying every one of these labels.
    pub labels: Vec<(String, String)>,
}

impl EnvFilter {
    fn matches(&self, env: &Environment) -> bool {
        self.level.is_none_or(|l| l == env.level)
            && self.status.is_none_or(|s| s == env.status)
            && self
                .labels
                .iter()
                .all(|(k, v)| env.spec.labels.get(k) == Some(v))
    }
}

/// How to remove an environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoveOptions {
    /// Kill running processes, and remove even under the `never` policy or while another
    /// `ptest` is changing it.
    pub force: bool,
}

/// What `gc` should also collect.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcOptions {
    /// Remove `on_shutdown` environments of every session (a host shutting down).
    pub shutdown: bool,
}

/// Why `env stop` ended an environment's processes, as their records and events say: what
/// `env start` looks for to start its background processes again.
pub const STOPPED_REASON: &str = "environment stopped";

/// Opens environments in one `PTEST_HOME` and runs their lifecycle.
pub struct Manager {
    home: Home,
    store: Store,
    config: Config,
    engines: EngineRegistry,
    listeners: RwLock<Vec<(ListenerId, EventFilter, Listener)>>,
    next_listener: std::sync::atomic::AtomicU64,
    session: String,
}

impl Manager {
    /// Opens `home` (creating it as needed) with `config` and the given engines. Changes left
    /// half-done by a `ptest` that died are marked `error` here.
    pub fn open(home: Home, config: Config, engines: EngineRegistry) -> Result<Self> {
        home.ensure()?;
        crate::store::check_intact(&home.state_db(), &home.envs_dir())?;
        let store = Store::open(&home.state_db())?;
        store.repair_interrupted()?;
        Ok(Self {
            home,
            store,
            config,
            engines,
            listeners: RwLock::new(Vec::new()),
            next_listener: std::sync::atomic::AtomicU64::new(0),
            session: EnvId::random().to_string(),
        })
    }

    /// The home this manager works in.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The state store (read access for listings and tools).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The levels that have an engine in this manager.
    pub fn levels(&self) -> Vec<IsolationLevel> {
        self.engines.levels().collect()
    }

    /// What the engine of `level` needs and which optional features the host offers, if
    /// there is an engine for it.
    pub fn engine_capabilities(
        &self,
        level: IsolationLevel,
    ) -> Option<(Vec<Finding>, Vec<Finding>)> {
        self.engines
            .get(level)
            .map(|e| (e.capabilities(), e.features()))
    }

    /// Calls `listener` with every event this manager records from now on; the handle
    /// removes it ([`Manager::remove_listener`]). Events other processes record reach a
    /// [`Subscription`] instead.
    pub fn add_listener(&self, listener: impl Fn(&Event) + Send + Sync + 'static) -> ListenerId {
        self.add_listener_for(EventFilter::default(), listener)
    }

    /// [`Manager::add_listener`] for the events `filter` lets through.
    pub fn add_listener_for(
        &self,
        filter: EventFilter,
        listener: impl Fn(&Event) + Send + Sync + 'static,
    ) -> ListenerId {
        let id = ListenerId(
            self.next_listener
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        self.listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, filter, Box::new(listener)));
        id
    }

    /// Stops calling the listener `id`; whether it was there.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        let mut listeners = self.listeners.write().unwrap_or_else(|p| p.into_inner());
        let before = listeners.len();
        listeners.retain(|(l, _, _)| *l != id);
        listeners.len() != before
    }

    /// A subscription to the persisted event log from now on (or after event `after`): it
    /// sees what every process records into this home, not only this manager.
    pub fn subscribe(&self, filter: EventFilter, after: Option<i64>) -> Result<Subscription> {
        let after = match after {
            Some(id) => id,
            None => self
                .store
                .events(&EventQuery {
                    limit: Some(1),
                    ..Default::default()
                })?
                .last()
                .map_or(0, |e| e.id),
        };
        Ok(Subscription { filter, after })
    }

    pub(crate) fn emit(&self, event: Event) {
        for (_, filter, listener) in self
            .listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if filter.matches(&event) {
                listener(&event);
            }
        }
        if self.config.hooks.is_empty() {
            return;
        }
        let labels = || {
            event
                .env_id
                .as_deref()
                .and_then(|id| self.store.find(id).ok().flatten())
                .map(|env| env.spec.labels.into_iter().collect())
                .unwrap_or_default()
        };
        for (run, why) in crate::hooks::run(&self.config.hooks, &event, labels) {
            let details = serde_json::json!({
                "hook": run, "event": event.event, "event_id": event.id, "error": why,
            });
            let env = event
                .env_id
                .as_deref()
                .and_then(|id| self.store.find(id).ok().flatten());
            let recorded = self.store.append_event(&EventRecord {
                event: IsolationEvent::HookFailed,
                details,
                env: env.as_ref().map(|e| (&e.id, &e.name)),
            });
            match recorded {
                Ok(ev) => self.emit(ev),
                Err(e) => tracing::warn!("could not record a failed hook: {e}"),
            }
        }
    }

    fn emit_all(&self, events: impl IntoIterator<Item = Event>) {
        events.into_iter().for_each(|e| self.emit(e));
    }

    pub(crate) fn engine(&self, level: IsolationLevel) -> Result<&Arc<dyn Engine>> {
        self.engines
            .get(level)
            .ok_or_else(|| Error::LevelUnavailable {
                level,
                reason: format!(
                    "this ptest has no {level} engine yet (available: {})",
                    self.levels()
                        .iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// What `level`'s environments let a caller do (see [`crate::EngineTraits`]).
    pub fn traits(&self, level: IsolationLevel) -> Result<crate::EngineTraits> {
        Ok(self.engine(level)?.traits())
    }

    /// The Python packages of `env` (`ptest pkg`), where its level's environments have them.
    pub fn packages(&self, env: Environment) -> Result<Box<dyn crate::EnvPackages + '_>> {
        let (name, level) = (env.name.clone(), env.level);
        if let Some(packages) = self.engine(level)?.packages(self, env) {
            return packages;
        }
        Err(Error::Usage(format!(
            "{name} is a {level} environment, which has no packages of its own; packages need \
             --level {}",
            self.levels_where(|t| t.packages).join(" or --level ")
        )))
    }

    /// What creating `spec` would make, as its engine shows it (`env create --dry-run`);
    /// nothing is made or recorded.
    pub async fn manifests(&self, spec: EnvironmentSpec) -> Result<String> {
        let level = spec.level;
        let defaults = self.config.level(level);
        match self.engine(level)?.manifests(spec, defaults).await {
            Some(shown) => shown,
            None => Err(Error::Usage(format!(
                "--dry-run: the {level} engine has nothing to show before it makes an \
                 environment (it makes no manifests)"
            ))),
        }
    }

    /// The names of the levels whose engines have `trait_`, for messages that say where to
    /// go instead.
    pub fn levels_where(&self, trait_: impl Fn(&crate::EngineTraits) -> bool) -> Vec<&'static str> {
        self.engines
            .levels()
            .filter(|l| self.traits(*l).is_ok_and(|t| trait_(&t)))
            .map(|l| l.as_str())
            .collect()
    }

    /// The engines it runs environments with (a project's templates are checked by them
    /// before a run).
    pub fn engines(&self) -> &EngineRegistry {
        &self.engines
    }

    /// Moves `env` to `status`, logging `event`; `owned` marks a multi-step change in progress.
    fn step(
        &self,
        env: &mut Environment,
        status: S,
        owned: bool,
        event: Option<IsolationEvent>,
    ) -> Result<()> {
        let ev = self.store.set_status(
            env,
            status,
            None,
            owned,
            event.map(|e| (e, serde_json::json!({}))),
        )?;
        env.status = status;
        self.emit_all(ev);
        Ok(())
    }

    /// Records that `env` failed while doing `action`, leaving it in `error`.
    fn fail(&self, env: &mut Environment, action: &str, error: &Error) {
        let message = format!("{action}: {error}");
        match self.store.set_status(
            env,
            S::Error,
            Some(&message),
            false,
            Some((
                IsolationEvent::ErrorOccurred,
                serde_json::json!({ "action": action, "error": error.to_string() }),
            )),
        ) {
            Ok(ev) => self.emit_all(ev),
            Err(e) => tracing::warn!("could not record the failure of {}: {e}", env.name),
        }
        env.status = S::Error;
        env.error = Some(message);
    }

    /// Creates an environment from `spec` and makes it active.
    ///
    /// Refuses when `max_environments` exist (checked atomically across processes) or the name
    /// is taken. If the engine fails, what it made is removed and the record deleted; if even
    /// that fails, the record stays in `error` for `env rm` to retry.
    pub async fn create_environment(&self, spec: EnvironmentSpec) -> Result<Environment> {
        self.create_with(spec, true, None).await
    }

    /// Creates an environment as [`Manager::create_environment`] does, with the project's
    /// wheel that `project` comes to installed (without dependencies: the spec's packages
    /// name them) after the engine built the rest and before the environment starts. The
    /// wheel is awaited only then, so it can be built while the engine works; if it cannot
    /// be had, the create fails and is undone like any engine failure.
    pub async fn create_environment_then(
        &self,
        spec: EnvironmentSpec,
        project: impl Future<Output = Result<ProjectWheel>> + Send,
    ) -> Result<Environment> {
        self.create_with(spec, true, Some(Box::pin(project))).await
    }

    /// Creates an environment and leaves it `created`: built, nothing started in it (no
    /// holder, no container running), no command can run until [`Manager::start_environment`].
    pub async fn create_environment_unstarted(&self, spec: EnvironmentSpec) -> Result<Environment> {
        self.create_with(spec, false, None).await
    }

    async fn create_with(
        &self,
        spec: EnvironmentSpec,
        start: bool,
        project: Option<std::pin::Pin<Box<dyn Future<Output = Result<ProjectWheel>> + Send + '_>>>,
    ) -> Result<Environment> {
        let spec = self.with_level_defaults(spec)?;
        let engine = self.engine(spec.level)?.clone();
        engine.check(&spec)?;
        let id = EnvId::random();
        let name = match &spec.name {
            Some(n) => n.clone(),
            None => format!("env-{id}")
                .parse()
                .expect("generated names are valid"),
        };
        let root = match &spec.path {
            Some(p) => std::path::absolute(p).map_err(|e| Error::io("resolving", p, e))?,
            None => self.home.envs_dir().join(id.as_str()),
        };
        if spec.path.is_some() {
            self.check_given_root(&root)?;
            root::check_available(&root)?;
        }
        let now = Timestamp::now();
        let ttl = (spec.cleanup == CleanupPolicy::Scheduled)
            .then(|| spec.ttl.unwrap_or(self.config.level(spec.level).ttl));
        let expires_at = ttl
            .map(|ttl| {
                now.checked_add(ttl)
                    .map_err(|e| Error::Usage(format!("ttl too large: {e}")))
            })
            .transpose()?;
        let mut env = Environment {
            id,
            name,
            level: spec.level,
            status: S::Initializing,
            root,
            spec: EnvironmentSpec { ttl, ..spec },
            created_at: now,
            updated_at: now,
            expires_at,
            error: None,
            details: serde_json::Map::new(),
            ports: Default::default(),
            activated_at: None,
            deactivated_at: None,
            last_activity: None,
        };
        let admission = crate::store::Admission {
            max: self.config.max_environments,
            level_max: self.config.level(env.level).max_environments,
            quota: self.config.quota.clone(),
        };
        let ev = self
            .store
            .insert_environment(&env, &admission, &self.session)?;
        self.emit(ev);
        crate::failpoint::failpoint("create.recorded");

        let built = async {
            for name in &env.spec.ports {
                let port = self.allocate_port(&env, name)?;
                env.ports.insert(name.clone(), port);
            }
            engine
                .create(
                    &env,
                    &Recorder {
                        manager: self,
                        env: &env,
                    },
                )
                .await?;
            if let Some(project) = project {
                let project = project.await?;
                let recorder = Recorder {
                    manager: self,
                    env: &env,
                };
                engine.install_project(&env, &project, &recorder).await?;
            }
            crate::failpoint::failpoint("create.engine_created");
            // What the engine noted while creating (its details) is what activation builds
            // on: a virtualenv's base interpreter, bound into the sandbox.
            self.reload_details(&mut env)?;
            self.step(
                &mut env,
                S::Created,
                // A rest state when nothing is started: no owner left on it.
                start,
                Some(IsolationEvent::EnvironmentCreated),
            )?;
            if !start {
                return Ok(());
            }
            self.activate(&mut env, &engine).await
        }
        .await;
        if let Err(error) = built {
            self.fail(&mut env, "create", &error);
            // The engine cleans up from what it recorded (notes) before failing.
            let env = self.store.find(env.id.as_str())?.unwrap_or(env);
            match engine.cleanup(&env).await {
                Ok(()) => self.emit(self.store.delete_environment(&env)?),
                Err(e) => tracing::warn!("could not undo the failed create of {}: {e}", env.name),
            }
            return Err(error);
        }
        if !start {
            return Ok(env);
        }
        crate::failpoint::failpoint("create.activated");
        self.activated(&mut env)?;
        Ok(env)
    }

    /// `spec` with its level's default limits where it has none; refused where the level is
    /// switched off, or a quota is set on a resource it still has no limit on.
    fn with_level_defaults(&self, mut spec: EnvironmentSpec) -> Result<EnvironmentSpec> {
        let level = self.config.level(spec.level);
        if !level.enabled {
            return Err(Error::Usage(format!(
                "the {0} level is switched off by configuration (level.{0}.enabled = false)",
                spec.level
            )));
        }
        let limits = &mut spec.limits;
        limits.memory = limits.memory.or(level.memory);
        limits.cpus = limits.cpus.or(level.cpus);
        limits.disk = limits.disk.or(level.disk);
        let quota = &self.config.quota;
        for (resource, quoted, limited) in [
            ("memory", quota.memory.is_some(), limits.memory.is_some()),
            ("cpus", quota.cpus.is_some(), limits.cpus.is_some()),
            ("disk", quota.disk.is_some(), limits.disk.is_some()),
        ] {
            if quoted && !limited {
                return Err(Error::QuotaNeedsLimit {
                    quota: format!("quota.{resource}"),
                    resource,
                    default_key: format!("level.{}.{resource}", spec.level),
                });
            }
        }
        Ok(spec)
    }

    /// `activating`, then the engine's activation.
    async fn activate(&self, env: &mut Environment, engine: &Arc<dyn Engine>) -> Result<()> {
        self.step(
            env,
            S::Activating,
            true,
            Some(IsolationEvent::EnvironmentActivating),
        )?;
        engine.activate(env, &Recorder { manager: self, env }).await
    }

    /// `active`, with what activation noted: the caller gets it too (how it is sandboxed,
    /// where its holder is), as engines read it from the value they are handed.
    fn activated(&self, env: &mut Environment) -> Result<()> {
        self.reload_details(env)?;
        self.step(
            env,
            S::Active,
            false,
            Some(IsolationEvent::EnvironmentActivated),
        )?;
        if let Some(stored) = self.store.find(env.id.as_str())? {
            env.activated_at = stored.activated_at;
            env.last_activity = stored.last_activity;
        }
        Ok(())
    }

    /// Starts a `created` or `inactive` environment again (`env start`): the engine activates
    /// it as at creation (a new holder, the container started); its ports are still its own.
    /// Background processes are not started again here: that takes a supervisor (see
    /// `ptest_supervisor::restart_stopped`). A failed start leaves it `error`.
    pub async fn start_environment(&self, env: &Environment) -> Result<Environment> {
        let mut env = self.get_environment(env.id.as_str())?;
        if !matches!(env.status, S::Created | S::Inactive) {
            return Err(self.wrong_state(
                &env,
                "be started",
                "only a created or inactive (stopped) environment starts",
            ));
        }
        let engine = self.engine(env.level)?.clone();
        if let Err(e) = self.activate(&mut env, &engine).await {
            self.fail(&mut env, "start", &e);
            return Err(e);
        }
        self.activated(&mut env)?;
        Ok(env)
    }

    /// Stops an `active` (or `paused`) environment (`env stop`): its background processes and
    /// commands are stopped (services first), the engine releases what it started (the
    /// holder and its namespaces, the container stopped); the root, the venv, the ports and
    /// the record stay. It ends `inactive`; [`Manager::start_environment`] starts it again.
    pub async fn stop_environment(&self, env: &Environment) -> Result<Environment> {
        let mut env = self.get_environment(env.id.as_str())?;
        if !matches!(env.status, S::Active | S::Paused) {
            return Err(self.wrong_state(
                &env,
                "be stopped",
                "only an active or paused environment stops",
            ));
        }
        let engine = self.engine(env.level)?.clone();
        let live = self.processes(&env)?;
        self.deactivate(&mut env, &engine, &live, STOPPED_REASON, true)
            .await?;
        Ok(env)
    }

    /// Freezes every process of an `active` environment (`env pause`: the cgroup freezer,
    /// `docker pause`); they keep their memory and ports. No command can run until
    /// [`Manager::resume_environment`].
    pub async fn pause_environment(&self, env: &Environment) -> Result<Environment> {
        self.freeze(env, true).await
    }

    /// Lets a `paused` environment's processes run again (`env resume`).
    pub async fn resume_environment(&self, env: &Environment) -> Result<Environment> {
        self.freeze(env, false).await
    }

    async fn freeze(&self, env: &Environment, frozen: bool) -> Result<Environment> {
        let mut env = self.get_environment(env.id.as_str())?;
        let (from, to, event) = if frozen {
            (S::Active, S::Paused, IsolationEvent::EnvironmentPaused)
        } else {
            (S::Paused, S::Active, IsolationEvent::EnvironmentResumed)
        };
        if env.status != from {
            return Err(if frozen {
                self.wrong_state(&env, "be paused", "only an active environment pauses")
            } else {
                self.wrong_state(&env, "be resumed", "only a paused environment resumes")
            });
        }
        let engine = self.engine(env.level)?;
        if frozen {
            engine.pause(&env).await?;
        } else {
            engine.resume(&env).await?;
        }
        self.step(&mut env, to, false, Some(event))?;
        Ok(env)
    }

    /// Why the engine of `spec`'s level would mount no project overlay for it (see
    /// [`Engine::overlay_refusal`]).
    pub fn overlay_refusal(&self, spec: &EnvironmentSpec) -> Option<crate::OverlayRefusal> {
        match self.engine(spec.level) {
            Ok(engine) => engine.overlay_refusal(spec),
            Err(e) => Some(crate::OverlayRefusal {
                reason: e.to_string(),
                by_design: true,
            }),
        }
    }

    /// Gives `env`'s overlaid workspace an empty upper layer (from its stored record, which
    /// says where its sandbox is).
    pub async fn renew_overlay(&self, env: &Environment) -> Result<()> {
        let env = self.get_environment(env.id.as_str())?;
        self.engine(env.level)?.renew_overlay(&env).await
    }

    /// Makes directory `to` of `env` (relative to its root) a copy of the host directory
    /// `from`, through its engine (see [`crate::Engine::copy_in`]), as its stored record says
    /// where the environment is.
    pub async fn copy_in(&self, env: &Environment, from: &Path, to: &Path) -> Result<()> {
        let env = self.get_environment(env.id.as_str())?;
        self.engine(env.level)?.copy_in(&env, from, to).await
    }

    /// Copies the file or directory `from` of `env` (relative to its root) into the host
    /// directory `to`, through its engine (see [`crate::Engine::copy_out`]), as its stored
    /// record says where the environment is.
    pub async fn copy_out(&self, env: &Environment, from: &Path, to: &Path) -> Result<()> {
        let env = self.get_environment(env.id.as_str())?;
        self.engine(env.level)?.copy_out(&env, from, to).await
    }

    fn wrong_state(&self, env: &Environment, action: &'static str, hint: &str) -> Error {
        Error::WrongState {
            name: env.name.to_string(),
            status: env.status,
            action,
            hint: Some(hint.to_owned()),
        }
    }

    /// `deactivating`: services, then `live` commands are stopped (`reason` said in their
    /// events); a paused environment is thawed first (a frozen process cannot die); the engine
    /// deactivates; `inactive`, where it `rests` (`env stop`) or removal goes on. A failure
    /// leaves `error`.
    async fn deactivate(
        &self,
        env: &mut Environment,
        engine: &Arc<dyn Engine>,
        live: &[ProcessInfo],
        reason: &str,
        rests: bool,
    ) -> Result<()> {
        let paused = env.status == S::Paused;
        self.step(
            env,
            S::Deactivating,
            true,
            Some(IsolationEvent::EnvironmentDeactivating),
        )?;
        crate::failpoint::failpoint("rm.deactivating");
        let stopped = async {
            if paused {
                engine.resume(env).await?;
            }
            self.stop_services(env, engine, reason).await?;
            for p in live {
                self.record_event(
                    env,
                    IsolationEvent::ProcessStopping,
                    serde_json::json!({ "pid": p.pid, "reason": reason }),
                )?;
                engine.kill(env, p).await?;
            }
            engine.deactivate(env).await
        }
        .await;
        if let Err(e) = stopped {
            self.fail(env, "deactivate", &e);
            return Err(e);
        }
        crate::failpoint::failpoint("rm.deactivated");
        self.step(
            env,
            S::Inactive,
            !rests,
            Some(IsolationEvent::EnvironmentDeactivated),
        )?;
        if let Some(stored) = self.store.find(env.id.as_str())? {
            env.deactivated_at = stored.deactivated_at;
        }
        Ok(())
    }

    /// Replaces `env`'s details with what its engine has noted in the store since.
    fn reload_details(&self, env: &mut Environment) -> Result<()> {
        if let Some(stored) = self.store.find(env.id.as_str())? {
            env.details = stored.details;
        }
        Ok(())
    }

    /// Logs an event about `env` (for operations outside the lifecycle, such as installing
    /// packages into it) and tells the listeners.
    pub fn record_event(
        &self,
        env: &Environment,
        event: IsolationEvent,
        details: serde_json::Value,
    ) -> Result<()> {
        self.emit(self.store.append_event(&EventRecord {
            event,
            details,
            env: Some((&env.id, &env.name)),
        })?);
        Ok(())
    }

    /// Leases a host port to `env` under `name` from the configured range; the command
    /// environment shows it as `PTEST_PORT_<NAME>`.
    pub fn allocate_port(&self, env: &Environment, name: &PortName) -> Result<u16> {
        self.record_event(
            env,
            IsolationEvent::NetworkAllocating,
            serde_json::json!({ "name": name, "range": self.config.ports.range.to_string() }),
        )?;
        let (port, event) =
            self.store
                .lease_port(env, name, self.config.ports.range, crate::ports::can_bind)?;
        self.emit(event);
        if env.status == S::Active
            && let Err(e) = self
                .engine(env.level)
                .and_then(|engine| engine.port_lease_changed(env, port, true))
        {
            let _ = self.release_port(env, name);
            return Err(e);
        }
        Ok(port)
    }

    /// Releases `env`'s port `name`.
    pub fn release_port(&self, env: &Environment, name: &PortName) -> Result<u16> {
        self.record_event(
            env,
            IsolationEvent::NetworkReleasing,
            serde_json::json!({ "name": name }),
        )?;
        let (port, event) = self.store.release_port(env, name)?;
        self.emit(event);
        if env.status == S::Active
            && let Err(e) = self
                .engine(env.level)
                .and_then(|engine| engine.port_lease_changed(env, port, false))
        {
            tracing::warn!("port {port} of {} is still forwarded: {e}", env.name);
        }
        Ok(port)
    }

    /// Leases `env` an address on `network` (see [`EngineContext::lease_address`]), logging
    /// `network_allocating` and `network_allocated`.
    pub fn lease_address(
        &self,
        env: &Environment,
        network: &str,
        candidates: &mut dyn Iterator<Item = std::net::Ipv4Addr>,
    ) -> Result<std::net::Ipv4Addr> {
        self.record_event(
            env,
            IsolationEvent::NetworkAllocating,
            serde_json::json!({ "network": network }),
        )?;
        let (address, event) = self.store.lease_address(env, network, candidates)?;
        self.emit(event);
        Ok(address)
    }

    /// Port leases: all, or those of one environment.
    pub fn port_leases(&self, env: Option<&Environment>) -> Result<Vec<PortLease>> {
        self.store.port_leases(env.map(|e| &e.id))
    }

    /// Finds an environment by id or name.
    pub fn get_environment(&self, id_or_name: &str) -> Result<Environment> {
        self.store
            .find(id_or_name)?
            .ok_or_else(|| Error::NotFound(id_or_name.to_owned()))
    }

    /// The status of an environment, read fresh from the store.
    pub fn get_status(&self, id_or_name: &str) -> Result<S> {
        Ok(self.get_environment(id_or_name)?.status)
    }

    /// Environments matching `filter`, oldest first.
    pub fn list_environments(&self, filter: &EnvFilter) -> Result<Vec<Environment>> {
        Ok(self
            .store
            .environments()?
            .into_iter()
            .filter(|e| filter.matches(e))
            .collect())
    }

    /// [`Manager::list_environments`] as [`EnvSummary`]s: what a listing shows, at a cost that
    /// does not grow with what each record holds.
    pub fn list_summaries(&self, filter: &EnvFilter) -> Result<Vec<EnvSummary>> {
        if filter.labels.is_empty() {
            return self
                .store
                .environment_summaries(filter.level, filter.status);
        }
        // Labels live in the spec: filter whole records.
        Ok(self
            .list_environments(filter)?
            .into_iter()
            .map(EnvSummary::from)
            .collect())
    }

    /// Processes started by ptest that still run in `env`.
    pub fn processes(&self, env: &Environment) -> Result<Vec<ProcessInfo>> {
        self.store.live_processes(&env.id)
    }

    /// Runs a command in `env` and waits for it. The timeout (the request's, else the
    /// environment's, else the level's default) kills the whole process tree.
    pub async fn execute_command(
        &self,
        env: &Environment,
        request: ExecRequest,
    ) -> Result<ProcessResult> {
        let env = self.get_environment(env.id.as_str())?;
        if env.status != S::Active {
            return Err(Error::WrongState {
                name: env.name.to_string(),
                status: env.status,
                action: "run commands",
                hint: Some(match &env.error {
                    Some(e) => format!("{e}; remove it with `ptest env rm {}`", env.name),
                    None => "wait until it is active".into(),
                }),
            });
        }
        if request.argv.is_empty() {
            return Err(Error::Usage("no command given".into()));
        }
        let mut request = request;
        if let Some(cwd) = &request.cwd {
            request.cwd = Some(within_root(&env, cwd)?);
        }
        let engine = self.engine(env.level)?;
        let timeout = request
            .timeout
            .or(env.spec.exec_timeout)
            .or(self.config.level(env.level).exec_timeout());
        let command = request.argv.clone();
        let forward = request.forward_signals.then(Forwarder::new).transpose()?;
        let starting = || serde_json::json!({ "command": command });
        let mut process = match engine.spawn(&env, request).await {
            Ok(p) => p,
            Err(e) => {
                self.record_event(&env, IsolationEvent::ProcessStarting, starting())?;
                self.record_event(&env, IsolationEvent::ErrorOccurred, serde_json::json!({ "action": "spawn", "command": command, "error": e.to_string() }))?;
                return Err(e);
            }
        };
        let (pid, ticks) = process.pid();
        let started_at = Timestamp::now();
        let started = || crate::store::Started {
            pid,
            start_ticks: ticks,
            command: &command,
            started_at,
            starting: starting(),
        };
        // A command that has already ended (a short one often has by the time its engine says
        // it started) is recorded once, start and end together. Otherwise `process_starting`
        // is written with the record, while the command runs: one transaction, not two.
        let record = if process.has_ended() {
            None
        } else {
            let (record, events) = self.store.insert_process(&env, started())?;
            events.into_iter().for_each(|ev| self.emit(ev));
            Some(record)
        };
        let info = ProcessInfo {
            // What the wait uses (to signal or kill it) is its pid and start time.
            id: record.unwrap_or_default(),
            env_id: env.id.clone(),
            pid,
            start_ticks: ticks,
            command: command.clone(),
            status: ProcessStatus::Running,
            started_at,
            ended_at: None,
            exit_code: None,
            signal: None,
        };
        let result = self
            .wait_with_timeout(&env, engine, process, &info, timeout, forward)
            .await?;
        let ended = crate::store::Ended {
            status: if result.timed_out {
                ProcessStatus::Timeout
            } else {
                ProcessStatus::Stopped
            },
            exit_code: result.exit_code,
            signal: result.signal,
            details: serde_json::json!({
                "pid": pid, "exit_code": result.exit_code, "signal": result.signal,
                "timed_out": result.timed_out, "oom_killed": result.oom_killed,
                "duration": result.duration.as_secs_f64(),
            }),
        };
        let events = match record {
            Some(record) => vec![self.store.finish_process(&env, record, ended)?],
            None => self
                .store
                .record_ended_process(&env, started(), ended)?
                .into(),
        };
        events.into_iter().for_each(|ev| self.emit(ev));
        if env.spec.cleanup == CleanupPolicy::Immediate && self.processes(&env)?.is_empty() {
            match self.cleanup(&env, RemoveOptions::default()).await {
                Ok(()) | Err(Error::NotFound(_)) | Err(Error::Busy { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(result)
    }

    async fn wait_with_timeout(
        &self,
        env: &Environment,
        engine: &Arc<dyn Engine>,
        process: Box<dyn RunningProcess>,
        info: &ProcessInfo,
        timeout: Option<std::time::Duration>,
        mut forward: Option<Forwarder>,
    ) -> Result<ProcessResult> {
        let mut wait = process.wait();
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            tokio::select! {
                result = &mut wait => return result,
                () = until(deadline) => break,
                signal = next_signal(&mut forward) => {
                    crate::liveness::signal_group(info.pid, signal);
                }
            }
        }
        self.record_event(
            env,
            IsolationEvent::ProcessStopping,
            serde_json::json!({
                "pid": info.pid, "reason": "timeout",
                "timeout": timeout.map(|t| t.as_secs_f64()),
            }),
        )?;
        engine.kill(env, info).await?;
        let mut result = wait.await?;
        result.timed_out = true;
        Ok(result)
    }

    /// Checks that the environment is intact: its record and what the engine finds.
    pub async fn validate(&self, env: &Environment) -> Result<Vec<Finding>> {
        // A rest state is judged as such: a stopped or paused environment is not broken.
        let mut findings = vec![Finding {
            check: "status".into(),
            ok: matches!(env.status, S::Active | S::Paused | S::Inactive | S::Created),
            detail: match &env.error {
                Some(e) => format!("{}: {e}", env.status),
                None => env.status.to_string(),
            },
        }];
        findings.extend(self.engine(env.level)?.validate(env).await?);
        Ok(findings)
    }

    /// What the environment uses now.
    pub async fn resource_usage(&self, env: &Environment) -> Result<ResourceUsage> {
        self.engine(env.level)?.resource_usage(env).await
    }

    /// Removes an environment: stops its processes, deletes what the engine made, deletes the
    /// record. Refuses while processes run or under the `never` policy unless forced.
    pub async fn cleanup(&self, env: &Environment, options: RemoveOptions) -> Result<()> {
        let mut env = self.get_environment(env.id.as_str())?;
        let refuse = |action, hint: &str| Error::WrongState {
            name: env.name.to_string(),
            status: env.status,
            action,
            hint: Some(hint.to_owned()),
        };
        if !options.force {
            if env.spec.cleanup == CleanupPolicy::Never {
                return Err(refuse(
                    "be removed under the `never` cleanup policy",
                    "use --force to remove it anyway",
                ));
            }
            if matches!(
                env.status,
                S::Initializing | S::Activating | S::Deactivating | S::CleanupStart | S::Cleaning
            ) {
                return Err(refuse(
                    "be removed while another ptest is changing it",
                    "wait, or use --force",
                ));
            }
        }
        let live = self.processes(&env)?;
        if !live.is_empty() && !options.force {
            return Err(Error::Busy {
                name: env.name.to_string(),
                processes: live,
            });
        }
        let engine = self.engine(env.level)?.clone();
        self.deactivate(&mut env, &engine, &live, "environment removed", false)
            .await?;
        self.step(
            &mut env,
            S::CleanupStart,
            true,
            Some(IsolationEvent::EnvironmentCleanupStart),
        )?;
        self.step(&mut env, S::Cleaning, true, None)?;
        if let Err(e) = engine.cleanup(&env).await {
            self.fail(&mut env, "clean up", &e);
            return Err(e);
        }
        crate::failpoint::failpoint("rm.cleaned");
        for name in env.ports.keys() {
            self.record_event(
                &env,
                IsolationEvent::NetworkReleasing,
                serde_json::json!({ "name": name, "port": env.ports[name] }),
            )?;
        }
        for lease in self.store.address_leases(None, Some(&env.id))? {
            self.record_event(
                &env,
                IsolationEvent::NetworkReleasing,
                serde_json::json!({ "network": lease.network, "address": lease.address }),
            )?;
        }
        self.step(&mut env, S::CleanupComplete, true, None)?;
        self.emit(self.store.delete_environment(&env)?);
        Ok(())
    }

    /// Removes every environment matching `filter`, going on past failures; environments
    /// under the `never` policy are skipped unless forced.
    pub async fn cleanup_all(
        &self,
        filter: &EnvFilter,
        options: RemoveOptions,
    ) -> Result<Vec<Removal>> {
        let chosen = self
            .list_environments(filter)?
            .into_iter()
            .filter(|e| options.force || e.spec.cleanup != CleanupPolicy::Never)
            .map(|e| (e, "requested".to_owned()))
            .collect();
        Ok(self.remove_each(chosen, options).await)
    }

    async fn remove_each(
        &self,
        chosen: Vec<(Environment, String)>,
        options: RemoveOptions,
    ) -> Vec<Removal> {
        let mut out = Vec::with_capacity(chosen.len());
        for (env, reason) in chosen {
            let error = self
                .cleanup(&env, options)
                .await
                .err()
                .map(|e| e.to_string());
            out.push(Removal {
                action: "removed",
                name: env.name.to_string(),
                id: env.id.to_string(),
                reason,
                error,
            });
        }
        out
    }

    /// Refuses a `--path` root inside ptest's home (but for `envs/`) or inside another
    /// environment's root: removing that one would delete this one, and ptest's state is no
    /// place for an environment.
    fn check_given_root(&self, root: &Path) -> Result<()> {
        // Compare real paths: a symlink in the way must not hide where the root would be.
        let real = |p: &Path| {
            let mut existing = p.to_owned();
            let mut rest = Vec::new();
            while !existing.exists() {
                match (existing.parent(), existing.file_name()) {
                    (Some(parent), Some(name)) => {
                        rest.push(name.to_owned());
                        existing = parent.to_owned();
                    }
                    _ => break,
                }
            }
            let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
            out.extend(rest.iter().rev());
            out
        };
        let wanted = real(root);
        let home = real(self.home.path());
        if wanted.starts_with(&home) && !wanted.starts_with(real(&self.home.envs_dir())) {
            return Err(Error::Usage(format!(
                "--path {} is inside ptest's home {}; give a directory outside it",
                root.display(),
                home.display()
            )));
        }
        for env in self.store.environments()? {
            if wanted.starts_with(real(&env.root)) {
                return Err(Error::Usage(format!(
                    "--path {} is inside the root of environment {} ({}); removing that one \
                     would delete this one: give a directory outside it",
                    root.display(),
                    env.name,
                    env.root.display()
                )));
            }
        }
        Ok(())
    }

    /// Removes what the cleanup policies say is due and records whose root has vanished,
    /// takes back the ports of environments in `error`, and has every engine remove what it
    /// left on the host for environments that no longer exist.
    pub async fn gc(&self, options: GcOptions) -> Result<Vec<Removal>> {
        let now = Timestamp::now();
        let mut chosen = Vec::new();
        let mut reclaimed = self.repair_services()?;
        for env in self.store.environments()? {
            // An environment in `error` runs nothing: its ports go back to the pool.
            if env.status == S::Error && !env.ports.is_empty() {
                let error = env
                    .ports
                    .keys()
                    .try_for_each(|name| self.release_port(&env, name).map(|_| ()))
                    .err()
                    .map(|e| e.to_string());
                reclaimed.push(Removal {
                    action: "reclaimed",
                    name: env.name.to_string(),
                    id: env.id.to_string(),
                    reason: format!(
                        "ports {:?} reclaimed from an environment in error",
                        env.ports
                    ),
                    error,
                });
            }
            let reason = if env.status != S::Initializing && !env.root.exists() {
                Some(format!("root {} vanished", env.root.display()))
            } else if let Some(why) = unfinished(&env) {
                Some(why)
            } else {
                match env.spec.cleanup {
                    CleanupPolicy::Scheduled if env.expires_at.is_some_and(|t| t <= now) => {
                        Some("time to live expired".to_owned())
                    }
                    CleanupPolicy::Immediate if self.processes(&env)?.is_empty() => {
                        Some("immediate policy and idle".to_owned())
                    }
                    CleanupPolicy::OnShutdown => match run_owner(&env) {
                        // A live run removes its own; not even --shutdown takes them.
                        Some(owner) if owner.is_alive() => None,
                        Some(owner) => Some(format!(
                            "on_shutdown policy, and its run's ptest (pid {}) is gone",
                            owner.pid
                        )),
                        None if options.shutdown => Some("on_shutdown policy".to_owned()),
                        None => None,
                    },
                    _ => None,
                }
            };
            if let Some(reason) = reason {
                chosen.push((env, reason));
            }
        }
        reclaimed.extend(
            self.remove_each(chosen, RemoveOptions { force: true })
                .await,
        );
        let live: Vec<String> = self
            .store
            .environments()?
            .iter()
            .map(|e| e.id.to_string())
            .collect();
        for level in self.levels() {
            let engine = self.engine(level)?.clone();
            reclaimed.extend(engine.collect_garbage(&self.home, &live).await);
        }
        Ok(reclaimed)
    }

    /// Removes the `on_shutdown` environments this manager created. Call it when done.
    pub async fn shutdown(&self) -> Result<Vec<Removal>> {
        let mut chosen = Vec::new();
        for id in self.store.session_environments(&self.session)? {
            if let Some(env) = self.store.find(&id)?
                && env.spec.cleanup == CleanupPolicy::OnShutdown
            {
                chosen.push((env, "session shut down".to_owned()));
            }
        }
        Ok(self
            .remove_each(chosen, RemoveOptions { force: true })
            .await)
    }

    /// Reads the event log.
    pub fn events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        self.store.events(query)
    }
}

/// Why `env` is a creation or removal nobody will finish, if it is: the ptest doing it died
/// (see [`crate::store::abandoned`]), or it failed and could not be undone (`create: …`,
/// `deactivate: …`, `clean up: …` as [`Manager::fail`] records them). `gc` removes these.
fn unfinished(env: &Environment) -> Option<String> {
    if let Some(doing) = crate::store::abandoned(env) {
        return Some(format!("abandoned: the ptest {doing} it died"));
    }
    let error = env.error.as_deref().filter(|_| env.status == S::Error)?;
    if error.starts_with("create: ") {
        Some("its creation failed and was not undone".into())
    } else if error.starts_with("deactivate: ") || error.starts_with("clean up: ") {
        Some("its removal failed; trying again".into())
    } else {
        None
    }
}

/// The process running the `ptest run` that `env` belongs to, if it was made by one.
fn run_owner(env: &Environment) -> Option<crate::liveness::ProcessId> {
    env.spec.labels.get(crate::RUN_OWNER_LABEL)?.parse().ok()
}

/// The [`EngineContext`] the manager hands an engine: events and notes about one environment.
struct Recorder<'a> {
    manager: &'a Manager,
    env: &'a Environment,
}

impl EngineContext for Recorder<'_> {
    fn event(&self, event: IsolationEvent, details: serde_json::Value) -> Result<()> {
        self.manager.record_event(self.env, event, details)
    }

    fn note(&self, key: &str, value: serde_json::Value) -> Result<()> {
        self.manager.store.set_detail(&self.env.id, key, &value)
    }

    fn home(&self) -> &Home {
        &self.manager.home
    }

    fn lease_address(
        &self,
        network: &str,
        candidates: &mut dyn Iterator<Item = std::net::Ipv4Addr>,
    ) -> Result<std::net::Ipv4Addr> {
        self.manager.lease_address(self.env, network, candidates)
    }

    fn address_leases(&self, network: &str) -> Result<Vec<crate::model::AddressLease>> {
        self.manager.store.address_leases(Some(network), None)
    }
}

/// The signals [`ExecRequest::forward_signals`] passes on: a terminal's Ctrl-C (INT) and
/// Ctrl-\ (QUIT), a closed terminal (HUP), a polite stop (TERM).
struct Forwarder {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Forwarder {
    fn new() -> Result<Forwarder> {
        use tokio::signal::unix::{SignalKind, signal};
        let catch = |kind: SignalKind| {
            signal(kind)
                .map_err(|e| Error::Usage(format!("cannot catch signals to forward them: {e}")))
        };
        Ok(Forwarder {
            int: catch(SignalKind::interrupt())?,
            term: catch(SignalKind::terminate())?,
            hup: catch(SignalKind::hangup())?,
            quit: catch(SignalKind::quit())?,
        })
    }

    async fn recv(&mut self) -> rustix::process::Signal {
        use rustix::process::Signal as S;
        tokio::select! {
            _ = self.int.recv() => S::INT,
            _ = self.term.recv() => S::TERM,
            _ = self.hup.recv() => S::HUP,
            _ = self.quit.recv() => S::QUIT,
        }
    }
}

/// The next signal to forward; never, without a forwarder.
async fn next_signal(forward: &mut Option<Forwarder>) -> rustix::process::Signal {
    match forward {
        Some(f) => f.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits until `deadline`; forever without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `cwd` (relative to `env`'s workspace, or absolute) as a path relative to its root, worked
/// out without touching the disk; a path that leads out of the root is refused.
fn within_root(env: &Environment, cwd: &std::path::Path) -> Result<std::path::PathBuf> {
    use std::path::Component;
    let joined = env.workspace().join(cwd);
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for part in joined.components() {
        match part {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(p) => parts.push(p),
        }
    }
    let normal: std::path::PathBuf = std::iter::once(std::ffi::OsStr::new("/"))
        .chain(parts)
        .collect();
    match normal.strip_prefix(&env.root) {
        Ok(rel) => Ok(rel.to_owned()),
        Err(_) => Err(Error::Usage(format!(
            "--cwd {} leads out of environment {}'s root ({}); give a directory inside it, \
             relative to its workspace",
            cwd.display(),
            env.name,
            env.root.display()
        ))),
    }
}
