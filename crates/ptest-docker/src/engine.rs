//! [`DockerEngine`]: the `docker` level's [`Engine`].

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::SystemInfo;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, StatsOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use ptest_core::blocking;
use ptest_core::{
    Engine, EngineContext, Environment, EnvironmentSpec, Error, ExecRequest, Finding,
    IsolationEvent, IsolationLevel, NetworkMode, ProcessInfo, ResourceUsage, Result,
    RunningProcess, SecurityLevel, limited_root, root,
};
use tokio::sync::OnceCell;

use crate::connection::{Connection, docker_host, engine_error, is_not_found, message_of};
use crate::container::{self, container_name, effective_network, effective_security, home_hash};
use crate::gc::{self, Reaped};
use crate::{exec, image, network};

/// The key of [`ptest_core::Environment::details`] holding what the container's image runs by
/// itself (entrypoint then command, as strings): its containers run `sleep` instead, and
/// `ptest run` runs this in a service container that names no command of its own.
pub const IMAGE_COMMAND: &str = "image_command";

/// The uid and gid `high` and `strict` containers run as; their writable directories of the
/// root are handed to it.
const UNPRIVILEGED_ID: u32 = 65534;

/// Environments as containers on a Docker engine, one per environment.
///
/// Built with the `PTEST_HOME` path it serves (its hash labels every object, so two homes on
/// one engine never touch each other's). Connecting is deferred to the first call that needs
/// the engine.
pub struct DockerEngine {
    home_hash: String,
    connection: Connection,
    info: OnceCell<SystemInfo>,
}

impl DockerEngine {
    /// The engine for the home at `home`. Never fails: the engine is reached on first use.
    pub fn new(home: &Path) -> Self {
        let home = std::path::absolute(home).unwrap_or_else(|_| home.to_owned());
        Self {
            home_hash: home_hash(&home),
            connection: Connection::default(),
            info: OnceCell::new(),
        }
    }

    /// The hash of the home, as found on the `ptest.home` label of its objects.
    pub fn home_hash(&self) -> &str {
        &self.home_hash
    }

    /// The name of `env`'s container (`ptest-<name>-<id>`).
    pub fn container_name(&self, env: &Environment) -> String {
        container_name(env)
    }

    /// Removes containers, volumes and networks labelled with this home whose environment id
    /// is not in `live_env_ids`, and this home's bridge network once no container uses it;
    /// with each removed container its environment's root (a `--disk` tmpfs unmounted), the
    /// root's marker checked.
    /// Objects without this home's label are never touched. Returns what it removed (or failed
    /// to); an unreachable engine is reported as one failed entry.
    pub async fn gc(&self, live_env_ids: &[String]) -> Vec<Reaped> {
        match self.connection.get().await {
            Ok(docker) => gc::reap(docker, &self.home_hash, live_env_ids).await,
            Err(e) => vec![Reaped {
                kind: gc::ObjectKind::Container,
                name: String::new(),
                env_id: None,
                error: Some(e.to_string()),
            }],
        }
    }

