//! A suite's `[[suite.services]]`, started before its setup and stopped after its teardown,
//! for each attempt.
//!
//! A process service (`run`) is a supervised background process of the suite's own
//! environment. A container service (`image` or `build`) is an environment of its own at the
//! `docker` level, `<suite's environment>-<service>` (labelled with the run, its owner, the
//! suite and `ptest.service`; born `on_shutdown`, so `ptest gc` removes it if the run's
//! process dies first), whose command (`run`, else what its image runs by itself) is a
//! supervised process there; its readiness checks run inside the container (`ready_port` is
//! the container's port).
//!
//! The suite reaches a container service at `NAME:$PTEST_PORT_<NAME>` whatever its own
//! network: for each of the service's `ports`, a port leased to the suite's environment
//! (`NAME` for the first, `NAME-PORT` for the others) is listened on at `127.0.0.1` *inside the
//! suite environment's network namespace*, and `ptest run` carries each connection to that
//! port of `127.0.0.1` inside the container's namespace (a thread joins each namespace for
//! the bind or the connect, as the readiness checks do). A pod with only loopback has no
//! route to Docker's networks and a container's published ports are the host's: the relay
//! needs neither. `NAME` resolves to `127.0.0.1` through a hosts file mounted over
//! `/etc/hosts` in the suite environment's mount namespace (pods and containers have their
//! own); at security `low` there is none to change, and the suite's report says to use
//! `127.0.0.1`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use ptest_core::{CleanupPolicy, EnvName, Environment, RemoveOptions, ports::PortName};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::{Service, ServiceContainer, Suite};

use super::executor::argv_in;
use super::{Shared, Unit};

/// The key of a docker environment's details naming what its image runs by itself
/// (`ptest_docker::IMAGE_COMMAND`).
const IMAGE_COMMAND: &str = "image_command";

/// The name of the process that holds the suite environment's namespaces for the relays.
const ANCHOR: &str = "ptest.services";

/// What one attempt started: stopped by [`Services::stop`] (and, should the attempt be
/// dropped, the relays end with this; the containers go with the run's sweep).
#[derive(Default)]
pub(super) struct Services {
    containers: Vec<Environment>,
    relays: Vec<Relay>,
    leases: Vec<PortName>,
    anchor: bool,
    processes: Vec<String>,
    /// What the suite's report should say (a name that does not resolve).
    pub(super) warnings: Vec<String>,
}

/// A relay's task, ended when dropped.
struct Relay(JoinHandle<()>);

impl Drop for Relay {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The argv of a suite environment's process that only holds its namespaces.
const ANCHOR_ARGV: [&str; 2] = ["sleep", "2147483647"];

impl Services {
    /// Starts the suite's services, container services first (their ports go into `vars`,
    /// which process services and the suite's commands then see), each ready before the next;
    /// the reason (with the service's last output lines) when one is not.
    pub(super) async fn start(
        &mut self,
        shared: &Shared,
        unit: &Unit,
        env: &Environment,
        dir: &Path,
        in_workspace: bool,
        vars: &mut BTreeMap<String, String>,
    ) -> Result<(), String> {
        let suite = shared
            .project
            .suite(&unit.suite)
            .expect("planned suites exist");
        if suite.services.is_empty() {
            return Ok(());
        }
        let Some(exe) = &shared.options.supervisor else {
            return Err(
                "services need ptest's supervisor executable (RunOptions::supervisor)".into(),
            );
        };
        let containers: Vec<(&Service, &ServiceContainer)> = suite
            .services
            .iter()
            .filter_map(|s| s.container.as_ref().map(|c| (s, c)))
            .collect();
        let mut anchor = None;
        for (service, container) in &containers {
            let info = self
                .start_container(shared, unit, env, service, container, exe)
                .await?;
            if container.ports.is_empty() {
                continue;
            }
            let at = match anchor {
                Some(pid) => pid,
                None => {
                    let pid = self.start_anchor(shared, env, exe).await?;
                    anchor = Some(pid);
                    pid
                }
            };
            self.relay_ports(shared, env, service, at, info.process.pid, vars)
                .await?;
        }
        if let Some(pid) = anchor {
            let names: Vec<&str> = containers
                .iter()
                .filter(|(_, c)| !c.ports.is_empty())
                .map(|(s, _)| s.name.as_str())
                .collect();
            self.name_services(shared, env, pid, &names).await?;
        }
        for service in suite.services.iter().filter(|s| s.container.is_none()) {
            let mut env_vars: Vec<(String, String)> = vars.clone().into_iter().collect();
            env_vars.extend(service.env_vars.clone());
            let run = service.run.as_ref().expect("a process service has `run`");
            let spec = ptest_core::ServiceSpec {
                name: service.name.clone(),
                argv: argv_in(run, dir, in_workspace),
                env: env_vars,
                restart: ptest_core::RestartPolicy::No,
                ready: service.ready.clone(),
            };
            self.processes.push(service.name.clone());
            started(
                service,
                ptest_supervisor::start(&shared.manager, env, spec, exe).await,
            )?;
        }
        Ok(())
    }

