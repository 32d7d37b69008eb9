//! `ptest net ...`: fault injection on an environment's ports, and the hidden `ptest __proxy`
//! that does it.
//!
//! `net fault ENV NAME` puts a `ptest-net` proxy in front of port lease NAME: the proxy gets
//! a lease of its own, `NAME-proxy` (so commands see `PTEST_PORT_<NAME>_PROXY`), and runs as
//! the environment's background process `proxy.NAME` under the usual supervisor. It therefore
//! lives in the environment's network namespace (clients inside a `loopback` environment
//! reach it on 127.0.0.1), shows in `proc list`, and dies with `env rm`. Its faults live in
//! the control file `<root>/run/net/NAME.json`; every change waits until the proxy confirms
//! it is in force.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use ptest_core::beneath::Beneath;
use ptest_core::{
    EnvFilter, Environment, EnvironmentStatus, Error, Manager, NetworkMode, PortName,
    ProcessStatus, Readiness, RestartPolicy, SecurityLevel, ServiceInfo, ServiceSpec,
};
use ptest_net::{ControlFile, Faults, ProxyConfig};
use ptest_supervisor::StartFailure;
use serde::Serialize;

use crate::Failure;
use crate::cli::net::{ClearArgs, FaultArgs, NetCommand, NetListArgs};
use crate::output::{self, Table};

/// How long a proxy may take to put a change in force before ptest gives up on it.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// One proxy as `net list` shows it.
#[derive(Debug, Serialize)]
struct ProxyView {
    env: String,
    env_id: String,
    /// The port lease it stands in front of.
    port: String,
    upstream_port: u16,
    proxy_port: u16,
    /// The variable commands find the proxy's port in.
    proxy_var: String,
    /// Its background process.
    process: String,
    /// The process's status; `null` if it was never started.
    status: Option<ProcessStatus>,
    faults: Faults,
}

/// Runs one `net` subcommand.
pub async fn run(manager: &Manager, cmd: NetCommand) -> Result<ExitCode, Failure> {
    match cmd {
        NetCommand::Fault(args) => fault(manager, args).await,
        NetCommand::Clear(args) => clear(manager, args).await,
        NetCommand::List(args) => list(manager, args),
    }
}

/// `ptest __proxy CONTROL_FILE`: serves the proxy the file describes until killed.
pub async fn serve(control: &Path) -> Result<ExitCode, Failure> {
    ptest_net::serve_file(control)
        .await
        .map_err(|e| Error::io("serving the proxy of", control, e))?;
    Ok(ExitCode::SUCCESS)
}

fn process_name(port: &PortName) -> String {
    format!("proxy.{port}")
}

/// The environment's `run/net/`, made when missing, opened beneath its root: a `run/` or
/// `run/net/` the environment's command replaced by a link is refused, never followed.
fn net_dir(env: &Environment) -> Result<Beneath, Error> {
    Ok(Beneath::open(&env.root)?.make_dir(Path::new("run/net"), 0o755)?)
}

/// The control file of `port`'s proxy, its files opened through the descriptor of `net`.
fn control_in(env: &Environment, net: &Beneath, port: &PortName) -> Result<ControlFile, Error> {
    let fd = net
        .fd()
        .try_clone()
        .map_err(|e| Error::io("opening", env.run_dir().join("net"), e))?;
    Ok(ControlFile::in_dir(
        fd,
        &env.run_dir().join("net"),
        &format!("{port}.json"),
    ))
}

fn control_file(env: &Environment, port: &PortName) -> Result<ControlFile, Error> {
    control_in(env, &net_dir(env)?, port)
}

/// The port lease the proxy of `port` listens on.
fn proxy_lease(port: &PortName) -> Result<PortName, Error> {
    format!("{port}-proxy").parse().map_err(|_| {
        Error::Usage(format!(
            "port name {port:?} is too long for a proxy: its lease {port}-proxy would pass 32 \
             characters"
        ))
    })
}

