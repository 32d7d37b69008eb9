//! The `basic` level as a plain directory tree on the host.

use async_trait::async_trait;
use ptest_core::{
    Engine, EngineContext, Environment, EnvironmentSpec, ExecRequest, Finding, IsolationLevel,
    Limits, NetworkMode, ProcessInfo, ResourceUsage, Result, RunningProcess, SecurityLevel, root,
};
use rustix::process::{Pid, Signal};

use crate::{exec, procscan};

/// Environments as directories: no namespaces, no cgroup.
#[derive(Debug, Default)]
pub struct DirectoryEngine;

impl DirectoryEngine {
    /// The engine.
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl Engine for DirectoryEngine {
    fn level(&self) -> IsolationLevel {
        IsolationLevel::Basic
    }

    fn capabilities(&self) -> Vec<Finding> {
        let me = rustix::process::getpid();
        let pidfd = rustix::process::pidfd_open(me, rustix::process::PidfdFlags::empty());
        let proc_ok = ptest_core::liveness::start_ticks(std::process::id()).is_some();
        vec![
            Finding {
                check: "pidfd".into(),
                ok: pidfd.is_ok(),
                detail: match pidfd {
                    Ok(_) => "pidfd_open works: exits are awaited without polling".into(),
                    Err(e) => format!("pidfd_open failed ({e}): Linux 5.3 or newer is needed"),
                },
            },
            Finding {
                check: "procfs".into(),
                ok: proc_ok,
                detail: if proc_ok {
                    "/proc readable: processes are tracked by pid and start time".into()
                } else {
                    "/proc is not mounted or not readable".into()
                },
            },
        ]
    }

    fn check(&self, spec: &EnvironmentSpec) -> Result<()> {
        check_host_spec(spec, "the directory engine")?;
        if spec.virtualenv.is_some() || spec.docker.is_some() {
            return Err(ptest_core::Error::Usage(
                "settings of another level (python, packages, image) given for a basic \
                 environment; use --level virtualenv or --level docker"
                    .into(),
            ));
        }
        Ok(())
    }

    async fn create(&self, env: &Environment, _ctx: &dyn EngineContext) -> Result<()> {
        let (root, id) = (env.root.clone(), env.id.clone());
        blocking(move || root::create(&root, &id)).await
    }

    async fn activate(&self, env: &Environment) -> Result<()> {
        // A directory needs nothing started; check it is whole before calling it active.
        let broken: Vec<String> = self
            .validate(env)
            .await?
            .into_iter()
            .filter(|f| !f.ok)
            .map(|f| format!("{}: {}", f.check, f.detail))
            .collect();
        if broken.is_empty() {
            Ok(())
        } else {
            Err(ptest_core::Error::Root {
                path: env.root.clone(),
                reason: broken.join("; "),
            })
        }
    }

    async fn spawn(
        &self,
        env: &Environment,
        request: ExecRequest,
    ) -> Result<Box<dyn RunningProcess>> {
        Ok(Box::new(exec::spawn(env, request)?))
    }

    async fn kill(&self, _env: &Environment, process: &ProcessInfo) -> Result<()> {
        exec::kill_group(process.pid, process.start_ticks);
        Ok(())
    }

    async fn validate(&self, env: &Environment) -> Result<Vec<Finding>> {
        let env = env.clone();
        Ok(tokio::task::spawn_blocking(move || findings(&env))
            .await
            .expect("validation does not panic"))
    }

    async fn deactivate(&self, env: &Environment) -> Result<()> {
        // Anything still carrying the environment's id (daemons that left their process
        // group) is ended here.
        let id = env.id.to_string();
        blocking(move || {
            for found in procscan::scan(&id) {
                if let Some(pid) = Pid::from_raw(found.pid as i32) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
            Ok(())
        })
        .await
    }

    async fn cleanup(&self, env: &Environment) -> Result<()> {
        let (root, id) = (env.root.clone(), env.id.clone());
        blocking(move || root::remove(&root, &id)).await
    }

    async fn resource_usage(&self, env: &Environment) -> Result<ResourceUsage> {
        let (root, id) = (env.root.clone(), env.id.to_string());
        blocking(move || {
            let (disk, files) =
                root::usage(&root).map_err(|e| ptest_core::Error::io("measuring", &root, e))?;
            let procs = procscan::scan(&id);
            let hz = rustix::param::clock_ticks_per_second() as f64;
            Ok(ResourceUsage {
                disk_bytes: Some(disk),
                files: Some(files),
                memory_bytes: Some(procs.iter().map(|p| p.rss).sum()),
                cpu_seconds: Some(procs.iter().map(|p| p.cpu_ticks).sum::<u64>() as f64 / hz),
                pids: Some(procs.len() as u64),
            })
        })
        .await
    }
}

/// Refuses limits, network modes and security levels that need the sandbox, which this build
/// does not have yet.
pub(crate) fn check_host_spec(spec: &EnvironmentSpec, engine: &str) -> Result<()> {
    let mut unsupported = Vec::new();
    if spec.limits != Limits::default() {
        unsupported.push("resource limits (they need the sandbox's cgroups)");
    }
    if spec.network.is_some_and(|n| n != NetworkMode::Host) {
        unsupported.push("a network mode other than host (it needs a network namespace)");
    }
    if spec.security.is_some_and(|s| s != SecurityLevel::Low) {
        unsupported.push("a security level above low (it needs namespaces)");
    }
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(ptest_core::Error::Usage(format!(
            "{engine} cannot apply {}",
            unsupported.join(", ")
        )))
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking filesystem work does not panic")
}

pub(crate) fn findings(env: &Environment) -> Vec<Finding> {
    let mut out = Vec::new();
    let marker = root::marker_id(&env.root);
    out.push(Finding {
        check: "marker".into(),
        ok: marker.as_deref() == Some(env.id.as_str()),
        detail: match marker {
            Some(m) => format!("{} names {m}", root::MARKER),
            None => format!("{} missing under {}", root::MARKER, env.root.display()),
        },
    });
    for dir in root::ANATOMY {
        let path = env.root.join(dir);
        let is_dir = path.symlink_metadata().is_ok_and(|m| m.is_dir());
        out.push(Finding {
            check: format!("{dir}/"),
            ok: is_dir,
            detail: if is_dir {
                path.display().to_string()
            } else {
                format!("{} is missing or not a directory", path.display())
            },
        });
    }
    out
}