    /// Makes a container service's environment and starts its command there; its process.
    async fn start_container(
        &mut self,
        shared: &Shared,
        unit: &Unit,
        env: &Environment,
        service: &Service,
        container: &ServiceContainer,
        exe: &Path,
    ) -> Result<ptest_core::ServiceInfo, String> {
        let manager = &shared.manager;
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            format!("service {:?}: {what}: {e}", service.name)
        };
        let name = container_name(env, &service.name, &shared.run_id)
            .map_err(|e| failed("naming its environment", &e))?;
        let mut spec = container.spec(Some(name.clone()));
        spec.labels = unit.labels(&shared.run_id);
        spec.labels
            .insert("ptest.service".into(), service.name.clone());
        spec.cleanup = CleanupPolicy::OnShutdown;
        let made = manager
            .create_environment(spec)
            .await
            .map_err(|e| failed(&format!("creating its container {name}"), &e))?;
        self.containers.push(made.clone());
        // The stored record: the one returned at creation predates what the engine noted.
        let made = manager
            .get_environment(made.id.as_str())
            .map_err(|e| failed("reading its environment", &e))?;
        let argv = match &service.run {
            Some(run) => run.argv(),
            None => image_command(&made).ok_or_else(|| {
                format!(
                    "service {:?}: its image runs nothing by itself (no entrypoint or command); \
                     give the command as run = \"...\"",
                    service.name
                )
            })?,
        };
        let spec = ptest_core::ServiceSpec {
            name: service.name.clone(),
            argv,
            env: service.env_vars.clone().into_iter().collect(),
            restart: ptest_core::RestartPolicy::No,
            ready: service.ready.clone(),
        };
        started(
            service,
            ptest_supervisor::start(manager, &made, spec, exe).await,
        )
    }

    /// Starts the process that holds the suite environment's namespaces; its host pid.
    async fn start_anchor(
        &mut self,
        shared: &Shared,
        env: &Environment,
        exe: &Path,
    ) -> Result<u32, String> {
        let spec = ptest_core::ServiceSpec {
            name: ANCHOR.to_owned(),
            argv: ANCHOR_ARGV.iter().map(|s| (*s).to_owned()).collect(),
            env: Vec::new(),
            restart: ptest_core::RestartPolicy::No,
            ready: ptest_core::Readiness::default(),
        };
        self.anchor = true;
        match ptest_supervisor::start(&shared.manager, env, spec, exe).await {
            Ok(info) => Ok(info.process.pid),
            Err(e) => Err(format!(
                "services: holding the suite environment's network for the relays: {}",
                start_failure(e)
            )),
        }
    }