/// The environment's isolation as resolved at activation (absent for docker).
fn isolation<T: serde::de::DeserializeOwned>(env: &Environment, key: &str) -> Option<T> {
    serde_json::from_value(env.details.get("isolation")?.get(key)?.clone()).ok()
}

/// Refuses environments a proxy cannot serve, with the reason.
fn check_can_proxy(manager: &Manager, env: &Environment) -> Result<(), Error> {
    if env.status != EnvironmentStatus::Active {
        return Err(Error::WrongState {
            name: env.name.to_string(),
            status: env.status,
            action: "inject network faults",
            hint: None,
        });
    }
    if !manager.traits(env.level)?.network_faults {
        return Err(Error::Usage(format!(
            "network faults on {} environments are not in this build ({} only)",
            env.level,
            manager.levels_where(|t| t.network_faults).join(" and ")
        )));
    }
    if isolation::<NetworkMode>(env, "network") == Some(NetworkMode::None) {
        return Err(Error::Usage(format!(
            "environment {:?} has network none: nothing can connect to its ports, so there is \
             nothing to inject faults into (create it with --network loopback or host)",
            env.name.as_str()
        )));
    }
    Ok(())
}

/// The program that runs `ptest __proxy` inside the environment. Below `strict` the pod
/// holder's own program (`ptest-pod-holder`, or this very binary where the holder re-executes
/// it; both serve `__proxy`), reached through `/proc/self/exe` of the supervisor's forked
/// child, wherever it is installed and whatever the pod shows. At `strict` Landlock lets a command execute only
/// what its pod shows, which is not where a dev build lives: the proxy runs from a private
/// copy in `run/net/` (never a hard link: the environment's command could write through one
/// into the host's binary), made in the directory held open beneath the root, new
/// (`O_EXCL`), then renamed into place. The command may change its copy: the copy only runs
/// inside the environment, with its rights.
fn proxy_program(env: &Environment, net: &Beneath) -> Result<String, Error> {
    if isolation::<SecurityLevel>(env, "security").unwrap_or(SecurityLevel::Low)
        < SecurityLevel::Strict
    {
        return Ok("/proc/self/exe".into());
    }
    let copy = env.run_dir().join("net").join("ptest");
    if !net.is_file(Path::new("ptest")) {
        let exe =
            std::env::current_exe().map_err(|e| Error::io("finding", "the ptest executable", e))?;
        net.copy_in(&exe, Path::new("ptest"), 0o555)?;
    }
    Ok(copy.display().to_string())
}

/// The background process of `port`'s proxy, if one was ever started.
fn proxy_service(services: &[ServiceInfo], port: &PortName) -> Option<ServiceInfo> {
    let name = process_name(port);
    services
        .iter()
        .filter(|s| s.name == name)
        .max_by_key(|s| s.process.id)
        .cloned()
}

