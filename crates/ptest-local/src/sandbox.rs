//! The pod behind a sandboxed environment: its cgroup (`ptest/env-<id>`) and, at security
//! `medium` and above, a holder process owning its namespaces. Created at activation, entered
//! by every command, torn down (cgroup killed, holder with it) at removal. An environment
//! whose spec asks for an overlay gets it mounted on its `workspace/` inside the pod right
//! after the holder is ready, and a fresh one on request ([`renew_overlay`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ptest_core::{
    EngineContext, EnvId, Environment, EnvironmentSpec, Error, Home, IsolationLevel, Result,
    SecurityLevel,
};
use ptest_sandbox::{
    Bind, Cgroup, FsRules, Gauges, HostView, NetworkMode as PodNetwork, Overlay, Pod, PodSpec,
    Scratch,
};
use serde::{Deserialize, Serialize};

use crate::isolation::{CGROUP_PARENT, HostCaps, Isolation, resolve};
use ptest_core::blocking;

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
        source: e.into(),
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
    // Forking the holder happens on a blocking thread, away from the async runtime.
    let state = blocking(move || build(&env2, &iso2, binds)).await?;
    ctx.note("sandbox", serde_json::to_value(&state).expect("serializes"))?;
    match (iso.network, state.holder_pid) {
        (ptest_core::NetworkMode::Bridge, Some(pid)) => {
            crate::network::connect(env, ctx, pid).await
        }
        _ => Ok(()),
    }
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
        ptest_core::failpoint::failpoint("create.cgroup");
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
        spec.binds.extend(own_state(&env.root));
        spec.binds
            .extend(exposed_sockets(env)?.into_iter().map(Bind::read_write));
        spec.masks = masks(&env.root, &env.id);
        spec.masks.extend(SECRETS.iter().map(PathBuf::from));
        spec.masks.extend(ssh_host_keys());
        if iso.quota {
            // Inside the size-limited root: they count against --disk and --files.
            spec.scratch = Scratch::Dirs {
                tmp: env.root.join("tmp"),
                shm: env.root.join(ptest_core::limited_root::SHM_DIR),
            };
        }
        spec.scope_abstract_sockets = iso.network == ptest_core::NetworkMode::Host
            && HostCaps::get().abstract_scope_missing().is_none();
        spec.cgroup = cgroup;
        let pod = create_pod(&spec)?;
        ptest_core::failpoint::failpoint("create.holder");
        if let Some(overlay) = overlay(env)
            && let Err(e) = pod.mount_overlay(&overlay)
        {
            // No record of the holder is kept yet: take it down here, not left to teardown.
            if let Err(e) = pod.destroy() {
                tracing::warn!("could not stop the sandbox of {}: {e}", env.name);
            }
            return Err(overlay_error(e));
        }
        state.holder_pid = Some(pod.holder_pid());
        state.start_time = Some(pod.start_time());
    }
    Ok(state)
}

/// The failure to mount an environment's overlay, told apart from any other reason it could
/// not be made: a caller can then copy the project instead.
fn overlay_error(e: ptest_sandbox::Error) -> Error {
    Error::Overlay {
        reason: e.to_string(),
    }
}

/// The overlay `env`'s spec asks for, with its layers in the root.
fn overlay(env: &Environment) -> Option<Overlay> {
    let spec = env.spec.overlay.as_ref()?;
    Some(Overlay {
        lower: spec.lower.clone(),
        upper: env.overlay_upper(),
        work: env.overlay_work(),
        target: env.workspace(),
        hide: spec.hide.clone(),
    })
}

/// Why an environment made from `spec` would not get a pod, so no overlay, on this host
/// (security `low`, or no namespaces); `None` when it would, or when `spec` is refused for
/// another reason (which creating it reports).
pub(crate) fn overlay_refusal(spec: &EnvironmentSpec) -> Option<ptest_core::OverlayRefusal> {
    let host = HostCaps::get();
    let iso = resolve(spec, host).ok()?;
    if iso.pod {
        return None;
    }
    let low = spec.security == Some(SecurityLevel::Low);
    Some(ptest_core::OverlayRefusal {
        reason: match &host.namespaces {
            Err(why) if !low => format!("this host cannot make namespaces ({why})"),
            _ => format!(
                "security {} shares the host's mount namespace",
                iso.security
            ),
        },
        by_design: low,
    })
}

/// Refuses a spec asking for an overlay it would not get (see [`overlay_refusal`]).
pub(crate) fn check_overlay(spec: &EnvironmentSpec) -> Result<()> {
    match (&spec.overlay, overlay_refusal(spec)) {
        (Some(_), Some(why)) => Err(Error::Usage(format!(
            "an overlaid workspace is mounted inside the environment's own mount namespace, \
             and {}; use security medium or higher",
            why.reason
        ))),
        _ => Ok(()),
    }
}