    /// Leases a port of the suite's environment for each of the service container's ports
    /// and relays it from inside the suite's network (the namespace of process `at`) to that
    /// port in the container's (the namespace of its service process `target`).
    async fn relay_ports(
        &mut self,
        shared: &Shared,
        env: &Environment,
        service: &Service,
        at: u32,
        target: u32,
        vars: &mut BTreeMap<String, String>,
    ) -> Result<(), String> {
        let ports = service.container.as_ref().map_or(&[][..], |c| &c.ports);
        for (i, &port) in ports.iter().enumerate() {
            let lease = if i == 0 {
                service.name.clone()
            } else {
                format!("{}-{port}", service.name)
            };
            let lease: PortName = lease
                .parse()
                .map_err(|e| format!("service {:?}: {e}", service.name))?;
            let leased = shared
                .manager
                .allocate_port(env, &lease)
                .map_err(|e| format!("service {:?}: leasing a port: {e}", service.name))?;
            self.leases.push(lease);
            let listener = in_netns(at, move || {
                let l = std::net::TcpListener::bind(("127.0.0.1", leased))?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .await
            .and_then(TcpListener::from_std)
            .map_err(|e| {
                format!(
                    "service {:?}: listening on 127.0.0.1:{leased} in the suite's network: {e}",
                    service.name
                )
            })?;
            self.relays
                .push(Relay(tokio::spawn(relay(listener, target, port))));
            if i == 0 {
                vars.insert(
                    ServiceContainer::port_var(&service.name, None),
                    leased.to_string(),
                );
            }
            vars.insert(
                ServiceContainer::port_var(&service.name, Some(port)),
                leased.to_string(),
            );
        }
        Ok(())
    }

    /// Makes `names` resolve to 127.0.0.1 in the suite's environment (whose mount namespace
    /// process `at` is in): a hosts file mounted over its `/etc/hosts`. Where that namespace
    /// is the host's (security `low`), a warning instead.
    async fn name_services(
        &mut self,
        shared: &Shared,
        env: &Environment,
        at: u32,
        names: &[&str],
    ) -> Result<(), String> {
        if same_namespace(at, "mnt") {
            self.warnings.push(format!(
                "the suite's environment shares the host's files (security low), so its \
                 container services' names ({}) are not in its /etc/hosts: reach them at \
                 127.0.0.1:$PTEST_PORT_<NAME>",
                names.join(", ")
            ));
            return Ok(());
        }
        let dir = shared.report_dir().join("hosts");
        let file = dir.join(env.name.as_str());
        let mut text =
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        for name in names {
            text.push_str(&format!("127.0.0.1\t{name}\n"));
        }
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&file)?;
            f.write_all(text.as_bytes())
        });
        let mounted = match written {
            Ok(()) => mount_hosts(at, &file).await,
            Err(e) => Err(e),
        };
        mounted.map_err(|e| {
            format!(
                "services: naming {} in the suite's /etc/hosts: {e}",
                names.join(", ")
            )
        })
    }

    /// Stops what [`Services::start`] started: the suite's service processes, the relays,
    /// the leases and the service containers (removed whatever the suite's cleanup says: a
    /// kept environment should not keep serving).
    pub(super) async fn stop(&mut self, shared: &Shared, suite: &Suite, env: &Environment) {
        let manager = &shared.manager;
        let anchor = self.anchor.then(|| ANCHOR.to_owned());
        for name in self.processes.drain(..).chain(anchor) {
            let stopped = ptest_supervisor::stop(
                manager,
                env,
                &name,
                ptest_supervisor::Signal::TERM,
                Duration::from_secs(10),
            )
            .await;
            if let Err(e) = stopped {
                tracing::debug!("stopping service {name} of {}: {e}", suite.name);
            }
        }
        self.anchor = false;
        self.relays.clear();
        for lease in self.leases.drain(..) {
            if let Err(e) = manager.release_port(env, &lease) {
                tracing::debug!("releasing port {lease} of {}: {e}", env.name);
            }
        }
        for container in self.containers.drain(..) {
            if let Err(e) = manager
                .cleanup(&container, RemoveOptions { force: true })
                .await
            {
                tracing::warn!(
                    "could not remove service environment {}: {e}",
                    container.name
                );
            }
        }
    }
}

