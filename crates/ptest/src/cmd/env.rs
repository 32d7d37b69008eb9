//! `ptest env ...`.

use std::process::ExitCode;

use ptest_core::{
    ContainerArgs, EnvFilter, Environment, EnvironmentSpec, ExecRequest, IsolationLevel, Limits,
    Manager, OutputMode, RemoveOptions, VirtualenvSpec,
};

use crate::Failure;
use crate::cli::{CreateArgs, EnvCommand, EnvListArgs, ExecArgs, NameArgs, RmArgs, StatsArgs};
use crate::output::{self, Table};

/// Runs one `env` subcommand.
pub async fn run(manager: &Manager, cmd: EnvCommand) -> Result<ExitCode, Failure> {
    match cmd {
        EnvCommand::Create(args) => create(manager, *args).await,
        EnvCommand::List(args) => list(manager, args),
        EnvCommand::Show(args) => show(manager, args),
        EnvCommand::Exec(args) => exec(manager, args).await,
        EnvCommand::Stats(args) => stats(manager, args).await,
        EnvCommand::Validate(args) => validate(manager, args).await,
        EnvCommand::Rm(args) => rm(manager, args).await,
        EnvCommand::Stop(args) => transition(manager, args, Transition::Stop).await,
        EnvCommand::Start(args) => transition(manager, args, Transition::Start).await,
        EnvCommand::Pause(args) => transition(manager, args, Transition::Pause).await,
        EnvCommand::Resume(args) => transition(manager, args, Transition::Resume).await,
    }
}

