//! The pod behind a sandboxed environment: its cgroup (`ptest/env-<id>`) and, at security
//! `medium` and above, a holder process owning its namespaces. Created at activation, entered
//! by every command, torn down (cgroup killed, holder with it) at removal.

use std::path::{Path, PathBuf};

use ptest_core::{EngineContext, Environment, Error, Home, IsolationLevel, Result, SecurityLevel};
use ptest_sandbox::{Bind, Cgroup, FsRules, HostView, NetworkMode as PodNetwork, Pod, PodSpec};
use serde::{Deserialize, Serialize};

use crate::isolation::{CGROUP_PARENT, HostCaps, Isolation, resolve};

/// Where an environment's holder is, recorded in its details as `sandbox`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SandboxState {
    /// The holder's host pid.
    pub holder_pid: Option<i32>,
    /// The holder's start time (clock ticks after boot).
    pub start_time: Option<u64>,
    /// The cgroup's name under `ptest/`.
    pub cgroup: Option<String>,
}

/// The name of an environment's cgroup under [`CGROUP_PARENT`].
pub(crate) fn cgroup_name(env: &Environment) -> String {
    format!("env-{}", env.id)
}

fn sandbox_error(action: &'static str, e: ptest_sandbox::Error) -> Error {
    Error::Engine {
        level: IsolationLevel::Basic,
        action,
        message: e.to_string(),
    }
}

/// The isolation recorded for `env` at activation; `None` for an environment made before
/// sandboxing existed or not yet activated.
pub(crate) fn isolation(env: &Environment) -> Option<Isolation> {
    serde_json::from_value(env.details.get("isolation")?.clone()).ok()
}

/// Where the holder is, as recorded for `env`.
pub(crate) fn state(env: &Environment) -> SandboxState {
    env.details
        .get("sandbox")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// The environment's cgroup, if it has one.
pub(crate) fn open_cgroup(env: &Environment) -> Option<Cgroup> {
    state(env)
        .cgroup
        .and_then(|name| Cgroup::open(CGROUP_PARENT, &name).ok())
}

/// Builds the sandbox `env`'s spec asks for: its cgroup with the limits, then the holder.
/// `binds` are extra read-only paths the pod must see (a venv's base interpreter).
pub(crate) async fn activate(
    env: &Environment,
    ctx: &dyn EngineContext,
    binds: Vec<PathBuf>,
) -> Result<()> {
    let iso = resolve(&env.spec, HostCaps::get())?;
    ctx.note("isolation", serde_json::to_value(&iso).expect("serializes"))?;
    let (env2, iso2) = (env.clone(), iso.clone());
    // Forking the holder happens on a thread of its own, away from the async runtime.
    let state = run_on_thread(move || build(&env2, &iso2, binds)).await?;
    ctx.note("sandbox", serde_json::to_value(&state).expect("serializes"))
}

fn build(env: &Environment, iso: &Isolation, binds: Vec<PathBuf>) -> Result<SandboxState> {
    let mut state = SandboxState::default();
    let cgroup = if iso.cgroup {
        let limits = ptest_sandbox::Limits {
            memory_bytes: env.spec.limits.memory.map(|m| m.0),
            cpu_cores: env.spec.limits.cpus,
            pids_max: env.spec.limits.pids,
        };
        let name = cgroup_name(env);
        let cgroup = Cgroup::create(CGROUP_PARENT, &name, &limits)
            .map_err(|e| sandbox_error("create the cgroup", e))?;
        state.cgroup = Some(name);
        Some(cgroup)
    } else {
        None
    };
    if iso.pod {
        let mut spec = PodSpec::new(&env.root, env.name.as_str());
        spec.network = match iso.network {
            ptest_core::NetworkMode::Host => PodNetwork::Host,
            ptest_core::NetworkMode::None => PodNetwork::None,
            _ => PodNetwork::Loopback,
        };
        spec.host_view = if iso.security >= SecurityLevel::High {
            HostView::System
        } else {
            HostView::Full
        };
        spec.binds = binds.into_iter().map(Bind::read_only).collect();
        spec.masks = masks(env);
        spec.cgroup = cgroup;
        let pod = create_pod(&spec)?;
        state.holder_pid = Some(pod.holder_pid());
        state.start_time = Some(pod.start_time());
    }
    Ok(state)
}

/// What a pod hides from its commands: ptest's home (every other environment's root under
/// `envs/`, the state database, the caches). The home is the one `env`'s root lives in
/// (`<home>/envs/<id>`) and the one this process uses (`PTEST_HOME`); the environment's own
/// root and binds stay visible beneath the mask. Roots of other environments given by
/// `--path` outside a home are not masked.
fn masks(env: &Environment) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let envs = env.root.parent();
    if env.root.file_name() == Some(env.id.as_str().as_ref())
        && let Some(envs) = envs.filter(|p| p.file_name() == Some("envs".as_ref()))
        && let Some(home) = envs.parent()
    {
        out.push(home.to_owned());
    }
    if let Ok(home) = Home::from_env() {
        out.push(home.path().to_owned());
    }
    out.sort();
    out.dedup();
    out
}