/// Gives `env`'s overlaid `workspace/` a fresh, empty upper layer: the overlay is detached
/// from the pod, its layer directories deleted and made again, and a new overlay mounted, so
/// the workspace shows the lower directory as it is (a retry starts clean). A process still
/// using the old overlay (a daemon left by an earlier command) keeps what it had open.
pub(crate) async fn renew_overlay(env: &Environment) -> Result<()> {
    let Some(overlay) = overlay(env) else {
        return Err(Error::Usage(format!(
            "environment {} has no overlaid workspace",
            env.name
        )));
    };
    let env = env.clone();
    blocking(move || {
        let Some(pod) = attach(&env)? else {
            return Err(Error::Usage(format!(
                "environment {} has no sandbox to mount an overlay in",
                env.name
            )));
        };
        pod.unmount(&overlay.target).map_err(overlay_error)?;
        // Through the root's descriptor: a symlink planted at `overlay` is removed as a name,
        // not followed; the directories are then made new, never reused.
        let root = ptest_core::beneath::Beneath::open(&env.root)?;
        let layers = Path::new("overlay");
        root.remove_dir(layers)?;
        root.make_dir(layers, 0o755)?;
        for dir in [&overlay.upper, &overlay.work] {
            root.make_dir(root.relative(dir)?, 0o755)?;
        }
        pod.mount_overlay(&overlay).map_err(overlay_error)
    })
    .await
}

/// Freezes or thaws every process of `env` through its cgroup's freezer.
pub(crate) async fn freeze(env: &Environment, frozen: bool) -> Result<()> {
    let action = if frozen { "pause" } else { "resume" };
    let Some(cgroup) = open_cgroup(env) else {
        return Err(Error::Unsupported {
            name: env.name.to_string(),
            action,
            why: "it has no cgroup of its own (this host gave it none), so nothing can freeze \
                  its processes"
                .into(),
        });
    };
    let name = env.name.to_string();
    blocking(move || {
        cgroup.freeze(frozen).map_err(|e| match e {
            ptest_sandbox::Error::ControllerMissing { .. } => Error::Unsupported {
                name,
                action,
                why: format!("{e} (the cgroup freezer)"),
            },
            e => sandbox_error("freeze the cgroup", e),
        })
    })
    .await
}

/// ptest's own files in `root` ([`ptest_core::root::OWN`]) bound read-only over themselves,
/// then `run/net/` read-write again; a root made before `run/net/` existed keeps it
/// read-only.
fn own_state(root: &Path) -> Vec<Bind> {
    use ptest_core::root::{OWN, OWN_WRITABLE};
    let mut binds: Vec<Bind> = OWN
        .iter()
        .map(|name| root.join(name))
        .filter(|path| path.exists())
        .map(Bind::read_only)
        .collect();
    let net = root.join(OWN_WRITABLE);
    if net.is_dir() {
        binds.push(Bind::read_write(net));
    }
    binds
}

/// Host files that hold secrets, covered by `/dev/null` in every pod: a pod command runs as
/// root (owner of these files) and, at `medium`, sees the host's tree read-only.
const SECRETS: [&str; 7] = [
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/security/opasswd",
    "/etc/ssl/private",
    "/etc/sudoers.d",
];

/// The host's SSH private host keys (`/etc/ssh/ssh_host_*_key`), hidden like [`SECRETS`].
fn ssh_host_keys() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir("/etc/ssh") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ssh_host_") && n.ends_with("_key"))
        })
        .collect()
}

/// The host sockets `env` asks to see (`--expose-socket`), each at its real path (a path
/// through a symlink such as `/var/run` -> `/run` is resolved, and the link in the pod leads
/// to the same place). Refused when a path is not a Unix socket.
fn exposed_sockets(env: &Environment) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::FileTypeExt;
    env.spec
        .expose_sockets
        .iter()
        .map(|socket| {
            let path = socket.path();
            let real = std::fs::canonicalize(path).map_err(|e| {
                Error::Usage(format!(
                    "--expose-socket {}: {e}; give the path of a Unix socket on this host",
                    path.display()
                ))
            })?;
            let is_socket = std::fs::metadata(&real).is_ok_and(|m| m.file_type().is_socket());
            if !is_socket {
                return Err(Error::Usage(format!(
                    "--expose-socket {}: not a Unix socket; give the path of one",
                    path.display()
                )));
            }
            Ok(real)
        })
        .collect()
}

/// What a pod hides from its commands: ptest's home (every other environment's root under
/// `envs/`, the state database, the caches). The home is the one `env`'s root lives in
/// (`<home>/envs/<id>`) and the one this process uses (`PTEST_HOME`); the environment's own
/// root and binds stay visible beneath the mask. Roots of other environments given by
/// `--path` outside a home are not masked.
pub(crate) fn masks(root: &Path, id: &EnvId) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let envs = root.parent();
    if root.file_name() == Some(id.as_str().as_ref())
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