async fn create(manager: &Manager, args: CreateArgs) -> Result<ExitCode, Failure> {
    let wants_python = args.python.is_some()
        || !args.packages.is_empty()
        || !args.requirements.is_empty()
        || !args.constraints.is_empty()
        || args.index.given();
    let containers = ContainerArgs {
        image: args.image,
        build: args.build.map(|b| std::path::absolute(&b).unwrap_or(b)),
        namespace: args.namespace,
        context: args.context,
    };
    let level = args.level.unwrap_or_else(|| {
        IsolationLevel::implied(&containers, wants_python, manager.config().default_level)
    });
    let (docker, kubernetes) = containers.into_sections(level);
    // Files are named relative to where the user stands; the engine may run elsewhere.
    let absolute = |paths: Vec<std::path::PathBuf>| -> Result<Vec<_>, Failure> {
        paths
            .into_iter()
            .map(|p| {
                std::path::absolute(&p).map_err(|e| ptest_core::Error::io("resolving", p, e).into())
            })
            .collect()
    };
    let virtualenv = if wants_python {
        Some(VirtualenvSpec {
            python: args.python,
            packages: args.packages,
            requirements: absolute(args.requirements)?,
            constraints: absolute(args.constraints)?,
            find_links: args.index.find_links(),
            no_index: args.index.no_index,
            index_url: args.index.index_url.clone(),
            extra_index_urls: args.index.extra_index_url.clone(),
            offline: args.index.offline,
            project: None,
        })
    } else {
        None
    };
    let defaults = manager.config().level(level);
    let spec = EnvironmentSpec {
        name: args.name,
        level,
        path: args.path,
        labels: args.labels.into_iter().collect(),
        cleanup: args.cleanup.unwrap_or(defaults.cleanup),
        ttl: args.ttl,
        exec_timeout: args.exec_timeout,
        ports: args.ports,
        security: args.security,
        network: args.network,
        allow: args.allow,
        expose_sockets: args.expose_sockets,
        limits: Limits {
            memory: args.memory,
            cpus: args.cpus,
            pids: args.pids,
            nofile: args.nofile,
            fsize: args.fsize,
            disk: args.disk,
            files: args.files,
        },
        allow_degraded: args.allow_degraded,
        virtualenv,
        docker,
        kubernetes,
        overlay: None,
    };
    if args.dry_run {
        // What would be made, as its engine shows it; nothing is made or recorded.
        print!("{}", manager.manifests(spec).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let env = if args.no_start {
        manager.create_environment_unstarted(spec).await?
    } else {
        manager.create_environment(spec).await?
    };
    if args.json {
        output::json(&env);
    } else {
        println!("{}", env.name);
        tracing::info!(
            "created {} ({}) at {}",
            env.name,
            env.id,
            env.root.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn list(manager: &Manager, args: EnvListArgs) -> Result<ExitCode, Failure> {
    let filter = EnvFilter {
        level: args.level,
        status: args.status,
        labels: args.labels,
    };
    let path = match &args.path {
        Some(path) => Some(
            std::path::absolute(path).map_err(|e| ptest_core::Error::io("resolving", path, e))?,
        ),
        None => None,
    };
    if args.json {
        let mut envs = manager.list_environments(&filter)?;
        envs.retain(|e| path.as_ref().is_none_or(|p| e.root == *p));
        output::json(&envs);
        return Ok(ExitCode::SUCCESS);
    }
    let mut envs = manager.list_summaries(&filter)?;
    envs.retain(|e| path.as_ref().is_none_or(|p| e.root == *p));
    let mut table = Table::new(vec![
        "NAME", "ID", "LEVEL", "STATUS", "CLEANUP", "AGE", "ROOT",
    ]);
    for env in &envs {
        table.styled_row(vec![
            (env.name.to_string(), Default::default()),
            (env.id.to_string(), Default::default()),
            (env.level.to_string(), Default::default()),
            (env.status.to_string(), output::status_style(env.status)),
            (env.cleanup.to_string(), Default::default()),
            (output::age(env.created_at), Default::default()),
            (env.root.display().to_string(), Default::default()),
        ]);
    }
    table.print();
    Ok(ExitCode::SUCCESS)
}

fn show(manager: &Manager, args: NameArgs) -> Result<ExitCode, Failure> {
    let env = manager.get_environment(&args.name)?;
    let processes = manager.processes(&env)?;
    if args.json {
        output::json(&serde_json::json!({ "environment": env, "processes": processes }));
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        ("name", env.name.to_string()),
        ("id", env.id.to_string()),
        ("level", env.level.to_string()),
        ("status", env.status.to_string()),
        ("root", env.root.display().to_string()),
        ("cleanup", env.spec.cleanup.to_string()),
        ("created", env.created_at.to_string()),
    ];
    for (what, t) in [
        ("activated", env.activated_at),
        ("deactivated", env.deactivated_at),
        ("last activity", env.last_activity),
    ] {
        if let Some(t) = t {
            rows.push((what, t.to_string()));
        }
    }
    if let Some(t) = env.expires_at {
        rows.push(("expires", t.to_string()));
    }
    if let Some(t) = env.spec.exec_timeout {
        rows.push(("exec timeout", humantime::format_duration(t).to_string()));
    }
    for (name, port) in &env.ports {
        rows.push(("port", format!("{name} = {port} ({})", name.env_var())));
    }
    for (k, v) in &env.spec.labels {
        rows.push(("label", format!("{k}={v}")));
    }
    for socket in &env.spec.expose_sockets {
        rows.push(("socket", format!("{socket} (exposed from the host)")));
    }
    if let Some(e) = &env.error {
        rows.push(("error", e.clone()));
    }
    if let Some(iso) = env.details.get("isolation") {
        let mut parts = vec![
            format!("security {}", iso["security"].as_str().unwrap_or("?")),
            format!("network {}", iso["network"].as_str().unwrap_or("?")),
        ];
        if iso["pod"] == true {
            parts.push("own namespaces".into());
        }
        if iso["cgroup"] == true {
            parts.push("own cgroup".into());
        }
        if iso["seccomp"] == true {
            parts.push("seccomp filter".into());
        }
        rows.push(("isolation", parts.join(", ")));
        if let Some(caps) = iso["capabilities"].as_str() {
            rows.push(("  caps", caps.to_owned()));
        }
        for dropped in iso["dropped"].as_array().into_iter().flatten() {
            rows.push(("  dropped", dropped.as_str().unwrap_or("").to_owned()));
        }
    }
    // A bridge's details are an object; another engine's `network` (a container's network
    // name) is a plain fact, shown with the others below.
    let bridge = env.details.get("network").filter(|n| n.is_object());
    if let Some(net) = bridge {
        rows.extend(network_rows(net));
    }
    let limits = serde_json::to_value(&env.spec.limits).expect("limits serialize");
    for (k, v) in limits.as_object().into_iter().flatten() {
        rows.push((
            "limit",
            format!("{k} = {}", v.to_string().trim_matches('"')),
        ));
    }
    if let Some(python) = env.details.get("python") {
        rows.push((
            "python",
            format!(
                "{} ({})",
                python["version"].as_str().unwrap_or("?"),
                python["path"].as_str().unwrap_or("?")
            ),
        ));
    }
    if let Some(tool) = env.details.get("installer").and_then(|t| t.as_str()) {
        rows.push(("installer", tool.to_owned()));
    }
    if let Some(hash) = env.details.get("spec_hash") {
        rows.push((
            "spec hash",
            hash["digest"].as_str().unwrap_or("?").to_owned(),
        ));
        // Which inputs made the hash: what to compare when an environment was rebuilt.
        for input in hash["inputs"].as_array().into_iter().flatten() {
            rows.push((
                "  input",
                format!(
                    "{} = {}",
                    input["key"].as_str().unwrap_or(""),
                    input["value"].as_str().unwrap_or("")
                ),
            ));
        }
    }
    // Facts other engines keep (a container's image, name and network).
    for (key, value) in &env.details {
        let shown = [
            "isolation",
            "sandbox",
            "python",
            "installer",
            "spec_hash",
            "reused_template",
        ];
        if !shown.contains(&key.as_str()) && (key != "network" || bridge.is_none()) {
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            rows.push((key.as_str(), text));
        }
    }
    if let Some(reused) = env.details.get("reused_template") {
        rows.push((
            "reused",
            format!(
                "template {} ({} files copied)",
                reused["hash"].as_str().unwrap_or("?"),
                reused["copied"]
            ),
        ));
    }
    for p in &processes {
        rows.push(("process", format!("pid {} {}", p.pid, p.command.join(" "))));
    }
    for (k, v) in rows {
        println!("{k:<13}{v}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `env show` lines for a bridge environment's network: its address, its `--allow` rules
/// with what each resolved to, and the host ports forwarded to it.
fn network_rows(net: &serde_json::Value) -> Vec<(&'static str, String)> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_owned();
    let prefix = text(&net["subnet"]);
    let prefix = prefix.rsplit('/').next().unwrap_or("?");
    let mut rows = vec![(
        "network",
        format!(
            "bridge {}: {}/{prefix} on {} (gateway {}, link {})",
            text(&net["status"]),
            text(&net["address"]),
            text(&net["hub"]),
            text(&net["gateway"]),
            text(&net["link"])
        ),
    )];
    let rules = net["allow"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() {
        rows.push(("  allow", "nothing: every destination is refused".into()));
    }
    for rule in &rules {
        let networks: Vec<String> = rule["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        let port = rule["port"]
            .as_u64()
            .map_or_else(|| " (any port)".to_owned(), |p| format!(" port {p}"));
        rows.push((
            "  allow",
            format!("{} = {}{port}", text(&rule["rule"]), networks.join(", ")),
        ));
    }
    for port in net["forwarded"].as_array().into_iter().flatten() {
        rows.push((
            "  forwarded",
            format!("host port {port} -> {}:{port}", text(&net["address"])),
        ));
    }
    rows
}

async fn exec(manager: &Manager, args: ExecArgs) -> Result<ExitCode, Failure> {
    let env = manager.get_environment(&args.name)?;
    let request = ExecRequest {
        argv: args.command,
        env: args.env,
        timeout: args.timeout,
        output: if args.json {
            OutputMode::Capture
        } else {
            OutputMode::Inherit
        },
        forward_signals: true,
        cwd: args.cwd,
    };
    let result = manager.execute_command(&env, request).await?;
    if args.json {
        output::json(&result);
    } else if result.timed_out {
        eprintln!(
            "ptest: command timed out after {} in {}; its process tree was killed",
            humantime::format_duration(std::time::Duration::from_millis(
                result.duration.as_millis() as u64
            )),
            env.name
        );
    } else if result.oom_killed {
        let limit = env
            .spec
            .limits
            .memory
            .map_or_else(|| "the host's memory".to_owned(), |m| format!("limit {m}"));
        eprintln!("ptest: killed: out of memory ({limit}) in {}", env.name);
    }
    // Exit codes above 255 cannot happen on Unix; 128+signal stays below 256.
    Ok(ExitCode::from(result.shell_code() as u8))
}

async fn stats(manager: &Manager, args: StatsArgs) -> Result<ExitCode, Failure> {
    let env = manager.get_environment(&args.name)?;
    // While watching, the environment's `[monitor]` thresholds are watched too.
    let mut monitor = ptest_core::monitor::Monitor::default();
    loop {
        let usage = manager.resource_usage(&env).await?;
        if args.watch {
            let thresholds = manager.config().monitor.clone();
            monitor.sample(manager, &thresholds, &env).await?;
        }
        if args.json && args.watch {
            println!(
                "{}",
                serde_json::to_string(&usage).expect("usage serializes")
            );
        } else if args.json {
            output::json(&usage);
        } else {
            stats_table(&env, &usage);
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

fn stats_table(env: &Environment, usage: &ptest_core::ResourceUsage) {
    let show = |v: Option<String>| v.unwrap_or_else(|| "n/a".into());
    let mut table = Table::new(vec![
        "NAME",
        "DISK",
        "FILES",
        "MEMORY",
        "PEAK",
        "CPU",
        "PIDS",
        "OOM KILLS",
        "NET RX",
        "NET TX",
    ]);
    table.row(vec![
        env.name.to_string(),
        show(usage.disk_bytes.map(output::bytes)),
        show(usage.files.map(|n| n.to_string())),
        show(usage.memory_bytes.map(output::bytes)),
        show(usage.memory_peak_bytes.map(output::bytes)),
        show(usage.cpu_seconds.map(|s| format!("{s:.2}s"))),
        show(usage.pids.map(|n| n.to_string())),
        show(usage.oom_kills.map(|n| n.to_string())),
        show(usage.network_rx_bytes.map(output::bytes)),
        show(usage.network_tx_bytes.map(output::bytes)),
    ]);
    table.print();
}

async fn validate(manager: &Manager, args: NameArgs) -> Result<ExitCode, Failure> {
    let env = manager.get_environment(&args.name)?;
    let findings = manager.validate(&env).await?;
    let ok = findings.iter().all(|f| f.ok);
    if args.json {
        output::json(&serde_json::json!({ "ok": ok, "findings": findings }));
    } else {
        for f in &findings {
            println!(
                "{} {:<11}{}",
                if f.ok { "ok  " } else { "FAIL" },
                f.check,
                f.detail
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn rm(manager: &Manager, args: RmArgs) -> Result<ExitCode, Failure> {
    let options = RemoveOptions { force: args.force };
    if args.all {
        let removals = manager.cleanup_all(&EnvFilter::default(), options).await?;
        let failed = removals.iter().filter(|r| r.error.is_some()).count();
        if args.json {
            output::json(&removals);
        } else {
            for r in &removals {
                match &r.error {
                    None => println!("removed {}", r.name),
                    Some(e) => eprintln!("failed to remove {}: {e}", r.name),
                }
            }
        }
        return Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        });
    }
    // Each name on its own, going on past failures; the worst failure sets the exit code.
    let mut worst: Option<Failure> = None;
    let mut report = Vec::new();
    for name in &args.names {
        let removed: Result<Environment, ptest_core::Error> = async {
            let env = manager.get_environment(name)?;
            manager.cleanup(&env, options).await?;
            Ok(env)
        }
        .await;
        match removed {
            Ok(env) => {
                if !args.json {
                    println!("removed {}", env.name);
                }
                report.push(serde_json::json!({ "name": name, "error": null }));
            }
            Err(e) => {
                if !args.json {
                    output::error(&e);
                }
                report.push(serde_json::json!({ "name": name, "error": e.to_string() }));
                let e = Failure::Core(e);
                if worst
                    .as_ref()
                    .is_none_or(|w| crate::exit_code(&e) > crate::exit_code(w))
                {
                    worst = Some(e);
                }
            }
        }
    }
    if args.json {
        output::json(&report);
    }
    Ok(match worst {
        None => ExitCode::SUCCESS,
        Some(w) => ExitCode::from(crate::exit_code(&w)),
    })
}

/// A lifecycle step asked for by `env stop|start|pause|resume`.
#[derive(Debug, Clone, Copy)]
enum Transition {
    Stop,
    Start,
    Pause,
    Resume,
}

/// Takes the environment through `step` and prints its new status (or it as JSON). `env
/// start` then starts again the background processes `env stop` stopped.
async fn transition(
    manager: &Manager,
    args: NameArgs,
    step: Transition,
) -> Result<ExitCode, Failure> {
    let env = manager.get_environment(&args.name)?;
    let env = match step {
        Transition::Stop => manager.stop_environment(&env).await?,
        Transition::Start => {
            let env = manager.start_environment(&env).await?;
            let exe = std::env::current_exe()
                .map_err(|e| ptest_core::Error::io("finding", "the ptest executable", e))?;
            for name in ptest_supervisor::restart_stopped(manager, &env, &exe).await? {
                tracing::info!("started {name} again in {}", env.name);
            }
            env
        }
        Transition::Pause => manager.pause_environment(&env).await?,
        Transition::Resume => manager.resume_environment(&env).await?,
    };
    if args.json {
        output::json(&env);
    } else {
        println!("{} {}", env.name, env.status);
    }
    Ok(ExitCode::SUCCESS)
}