/// What a command of a `strict` environment may touch (Landlock): read and execute
/// everything its pod shows, write only beneath its root, the per-pod `/dev/shm`, the
/// terminal and the harmless devices. `/tmp` is not writable (`TMPDIR` is the root's `tmp/`).
pub(crate) fn landlock_rules(env: &Environment) -> FsRules {
    let mut read_write = vec![env.root.clone()];
    read_write.extend(
        [
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
            "/dev/pts",
            "/dev/shm",
        ]
        .map(|p| Path::new(p).to_owned()),
    );
    FsRules {
        read_only: vec![PathBuf::from("/")],
        read_write,
    }
}

/// Starts a holder. A holder that dies during its set-up without reporting why (seen when
/// many pods start at once from one process) is started again, twice at most; a set-up step
/// that fails is reported at once.
fn create_pod(spec: &PodSpec) -> Result<Pod> {
    let mut attempt = 1;
    loop {
        match Pod::create(spec) {
            Err(ptest_sandbox::Error::HolderDiedEarly) if attempt < 3 => {
                tracing::warn!(attempt, "pod holder died during set-up; starting it again");
                attempt += 1;
            }
            other => return other.map_err(|e| sandbox_error("start the sandbox", e)),
        }
    }
}

/// Opens the pod of `env` for entering, if it has one.
pub(crate) fn attach(env: &Environment) -> Result<Option<Pod>> {
    let state = state(env);
    let (Some(pid), Some(start)) = (state.holder_pid, state.start_time) else {
        return Ok(None);
    };
    Pod::attach(pid, start, open_cgroup(env))
        .map(Some)
        .map_err(|e| Error::Engine {
            level: env.level,
            action: "enter the sandbox",
            message: format!(
                "{e}; the environment's holder is gone: remove it with `ptest env rm`"
            ),
        })
}

/// Kills every process of `env` (daemons included) and its holder, and removes its cgroup.
/// Safe to call on an environment whose sandbox is half-made or already gone.
pub(crate) async fn teardown(env: &Environment) -> Result<()> {
    let env = env.clone();
    run_on_thread(move || {
        // The cgroup name follows from the id, so a sandbox whose state was never recorded
        // (a crash mid-activation) is still found.
        match Cgroup::open(CGROUP_PARENT, &cgroup_name(&env)) {
            Ok(cgroup) => {
                cgroup
                    .kill_all()
                    .map_err(|e| sandbox_error("kill the cgroup", e))?;
                cgroup
                    .remove()
                    .map_err(|e| sandbox_error("remove the cgroup", e))?;
            }
            Err(_) => {
                if let Ok(Some(pod)) = attach(&env) {
                    pod.destroy()
                        .map_err(|e| sandbox_error("stop the sandbox", e))?;
                }
            }
        }
        Ok(())
    })
    .await
}

/// Runs blocking sandbox work on a thread of its own and waits for it.
pub(crate) async fn run_on_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.expect("sandbox threads do not panic")
}
