//! The `basic` level: a directory tree on the host, sandboxed in a pod (namespaces and a
//! cgroup) as far as its security level asks and the host allows.

use std::path::PathBuf;

use async_trait::async_trait;
use ptest_core::blocking;
use ptest_core::{
    Engine, EngineContext, Environment, EnvironmentSpec, EnvironmentStatus, ExecRequest, Finding,
    Home, IsolationLevel, ProcessInfo, Removal, ResourceUsage, Result, RunningProcess, root,
};
use rustix::process::{Pid, Signal};

use crate::isolation::{HostCaps, resolve};
use crate::{enter, procscan, sandbox};

/// Environments as directory trees, each with its own cgroup and, at security `medium` and
/// above, its own PID, mount, IPC, UTS (and network) namespaces.
#[derive(Debug, Default)]
pub struct DirectoryEngine {
    /// What entering each environment's sandbox takes, made once per environment.
    entries: sandbox::Entries,
}

impl DirectoryEngine {
    /// The engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the root is whole, then builds the sandbox, with `binds` (read-only host paths)
    /// visible inside its pod.
    pub(crate) async fn activate_with(
        &self,
        env: &Environment,
        ctx: &dyn EngineContext,
        binds: Vec<PathBuf>,
    ) -> Result<()> {
        // The root must be intact; the sandbox is what this makes (again, after `env stop`).
        let (root, id) = (env.root.clone(), env.id.clone());
        let broken: Vec<String> = blocking(move || Ok(root::check(&root, &id)))
            .await?
            .into_iter()
            .filter(|f| !f.ok)
            .map(|f| format!("{}: {}", f.check, f.detail))
            .collect();
        if !broken.is_empty() {
            return Err(ptest_core::Error::Root {
                path: env.root.clone(),
                reason: broken.join("; "),
            });
        }
        sandbox::activate(env, ctx, binds).await
    }
}

#[async_trait]
impl Engine for DirectoryEngine {
    fn level(&self) -> IsolationLevel {
        IsolationLevel::Basic
    }