    /// Whether the kernel's OOM killer has struck inside `env`'s container since it started:
    /// the way to tell that a command ended (exit code 137) because the environment ran out
    /// of its `memory` limit. `None` when the container is gone.
    ///
    /// Docker's `State.OOMKilled` only turns true when the container's main process dies, not
    /// when an exec'd command is killed, so the container's memory cgroup is read as well (its
    /// `oom_kill` counter, cgroup v1 `memory.oom_control` or v2 `memory.events`, found
    /// through the main process's `/proc/PID/cgroup`); that reading needs the engine to run on
    /// this host.
    pub async fn oom_killed(&self, env: &Environment) -> Result<Option<bool>> {
        let docker = self.connection.get().await?;
        let state = match docker.inspect_container(&container_name(env), None).await {
            Ok(c) => c.state.unwrap_or_default(),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(engine_error("inspect the container", message_of(&e))),
        };
        if state.oom_killed == Some(true) {
            return Ok(Some(true));
        }
        let pid = state
            .pid
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p != 0);
        let kills = match pid {
            Some(pid) => tokio::task::spawn_blocking(move || {
                crate::cgroup::oom_kill_file(pid).and_then(|f| crate::cgroup::oom_kills(&f))
            })
            .await
            .map_err(|e| engine_error("read the container's cgroup", e))?,
            None => None,
        };
        Ok(Some(kills.is_some_and(|n| n > 0)))
    }

    async fn docker(&self) -> Result<&Docker> {
        self.connection.get().await
    }

    async fn info(&self) -> Result<&SystemInfo> {
        let docker = self.docker().await?;
        self.info
            .get_or_try_init(|| async {
                docker
                    .info()
                    .await
                    .map_err(|e| engine_error("read the engine's info", message_of(&e)))
            })
            .await
    }

    /// Refuses what this engine cannot apply as asked (never a silent downgrade).
    async fn check_host(&self, spec: &EnvironmentSpec) -> Result<()> {
        let info = self.info().await?;
        if spec.limits.memory.is_some() && info.swap_limit == Some(false) {
            return Err(Error::Usage(
                "the memory limit counts swap, and this Docker engine's kernel has no swap \
                 limit support (enable swap accounting: swapaccount=1 on cgroup v1)"
                    .into(),
            ));
        }
        if spec.limits.pids.is_some() && info.pids_limit == Some(false) {
            return Err(Error::Usage(
                "this Docker engine's kernel has no pids cgroup: the pids limit cannot apply"
                    .into(),
            ));
        }
        if effective_security(spec) == SecurityLevel::Strict {
            let seccomp = info
                .security_options
                .iter()
                .flatten()
                .any(|o| o.contains("seccomp"));
            if !seccomp {
                return Err(Error::Usage(
                    "security level strict needs the engine's seccomp filtering, and this \
                     Docker engine has none"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    async fn create_container(
        &self,
        docker: &Docker,
        env: &Environment,
        image: &str,
        ctx: &dyn EngineContext,
    ) -> Result<()> {
        let name = container_name(env);
        let bridge = effective_network(&env.spec) == NetworkMode::Bridge;
        for attempt in 0..2 {
            if bridge {
                let network = container::network_name(&self.home_hash, env);
                ctx.event(
                    IsolationEvent::NetworkAllocating,
                    serde_json::json!({ "network": network, "alias": env.name.as_str() }),
                )?;
                network::ensure_bridge(docker, &self.home_hash, env).await?;
                ctx.event(
                    IsolationEvent::NetworkAllocated,
                    serde_json::json!({ "network": network, "alias": env.name.as_str() }),
                )?;
                ctx.note("network", serde_json::json!(network))?;
            }
            let body = container::create_body(env, image, &self.home_hash);
            let options = CreateContainerOptionsBuilder::new().name(&name).build();
            match docker.create_container(Some(options), body).await {
                Ok(_) => return Ok(()),
                // The bridge network was reaped by a concurrent gc between the two calls.
                Err(e) if bridge && attempt == 0 && is_not_found(&e) => continue,
                Err(e) => {
                    return Err(engine_error(
                        "create the container",
                        format!("{name}: {}", message_of(&e)),
                    ));
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }
}

#[async_trait]
impl Engine for DockerEngine {
    fn level(&self) -> IsolationLevel {
        IsolationLevel::Docker
    }

    fn traits(&self) -> ptest_core::EngineTraits {
        // The root is a directory on this host, its workspace bind-mounted into the
        // container; paths inside are the container's own.
        ptest_core::EngineTraits {
            host_workspace: true,
            ..ptest_core::EngineTraits::default()
        }
    }

    async fn collect_garbage(
        &self,
        _home: &ptest_core::Home,
        live_ids: &[String],
    ) -> Vec<ptest_core::Removal> {
        // Without an engine there is nothing of this home's to collect (`ptest doctor` says
        // the engine is missing); `ptest gc` on a host without Docker is not a failure.
        if self.connection.get().await.is_err() {
            return Vec::new();
        }
        self.gc(live_ids)
            .await
            .into_iter()
            .map(|r| ptest_core::Removal {
                action: "removed",
                name: r.name,
                id: r.env_id.unwrap_or_default(),
                reason: format!("orphaned docker {:?} of this home", r.kind).to_lowercase(),
                error: r.error,
            })
            .collect()
    }

    fn capabilities(&self) -> Vec<Finding> {
        // A sync call that needs the engine: ask from a thread of its own with its own small
        // runtime, so it works inside or outside any caller's runtime.
        let probe = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), async {
                    let docker = crate::connection::connect()
                        .await
                        .map_err(|e| e.to_string())?;
                    let version = docker.version().await.map_err(|e| message_of(&e))?;
                    let info = docker.info().await.map_err(|e| message_of(&e))?;
                    let negotiated = docker.client_version().to_string();
                    Ok::<_, String>((version, info, negotiated))
                })
                .await
                .map_err(|_| "no answer within 5s".to_owned())?
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the probe thread panicked".to_owned()));
        let host = docker_host();
        let socket = host.strip_prefix("unix://").map(str::to_owned);
        let mut out = vec![Finding {
            check: "socket".into(),
            ok: socket.as_deref().is_none_or(|p| Path::new(p).exists()),
            detail: match &socket {
                Some(p) if Path::new(p).exists() => format!("{p} (DOCKER_HOST={host})"),
                Some(p) => format!("{p} does not exist: is dockerd running?"),
                None => format!("DOCKER_HOST={host}"),
            },
        }];
        match probe {
            Ok((version, info, negotiated)) => {
                out.push(Finding {
                    check: "engine".into(),
                    ok: true,
                    detail: format!(
                        "Docker {} (API {}, talking {negotiated})",
                        version.version.unwrap_or_default(),
                        version.api_version.unwrap_or_default(),
                    ),
                });
                let seccomp = info
                    .security_options
                    .iter()
                    .flatten()
                    .any(|o| o.contains("seccomp"));
                out.push(Finding {
                    check: "seccomp".into(),
                    ok: seccomp,
                    detail: if seccomp {
                        "default seccomp profile on (every level keeps it; strict requires it)"
                            .into()
                    } else {
                        "no seccomp: security level strict is refused".into()
                    },
                });
                out.push(Finding {
                    check: "limits".into(),
                    ok: info.memory_limit != Some(false)
                        && info.swap_limit != Some(false)
                        && info.pids_limit != Some(false),
                    detail: format!(
                        "memory limit {}, swap limit {}, pids limit {} (cgroup {}, driver {})",
                        yes_no(info.memory_limit),
                        yes_no(info.swap_limit),
                        yes_no(info.pids_limit),
                        info.cgroup_version
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                        info.cgroup_driver
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                    ),
                });
            }
            Err(e) => out.push(Finding {
                check: "engine".into(),
                ok: false,
                detail: format!("not reachable: {e}"),
            }),
        }
        out
    }

    fn check(&self, spec: &EnvironmentSpec) -> Result<()> {
        let unsupported = container::unsupported(spec);
        if !unsupported.is_empty() {
            return Err(Error::Usage(format!(
                "the docker engine cannot apply {}",
                unsupported.join("; ")
            )));
        }
        image::check(spec.docker.as_ref())
    }

    async fn create(&self, env: &Environment, ctx: &dyn EngineContext) -> Result<()> {
        let docker = self.docker().await?;
        self.check_host(&env.spec).await?;
        check_sockets(&env.spec)?;
        let docker_spec = env.spec.docker.clone().unwrap_or_default();
        // The image first: a missing one leaves nothing behind.
        let image = image::resolve(docker, &docker_spec, &self.home_hash).await?;
        ctx.note("image", serde_json::json!(image))?;
        let command = image::command(docker, &image).await?;
        ctx.note(IMAGE_COMMAND, serde_json::json!(command))?;
        let (root_path, id) = (env.root.clone(), env.id.clone());
        let unprivileged = effective_security(&env.spec) >= SecurityLevel::High;
        let limits = limited_root::limits(&env.spec, 0);
        blocking(move || {
            limited_root::create(&root_path, &id, limits)?;
            if unprivileged {
                // The container's user must be able to write its directories; the root itself
                // and its marker stay ptest's.
                for dir in root::ANATOMY.iter().chain([&root::OWN_WRITABLE]) {
                    let path = root_path.join(dir);
                    std::os::unix::fs::chown(&path, Some(UNPRIVILEGED_ID), Some(UNPRIVILEGED_ID))
                        .map_err(|e| Error::Root {
                        path: path.clone(),
                        reason: format!(
                            "security high and strict run the container as uid 65534, and \
                                 handing it the environment's directories needs ptest to run \
                                 as root: {e}"
                        ),
                    })?;
                }
            }
            Ok(())
        })
        .await?;
        self.create_container(docker, env, &image, ctx).await?;
        ctx.note("container", serde_json::json!(container_name(env)))?;
        Ok(())
    }

    async fn activate(&self, env: &Environment, ctx: &dyn EngineContext) -> Result<()> {
        let docker = self.docker().await?;
        let name = container_name(env);
        docker.start_container(&name, None).await.map_err(|e| {
            let message = message_of(&e);
            let hint = if message.contains("sleep") {
                "; the image must have a `sleep` command on its PATH (the container's main \
                 process is `sleep 2147483647` under Docker's init)"
            } else {
                ""
            };
            engine_error("start the container", format!("{name}: {message}{hint}"))
        })?;
        // Where the container's OOM kills are counted, so that a command's exec reads the
        // count before it starts: one killed before its pid is known is still told apart.
        let pid = docker
            .inspect_container(&name, None)
            .await
            .ok()
            .and_then(|c| c.state?.pid)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p != 0);
        if let Some(file) = pid.and_then(crate::cgroup::oom_kill_file) {
            ctx.note(exec::OOM_COUNTER, serde_json::json!(file))?;
        }
        Ok(())
    }

    async fn spawn(
        &self,
        env: &Environment,
        request: ExecRequest,
    ) -> Result<Box<dyn RunningProcess>> {
        let docker = self.docker().await?;
        Ok(Box::new(
            exec::spawn(docker, &container_name(env), env, request).await?,
        ))
    }

    async fn kill(&self, env: &Environment, process: &ProcessInfo) -> Result<()> {
        let docker = self.docker().await?;
        exec::kill(docker, &container_name(env), process).await
    }

    async fn validate(&self, env: &Environment) -> Result<Vec<Finding>> {
        let mut out = Vec::new();
        let name = container_name(env);
        match self.docker().await {
            Err(e) => out.push(Finding {
                check: "engine".into(),
                ok: false,
                detail: e.to_string(),
            }),
            Ok(docker) => match docker.inspect_container(&name, None).await {
                Ok(c) => {
                    out.push(Finding {
                        check: "container".into(),
                        ok: true,
                        detail: format!(
                            "{name} ({})",
                            c.id.as_deref()
                                .unwrap_or_default()
                                .get(..12)
                                .unwrap_or_default()
                        ),
                    });
                    let state = c.state.unwrap_or_default();
                    out.push(Finding {
                        check: "running".into(),
                        ok: state.running == Some(true),
                        detail: state
                            .status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "unknown".into()),
                    });
                    let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
                    out.push(Finding::owner_labels(env, &self.home_hash, |key| {
                        labels.get(key).map(String::as_str)
                    }));
                }
                Err(e) => out.push(Finding {
                    check: "container".into(),
                    ok: false,
                    detail: if is_not_found(&e) {
                        format!("{name} does not exist")
                    } else {
                        format!("{name}: {}", message_of(&e))
                    },
                }),
            },
        }
        out.extend(root::check(&env.root, &env.id));
        Ok(out)
    }

    async fn deactivate(&self, env: &Environment) -> Result<()> {
        let docker = self.docker().await?;
        let name = container_name(env);
        let options = StopContainerOptionsBuilder::new().t(2).build();
        match docker.stop_container(&name, Some(options)).await {
            Ok(()) => Ok(()),
            // Gone already, or never started: nothing to stop.
            Err(e) if is_not_found(&e) || crate::connection::status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(engine_error(
                "stop the container",
                format!("{name}: {}", message_of(&e)),
            )),
        }
    }

    async fn pause(&self, env: &Environment) -> Result<()> {
        let docker = self.docker().await?;
        let name = container_name(env);
        docker
            .pause_container(&name)
            .await
            .map_err(|e| engine_error("pause the container", format!("{name}: {}", message_of(&e))))
    }

    async fn resume(&self, env: &Environment) -> Result<()> {
        let docker = self.docker().await?;
        let name = container_name(env);
        docker.unpause_container(&name).await.map_err(|e| {
            engine_error(
                "unpause the container",
                format!("{name}: {}", message_of(&e)),
            )
        })
    }

    async fn cleanup(&self, env: &Environment) -> Result<()> {
        let docker = self.docker().await?;
        let name = container_name(env);
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(&name, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(engine_error(
                    "remove the container",
                    format!("{name}: {}", message_of(&e)),
                ));
            }
        }
        if effective_network(&env.spec) == NetworkMode::Bridge {
            network::release_run_network(docker, &self.home_hash, env).await;
        }
        let (root_path, id) = (env.root.clone(), env.id.clone());
        blocking(move || limited_root::remove(&root_path, &id)).await
    }

    async fn resource_usage(&self, env: &Environment) -> Result<ResourceUsage> {
        let docker = self.docker().await?;
        let name = container_name(env);
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let stats = docker
            .stats(&name, Some(options))
            .next()
            .await
            .transpose()
            .map_err(|e| {
                engine_error(
                    "read the container's stats",
                    format!("{name}: {}", message_of(&e)),
                )
            })?;
        // Docker's own /tmp and /dev/shm (without a limited root, whose walk counts them)
        // are measured through the main process's view of them: two statvfs calls.
        let scratch_pid = match limited_root::limits(&env.spec, 0) {
            Some(_) => None,
            None => docker
                .inspect_container(&name, None)
                .await
                .ok()
                .and_then(|c| c.state?.pid)
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p != 0),
        };
        let root_path = env.root.clone();
        let (disk, files) = blocking(move || {
            let (bytes, files) =
                root::usage(&root_path).map_err(|e| Error::io("measuring", &root_path, e))?;
            Ok((bytes + scratch_pid.map_or(0, scratch_usage), files))
        })
        .await?;
        let mut usage = ResourceUsage {
            disk_bytes: Some(disk),
            files: Some(files),
            ..ResourceUsage::default()
        };
        if let Some(stats) = stats {
            usage.memory_bytes = stats.memory_stats.and_then(|m| {
                // As `docker stats` shows it: usage less the inactive page cache.
                let inactive = m.stats.as_ref().and_then(|s| {
                    s.get("total_inactive_file")
                        .or_else(|| s.get("inactive_file"))
                        .copied()
                });
                m.usage.map(|u| u.saturating_sub(inactive.unwrap_or(0)))
            });
            usage.cpu_seconds = stats
                .cpu_stats
                .and_then(|c| c.cpu_usage)
                .and_then(|u| u.total_usage)
                .map(|ns| ns as f64 / 1e9);
            usage.pids = stats.pids_stats.and_then(|p| p.current);
            if let Some(networks) = stats.networks {
                usage.network_rx_bytes = Some(networks.values().filter_map(|n| n.rx_bytes).sum());
                usage.network_tx_bytes = Some(networks.values().filter_map(|n| n.tx_bytes).sum());
            }
        }
        Ok(usage)
    }
}

/// Refuses an exposed socket that is not a Unix socket on this host: the container would
/// otherwise get an empty file (Docker creates a missing bind source's target) or a regular
/// file where a socket was asked for.
fn check_sockets(spec: &EnvironmentSpec) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    for socket in &spec.expose_sockets {
        let path = socket.path();
        match std::fs::metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {}
            Ok(_) => {
                return Err(Error::Usage(format!(
                    "--expose-socket {socket}: not a Unix socket; give the path of one"
                )));
            }
            Err(e) => {
                return Err(Error::Usage(format!(
                    "--expose-socket {socket}: {e}; give the path of a Unix socket on this host"
                )));
            }
        }
    }
    Ok(())
}

/// Bytes in use in the tmpfs mounts at `/tmp` and `/dev/shm` of the container whose main
/// process is host process `pid`; 0 for one that cannot be read (the process gone, the
/// engine on another host).
fn scratch_usage(pid: u32) -> u64 {
    ["tmp", "dev/shm"]
        .iter()
        .filter_map(|dir| rustix::fs::statvfs(format!("/proc/{pid}/root/{dir}")).ok())
        .map(|st| st.f_blocks.saturating_sub(st.f_bfree) * st.f_frsize)
        .sum()
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}