async fn fault(manager: &Manager, args: FaultArgs) -> Result<ExitCode, Failure> {
    let env = manager.get_environment(&args.env)?;
    check_can_proxy(manager, &env)?;
    let port = args.port;
    let Some(&upstream_port) = env.ports.get(&port) else {
        let known: Vec<&str> = env.ports.keys().map(PortName::as_str).collect();
        return Err(Error::Usage(format!(
            "environment {:?} has no port named {:?} (its ports: {}); lease one with `ptest port \
             alloc {} {port}`",
            env.name.as_str(),
            port.as_str(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
            env.name,
        ))
        .into());
    };
    let added = Faults {
        latency: args.latency,
        jitter: args.jitter,
        bandwidth: args.bandwidth,
        drop_after: args.drop_after.map(|b| b.0),
        reset: args.reset,
        timeout: args.timeout,
        down: args.down,
    };
    let lease = proxy_lease(&port)?;
    let proxy_port = match env.ports.get(&lease) {
        Some(&p) => p,
        None => match manager.allocate_port(&env, &lease) {
            Ok(p) => p,
            // Another `net fault` on this port may have leased it meanwhile.
            Err(e) => *manager
                .get_environment(env.id.as_str())?
                .ports
                .get(&lease)
                .ok_or(e)?,
        },
    };
    let net = net_dir(&env)?;
    let control = control_in(&env, &net, &port)?;
    // On a bridge the proxy's port is also forwarded from the host and reachable from
    // allowed neighbours, which arrive on the environment's address, not on loopback.
    let listen = if isolation::<NetworkMode>(&env, "network") == Some(NetworkMode::Bridge) {
        std::net::Ipv4Addr::UNSPECIFIED
    } else {
        std::net::Ipv4Addr::LOCALHOST
    };
    let config = control
        .update(|old| ProxyConfig {
            listen: (listen, proxy_port).into(),
            upstream: (std::net::Ipv4Addr::LOCALHOST, upstream_port).into(),
            generation: 0,
            faults: old.map(|c| c.faults).unwrap_or_default().merged(added),
        })
        .map_err(|e| Error::io("writing", control.path(), e))?;
    let running = proxy_service(&manager.services(Some(&env))?, &port)
        .is_some_and(|s| s.process.status.is_live());
    if !running {
        start_proxy(manager, &env, &port, &control, proxy_program(&env, &net)?).await?;
    }
    wait_applied(manager, &env, &port, &control, config.generation).await?;
    // Read again: the lease taken above is part of the environment now.
    let env = manager.get_environment(env.id.as_str())?;
    let view = views(manager, &env)?
        .into_iter()
        .filter(|v| v.port == port.as_str())
        .collect();
    print(view, args.json, true);
    Ok(ExitCode::SUCCESS)
}

async fn start_proxy(
    manager: &Manager,
    env: &Environment,
    port: &PortName,
    control: &ControlFile,
    program: String,
) -> Result<(), Failure> {
    let spec = ServiceSpec {
        name: process_name(port),
        argv: vec![
            program,
            "__proxy".into(),
            control.path().display().to_string(),
        ],
        env: Vec::new(),
        restart: RestartPolicy::OnFailure { max: None },
        // Ready means its first generation is in force, which `wait_applied` checks: a proxy
        // that starts `--down` never listens.
        ready: Readiness {
            timeout: APPLY_TIMEOUT,
            ..Readiness::default()
        },
    };
    let exe =
        std::env::current_exe().map_err(|e| Error::io("finding", "the ptest executable", e))?;
    match ptest_supervisor::start(manager, env, spec, &exe).await {
        // Another `net fault` on this port started it meanwhile.
        Ok(_) | Err(StartFailure::Ptest(Error::ProcessNameTaken { .. })) => Ok(()),
        Err(StartFailure::Ptest(e)) => Err(e.into()),
        Err(StartFailure::NotReady { name, reason, tail }) => Err(Error::Usage(format!(
            "the fault proxy (process {name:?}) {reason}:\n{tail}"
        ))
        .into()),
    }
}

/// Waits until the proxy of `port` has put `generation` in force; an error with the end of
/// its log when it died or did not get there in time.
async fn wait_applied(
    manager: &Manager,
    env: &Environment,
    port: &PortName,
    control: &ControlFile,
    generation: u64,
) -> Result<(), Failure> {
    let alive = || {
        manager
            .services(Some(env))
            .ok()
            .and_then(|all| proxy_service(&all, port))
            .is_some_and(|s| s.process.status.is_live())
    };
    if control.wait_applied(generation, APPLY_TIMEOUT, alive).await {
        return Ok(());
    }
    let tail = proxy_service(&manager.services(Some(env))?, port)
        .map(|s| {
            ptest_supervisor::tail_or_refusal(
                &env.root,
                &s.stderr_log,
                Some(ptest_supervisor::FAILURE_TAIL),
            )
        })
        .unwrap_or_default();
    Err(Error::Engine {
        level: env.level,
        action: "apply network faults",
        source: format!(
            "the proxy for port {port} (process {}) did not confirm the change within {}; its \
             last output:\n{tail}",
            process_name(port),
            humantime::format_duration(APPLY_TIMEOUT)
        )
        .into(),
    }
    .into())
}

async fn clear(manager: &Manager, args: ClearArgs) -> Result<ExitCode, Failure> {
    let env = manager.get_environment(&args.env)?;
    let ports = match args.port {
        Some(port) => {
            let control = control_file(&env, &port)?;
            if control
                .read()
                .map_err(|e| Error::io("reading", control.path(), e))?
                .is_none()
            {
                return Err(Error::Usage(format!(
                    "environment {:?} has no fault proxy for port {:?} (see `ptest net list {}`)",
                    env.name.as_str(),
                    port.as_str(),
                    env.name
                ))
                .into());
            }
            vec![port]
        }
        None => proxied_ports(&env)?,
    };
    let services = manager.services(Some(&env))?;
    for port in &ports {
        let control = control_file(&env, port)?;
        let config = control
            .update(|old| ProxyConfig {
                faults: Faults::default(),
                ..old.expect("the control file was found above")
            })
            .map_err(|e| Error::io("writing", control.path(), e))?;
        if proxy_service(&services, port).is_some_and(|s| s.process.status.is_live()) {
            wait_applied(manager, &env, port, &control, config.generation).await?;
        }
    }
    let cleared = views(manager, &env)?
        .into_iter()
        .filter(|v| ports.iter().any(|p| p.as_str() == v.port))
        .collect();
    print(cleared, args.json, false);
    Ok(ExitCode::SUCCESS)
}

fn list(manager: &Manager, args: NetListArgs) -> Result<ExitCode, Failure> {
    let envs = match &args.env {
        Some(e) => vec![manager.get_environment(e)?],
        None => manager.list_environments(&EnvFilter::default())?,
    };
    let mut all = Vec::new();
    for env in &envs {
        all.extend(views(manager, env)?);
    }
    print(all, args.json, false);
    Ok(ExitCode::SUCCESS)
}

/// The ports of `env` that have a proxy (a control file), sorted; listed through the
/// descriptor of `run/net/` opened beneath the root (none when it is missing).
fn proxied_ports(env: &Environment) -> Result<Vec<PortName>, Error> {
    let net = match Beneath::open(&env.root).and_then(|r| r.dir(Path::new("run/net"))) {
        Ok(net) => net,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut ports: Vec<PortName> = net
        .names()?
        .iter()
        .filter_map(|name| name.to_str()?.strip_suffix(".json")?.parse().ok())
        .collect();
    ports.sort();
    Ok(ports)
}

/// Every proxy of `env`, as listed.
fn views(manager: &Manager, env: &Environment) -> Result<Vec<ProxyView>, Failure> {
    let ports = proxied_ports(env)?;
    if ports.is_empty() {
        return Ok(Vec::new());
    }
    let services = manager.services(Some(env))?;
    let mut out = Vec::new();
    for port in ports {
        let control = control_file(env, &port)?;
        let Some(config) = control
            .read()
            .map_err(|e| Error::io("reading", control.path(), e))?
        else {
            continue;
        };
        let lease = proxy_lease(&port)?;
        out.push(ProxyView {
            env: env.name.to_string(),
            env_id: env.id.to_string(),
            port: port.to_string(),
            upstream_port: config.upstream.port(),
            proxy_port: config.listen.port(),
            proxy_var: lease.env_var(),
            process: process_name(&port),
            status: proxy_service(&services, &port).map(|s| s.process.status),
            faults: config.faults,
        });
    }
    Ok(out)
}

/// Prints proxies as a table, or as JSON: the first alone when `single` (`net fault`), else
/// the list.
fn print(views: Vec<ProxyView>, json: bool, single: bool) {
    if json {
        match views.first() {
            Some(first) if single => output::json(first),
            _ => output::json(&views),
        }
        return;
    }
    let mut table = Table::new(vec![
        "ENV", "PORT", "UPSTREAM", "PROXY", "VARIABLE", "STATUS", "FAULTS",
    ]);
    for v in views {
        table.row(vec![
            v.env,
            v.port,
            v.upstream_port.to_string(),
            v.proxy_port.to_string(),
            v.proxy_var,
            v.status.map_or_else(|| "-".into(), |s| s.to_string()),
            v.faults.to_string(),
        ]);
    }
    table.print();
}