    fn traits(&self) -> ptest_core::EngineTraits {
        // A pod binds the root at its own path; without one the command is on the host.
        ptest_core::EngineTraits {
            root_at_host_path: true,
            network_faults: true,
            packages: false,
            host_workspace: true,
            copies_in: false,
            copies_out: false,
        }
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

    fn features(&self) -> Vec<Finding> {
        HostCaps::get().findings()
    }

    fn check(&self, spec: &EnvironmentSpec) -> Result<()> {
        resolve(spec, HostCaps::get())?;
        sandbox::check_overlay(spec)?;
        if spec.virtualenv.is_some() || spec.docker.is_some() || spec.kubernetes.is_some() {
            return Err(ptest_core::Error::Usage(
                "settings of another level (python, packages, image, namespace) given for a \
                 basic environment; use --level virtualenv, docker or kubernetes"
                    .into(),
            ));
        }
        Ok(())
    }

    async fn create(&self, env: &Environment, _ctx: &dyn EngineContext) -> Result<()> {
        let (root, id) = (env.root.clone(), env.id.clone());
        let quota = crate::quota::planned(&env.spec, &root, &id);
        blocking(move || ptest_core::limited_root::create(&root, &id, quota)).await
    }

    async fn activate(&self, env: &Environment, ctx: &dyn EngineContext) -> Result<()> {
        self.activate_with(env, ctx, Vec::new()).await
    }
    async fn spawn(
        &self,
        env: &Environment,
        request: ExecRequest,
    ) -> Result<Box<dyn RunningProcess>> {
        // Also without pod or cgroup (not root): the relay still ends the command's process
        // group when a SIGKILLed `ptest` leaves it behind.
        let entry = self.entries.get(env)?;
        Ok(Box::new(enter::spawn(env, request, entry)?))
    }

    async fn kill(&self, _env: &Environment, process: &ProcessInfo) -> Result<()> {
        // A command's pid is the command's in a pod, its relay's on the host (see `enter`):
        // either way the tree below it goes.
        enter::kill_tree(process.pid, process.start_ticks);
        Ok(())
    }

    async fn validate(&self, env: &Environment) -> Result<Vec<Finding>> {
        let env = env.clone();
        blocking(move || {
            let mut out = root::check(&env.root, &env.id);
            out.extend(sandbox_findings(&env));
            Ok(out)
        })
        .await
    }

    async fn deactivate(&self, env: &Environment) -> Result<()> {
        // The holder takes its PID namespace with it, the cgroup every process left in it.
        self.entries.forget(env);
        sandbox::teardown(env).await?;
        // No process leaves a PID namespace: with a pod there is nothing left to look for.
        if sandbox::isolation(env).is_some_and(|iso| iso.pod) {
            return Ok(());
        }
        // Otherwise anything still carrying the environment's id (daemons that left their
        // process group, or a cgroup a root command could move out of) is ended here.
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

    async fn pause(&self, env: &Environment) -> Result<()> {
        sandbox::freeze(env, true).await
    }

    fn overlay_refusal(&self, spec: &EnvironmentSpec) -> Option<ptest_core::OverlayRefusal> {
        sandbox::overlay_refusal(spec)
    }

    async fn renew_overlay(&self, env: &Environment) -> Result<()> {
        sandbox::renew_overlay(env).await
    }

    async fn resume(&self, env: &Environment) -> Result<()> {
        sandbox::freeze(env, false).await
    }

    async fn cleanup(&self, env: &Environment) -> Result<()> {
        self.entries.forget(env);
        sandbox::teardown(env).await?;
        crate::network::disconnect(env).await?;
        let (root, id) = (env.root.clone(), env.id.clone());
        blocking(move || ptest_core::limited_root::remove(&root, &id)).await
    }

    fn port_lease_changed(&self, env: &Environment, port: u16, leased: bool) -> Result<()> {
        crate::network::forward_port(env, port, leased)
    }

    async fn collect_garbage(&self, home: &Home, live_ids: &[String]) -> Vec<Removal> {
        if !HostCaps::get().bridge_usable() {
            return Vec::new();
        }
        let (home, live) = (home.clone(), live_ids.to_vec());
        tokio::task::spawn_blocking(move || crate::network::collect_garbage(&home, &live))
            .await
            .expect("collecting bridge leftovers does not panic")
    }

    async fn resource_usage(&self, env: &Environment) -> Result<ResourceUsage> {
        let env = env.clone();
        blocking(move || {
            let (disk, files) = root::usage(&env.root)
                .map_err(|e| ptest_core::Error::io("measuring", &env.root, e))?;
            let mut usage = ResourceUsage {
                disk_bytes: Some(disk + sandbox::scratch_usage(&env)),
                files: Some(files),
                ..ResourceUsage::default()
            };
            if let Some(cgroup) = sandbox::open_cgroup(&env) {
                // The cgroup counts every process of the environment, wherever it forked to.
                let u = cgroup.usage().map_err(|e| ptest_core::Error::Engine {
                    level: env.level,
                    action: "read the cgroup",
                    source: e.into(),
                })?;
                usage.memory_bytes = u.memory_current;
                usage.memory_peak_bytes = u.memory_peak;
                usage.cpu_seconds = u.cpu_time.map(|t| t.as_secs_f64());
                usage.pids = u.pids_current;
                usage.oom_kills = u.oom_kills;
            } else {
                let procs = procscan::scan(env.id.as_str());
                let hz = rustix::param::clock_ticks_per_second() as f64;
                usage.memory_bytes = Some(procs.iter().map(|p| p.rss).sum());
                usage.cpu_seconds =
                    Some(procs.iter().map(|p| p.cpu_ticks).sum::<u64>() as f64 / hz);
                usage.pids = Some(procs.len() as u64);
            }
            Ok(usage)
        })
        .await
    }
}

/// Whether the sandbox recorded for `env` is still there.
fn sandbox_findings(env: &Environment) -> Vec<Finding> {
    let Some(iso) = sandbox::isolation(env) else {
        return Vec::new();
    };
    // Stopped (or never started): no cgroup, holder or network to find until `env start`.
    if matches!(
        env.status,
        EnvironmentStatus::Created | EnvironmentStatus::Inactive
    ) {
        return vec![Finding {
            check: "sandbox".into(),
            ok: true,
            detail: format!("none while {} (`ptest env start` makes it)", env.status),
        }];
    }
    let mut out = vec![Finding {
        check: "isolation".into(),
        ok: true,
        detail: format!(
            "security {}, network {:?}{}{}",
            iso.security,
            iso.network,
            if iso.pod { ", pod" } else { "" },
            if iso.cgroup { ", cgroup" } else { "" }
        )
        .to_lowercase(),
    }];
    if iso.cgroup {
        let found = sandbox::open_cgroup(env).is_some();
        out.push(Finding {
            check: "cgroup".into(),
            ok: found,
            detail: format!(
                "{}/{}",
                crate::isolation::CGROUP_PARENT,
                sandbox::cgroup_name(env)
            ) + if found { "" } else { " is missing" },
        });
    }
    out.extend(crate::network::finding(env));
    if iso.pod {
        let holder = sandbox::attach(env);
        if let Ok(Some(pod)) = &holder {
            out.push(view_finding(env, pod));
        }
        out.push(Finding {
            check: "holder".into(),
            ok: holder.is_ok(),
            detail: match holder {
                Ok(Some(pod)) => format!("pid {} alive", pod.holder_pid()),
                Ok(None) => "no holder recorded".into(),
                Err(e) => e.to_string(),
            },
        });
    }
    out
}

/// Whether the pod still sees the environment's root (the same directory the host has at
/// that path: a root deleted and made again on the host leaves the pod with the old one)
/// and reaches its workspace.
fn view_finding(env: &Environment, pod: &ptest_sandbox::Pod) -> Finding {
    use std::os::unix::fs::MetadataExt;
    let on_host = std::fs::metadata(&env.root).map(|m| (m.dev(), m.ino()));
    let seen = pod.identify(&env.root);
    let workspace = pod.identify(&env.workspace());
    let problem = match (on_host, seen, workspace) {
        (Err(e), _, _) => Some(format!("the root is unreadable on the host: {e}")),
        (_, Err(e), _) => Some(format!("the pod cannot reach the root: {e}")),
        (Ok(host), Ok((dev, ino, _)), _) if host != (dev, ino) => Some(format!(
            "the pod sees another directory at {} than the host (the root was replaced): \
             remove the environment and make it again",
            env.root.display()
        )),
        (_, _, Err(e)) => Some(format!("the pod cannot reach its workspace: {e}")),
        (_, _, Ok((_, _, false))) => Some("the pod's workspace is not a directory".into()),
        _ => None,
    };
    Finding {
        check: "pod view".into(),
        ok: problem.is_none(),
        detail: problem.unwrap_or_else(|| "the pod sees the root and its workspace".into()),
    }
}