/// The outcome of starting `service`, as the suite's reason when it failed.
fn started(
    service: &Service,
    outcome: Result<ptest_core::ServiceInfo, ptest_supervisor::StartFailure>,
) -> Result<ptest_core::ServiceInfo, String> {
    outcome.map_err(|e| format!("service {:?} {}", service.name, start_failure(e)))
}

fn start_failure(e: ptest_supervisor::StartFailure) -> String {
    match e {
        ptest_supervisor::StartFailure::NotReady { reason, tail, .. } => {
            format!("{reason}; its last output:\n{tail}")
        }
        ptest_supervisor::StartFailure::Ptest(e) => format!("could not start: {e}"),
    }
}

/// A container service's environment name: `<suite's environment>-<service>`, or where that
/// is too long, `run-<run id>-<service>-<random>`.
fn container_name(env: &Environment, service: &str, run_id: &str) -> ptest_core::Result<EnvName> {
    EnvName::new(&format!("{}-{service}", env.name)).or_else(|_| {
        let id = ptest_core::EnvId::random().to_string();
        EnvName::new(&format!(
            "run-{run_id}-{service}-{}",
            &id[..6.min(id.len())]
        ))
    })
}

/// What a docker environment's image runs by itself, as its engine noted it; none when empty.
fn image_command(env: &Environment) -> Option<Vec<String>> {
    let argv: Vec<String> = env
        .details
        .get(IMAGE_COMMAND)?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<_>>()?;
    (!argv.is_empty()).then_some(argv)
}

/// Carries each connection accepted on `listener` to `127.0.0.1:port` in the network
/// namespace of process `pid`, until dropped (which ends the connections too).
async fn relay(listener: TcpListener, pid: u32, port: u16) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                connections.spawn(async move {
                    let outbound = in_netns(pid, move || {
                        let s = std::net::TcpStream::connect(("127.0.0.1", port))?;
                        s.set_nonblocking(true)?;
                        Ok(s)
                    })
                    .await
                    .and_then(TcpStream::from_std);
                    match outbound {
                        Ok(mut outbound) => {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                        Err(e) => tracing::debug!("relay to port {port} of process {pid}: {e}"),
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Whether process `pid` is in this process's namespace of `kind` (`net`, `mnt`).
fn same_namespace(pid: u32, kind: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ino = |p: String| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    ino(format!("/proc/{pid}/ns/{kind}")) == ino(format!("/proc/self/ns/{kind}"))
}

/// Runs `f` on a thread of its own inside the network namespace of process `pid` (`setns`
/// changes only the calling thread; a socket keeps the namespace it was made in).
async fn in_netns<T: Send + 'static>(
    pid: u32,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let joined = std::fs::File::open(format!("/proc/{pid}/ns/net")).and_then(|ns| {
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(std::io::Error::from)
        });
        let _ = tx.send(joined.and_then(|()| f()));
    });
    rx.await
        .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread ended")))
}

/// Mounts `file` over `/etc/hosts` in the mount namespace of process `pid`: a detached copy
/// of its mount made here (`open_tree`), then attached there by a thread that left this
/// process's filesystem context (`unshare(CLONE_FS)`, which `setns` into a mount namespace
/// needs) and joined that namespace.
async fn mount_hosts(pid: u32, file: &Path) -> std::io::Result<()> {
    use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};
    let tree = open_tree(
        rustix::fs::CWD,
        file,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let done = (|| -> std::io::Result<()> {
            // SAFETY: this thread is ptest's own, runs nothing else and ends right after;
            // unsharing its filesystem context (root, cwd, umask) affects only it.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }?;
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Mount),
            )?;
            move_mount(
                tree.as_fd(),
                "",
                rustix::fs::CWD,
                "/etc/hosts",
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )?;
            Ok(())
        })();
        let _ = tx.send(done);
    });
    rx.await
        .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread ended")))
}