/// Starts a holder (see [`Pod::create`], which starts one again if it dies early).
fn create_pod(spec: &PodSpec) -> Result<Pod> {
    Pod::create(spec).map_err(|e| sandbox_error("start the sandbox", e))
}

/// Bytes in use in the pod's own `/tmp` and `/dev/shm` tmpfs, which lie outside the root:
/// part of the environment's disk use. `0` without a pod, with a size-limited root (they are
/// inside it, counted with it), or when the holder is gone.
pub(crate) fn scratch_usage(env: &Environment) -> u64 {
    match isolation(env) {
        Some(iso) if iso.pod && !iso.quota => {}
        _ => return 0,
    }
    match attach(env) {
        Ok(Some(pod)) => pod.scratch_usage().unwrap_or_else(|e| {
            tracing::warn!("could not measure the scratch space of {}: {e}", env.name);
            0
        }),
        _ => 0,
    }
}

/// Opens the pod of `env` for entering, if it has one.
pub(crate) fn attach(env: &Environment) -> Result<Option<Pod>> {
    attach_with(env, open_cgroup(env))
}

/// [`attach`] with the environment's cgroup already opened.
pub(crate) fn attach_with(env: &Environment, cgroup: Option<Cgroup>) -> Result<Option<Pod>> {
    let state = state(env);
    let (Some(pid), Some(start)) = (state.holder_pid, state.start_time) else {
        return Ok(None);
    };
    Pod::attach(pid, start, cgroup)
        .map(Some)
        .map_err(|e| Error::Engine {
            level: env.level,
            action: "enter the sandbox",
            source: format!("{e}; the environment's holder is gone: remove it with `ptest env rm`")
                .into(),
        })
}

/// What running a command in an environment's sandbox takes, made from its records once per
/// process: parsing them, opening its cgroup and checking its holder took ~60 µs a command.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The isolation recorded at activation.
    pub iso: Isolation,
    /// The environment's cgroup, if it has one.
    pub cgroup: Option<Cgroup>,
    /// The cgroup's counters read around every command.
    pub gauges: Option<Gauges>,
    /// Its pod, if it has one. Whether the holder still runs is checked by every spawn.
    pub pod: Option<Pod>,
}

/// The [`Entry`] of each environment this process ran commands in, kept while the records it
/// was made from stay the same.
#[derive(Debug, Default)]
pub(crate) struct Entries(Mutex<HashMap<EnvId, (Recorded, Arc<Entry>)>>);

/// The records an [`Entry`] is made from: `isolation` and `sandbox` of the details.
type Recorded = [Option<serde_json::Value>; 2];
const RECORDED: [&str; 2] = ["isolation", "sandbox"];

impl Entries {
    /// The entry of `env`.
    pub fn get(&self, env: &Environment) -> Result<Arc<Entry>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((then, entry)) = map.get(&env.id)
            && RECORDED
                .iter()
                .zip(then)
                .all(|(key, value)| env.details.get(*key) == value.as_ref())
        {
            return Ok(entry.clone());
        }
        let iso = isolation(env).unwrap_or_else(Isolation::unrecorded);
        let cgroup = open_cgroup(env);
        let pod = if iso.pod {
            attach_with(env, cgroup.clone())?
        } else {
            None
        };
        let gauges = cgroup.as_ref().map(Cgroup::gauges);
        let entry = Arc::new(Entry {
            iso,
            cgroup,
            gauges,
            pod,
        });
        let now = RECORDED.map(|key| env.details.get(key).cloned());
        map.insert(env.id.clone(), (now, entry.clone()));
        Ok(entry)
    }

    /// Drops the entry of `env` (its sandbox is being taken down).
    pub fn forget(&self, env: &Environment) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&env.id);
    }
}

/// Kills every process of `env` (daemons included) and its holder, and removes its cgroup.
/// Safe to call on an environment whose sandbox is half-made or already gone.
pub(crate) async fn teardown(env: &Environment) -> Result<()> {
    let env = env.clone();
    blocking(move || {
        // The holder first: its PID namespace dies with it, all at once, and the cgroup is
        // then (nearly always) empty.
        if let Ok(Some(pod)) = attach(&env) {
            pod.destroy()
                .map_err(|e| sandbox_error("stop the sandbox", e))?;
        }
        // The cgroup name follows from the id, so a sandbox whose state was never recorded
        // (a crash mid-activation) is still found; `remove` kills what is left in it.
        if let Ok(cgroup) = Cgroup::open(CGROUP_PARENT, &cgroup_name(&env)) {
            cgroup
                .remove()
                .map_err(|e| sandbox_error("remove the cgroup", e))?;
        }
        Ok(())
    })
    .await
}
