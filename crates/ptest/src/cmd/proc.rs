//! `ptest proc ...` (and `ptest ps`): background processes of environments, and the hidden
//! `ptest __supervise` that owns each one.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use ptest_core::{EnvName, Error, Manager, Readiness, ServiceSpec};
use ptest_supervisor::{Follower, StartFailure};

use crate::Failure;
use crate::cli::proc::{LogsArgs, ProcCommand, ProcListArgs, StartArgs, StopArgs, WaitArgs};
use crate::output::{self, Table};

/// Runs one `proc` subcommand.
pub async fn run(manager: &Manager, cmd: ProcCommand) -> Result<ExitCode, Failure> {
    match cmd {
        ProcCommand::Start(args) => start(manager, args).await,
        ProcCommand::List(args) => list(manager, args),
        ProcCommand::Logs(args) => logs(manager, args).await,
        ProcCommand::Stop(args) => stop(manager, args).await,
        ProcCommand::Wait(args) => wait(manager, args).await,
        ProcCommand::Restart(args) => restart(manager, args).await,
    }
}

/// `ptest __supervise ID`: owns background process record ID until it ends for good.
pub async fn supervise(manager: &Manager, id: i64) -> Result<ExitCode, Failure> {
    ptest_supervisor::supervise(manager, id).await?;
    Ok(ExitCode::SUCCESS)
}

async fn start(manager: &Manager, args: StartArgs) -> Result<ExitCode, Failure> {
    let env = manager.get_environment(&args.env)?;
    let name = match args.name {
        Some(n) => n.to_string(),
        None => {
            let program = std::path::Path::new(&args.command[0])
                .file_name()
                .map(|f| f.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            EnvName::new(&program)
                .map_err(|_| {
                    ptest_core::Error::Usage(format!(
                        "cannot name a process after {program:?}; give --name"
                    ))
                })?
                .to_string()
        }
    };
    let spec = ServiceSpec {
        name,
        argv: args.command,
        env: args.vars,
        restart: args.restart,
        ready: Readiness {
            port: args.ready_port,
            log: args.ready_log,
            http: args.ready_http,
            cmd: args.ready_cmd,
            timeout: args.ready_timeout,
        },
    };
    let exe = std::env::current_exe()
        .map_err(|e| ptest_core::Error::io("finding", "the ptest executable", e))?;
    start_again(manager, &env, spec, &exe, args.json).await
}

fn list(manager: &Manager, args: ProcListArgs) -> Result<ExitCode, Failure> {
    let env = args
        .env
        .as_deref()
        .map(|e| manager.get_environment(e))
        .transpose()?;
    let mut services = manager.services(env.as_ref())?;
    ptest_supervisor::read_all_stats(&mut services);
    if args.json {
        output::json(&services);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(vec![
        "ENV", "NAME", "STATUS", "PID", "RESTARTS", "UPTIME", "CPU%", "RSS", "THREADS", "FDS",
        "EXIT", "COMMAND",
    ]);
    for s in &services {
        let st = s.stats.as_ref();
        let dash = || "-".to_owned();
        table.row(vec![
            s.env_name.clone(),
            s.name.clone(),
            s.process.status.to_string(),
            if s.process.pid == 0 {
                dash()
            } else {
                s.process.pid.to_string()
            },
            s.restarts.to_string(),
            st.map(|st| {
                humantime::format_duration(Duration::from_secs(st.uptime as u64)).to_string()
            })
            .unwrap_or_else(dash),
            st.map(|st| format!("{:.1}", st.cpu_percent))
                .unwrap_or_else(dash),
            st.map(|st| ptest_core::ByteSize(st.rss_bytes).to_string())
                .unwrap_or_else(dash),
            st.map(|st| st.threads.to_string()).unwrap_or_else(dash),
            st.map(|st| st.open_fds.to_string()).unwrap_or_else(dash),
            match (s.process.exit_code, s.process.signal) {
                (Some(c), _) => c.to_string(),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => dash(),
            },
            s.spec.argv.join(" "),
        ]);
    }
    table.print();
    Ok(ExitCode::SUCCESS)
}

async fn logs(manager: &Manager, args: LogsArgs) -> Result<ExitCode, Failure> {
    let env = manager.get_environment(&args.env)?;
    let s = manager.service(&env, &args.name)?;
    let streams: Vec<(&std::path::Path, bool)> = [
        (s.stdout_log.as_path(), !args.stderr),
        (s.stderr_log.as_path(), !args.stdout),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .collect();
    let mut followers = Vec::new();
    for (i, (path, _)) in streams.iter().enumerate() {
        let text = ptest_supervisor::tail(&env.root, path, args.tail).map_err(Error::from)?;
        if i == 0 && !args.stderr {
            print!("{text}");
        } else {
            eprint!("{text}");
        }
        followers.push((
            Follower::new(&env.root, path, Follower::size(&env.root, path)),
            i == 0 && !args.stderr,
        ));
    }
    let _ = std::io::stdout().flush();
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let done = !manager.service(&env, &args.name)?.process.status.is_live();
        for (f, to_stdout) in &mut followers {
            let bytes = f.read_new().map_err(Error::from)?;
            if bytes.is_empty() {
                continue;
            }
            if *to_stdout {
                let _ = std::io::stdout().write_all(&bytes);
                let _ = std::io::stdout().flush();
            } else {
                let _ = std::io::stderr().write_all(&bytes);
            }
        }
        if done {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

async fn stop(manager: &Manager, args: StopArgs) -> Result<ExitCode, Failure> {
    let env = manager.get_environment(&args.env)?;
    let s = ptest_supervisor::stop(manager, &env, &args.name, args.signal, args.timeout).await?;
    if args.json {
        output::json(&s);
    } else {
        println!("{}", s.name);
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait(manager: &Manager, args: WaitArgs) -> Result<ExitCode, Failure> {
    let env = manager.get_environment(&args.env)?;
    let s = manager.service(&env, &args.name)?;
    let timeout = args.timeout.unwrap_or(Duration::from_secs(u64::MAX / 4));
    match ptest_supervisor::wait_end(manager, s.process.id, timeout).await? {
        None => Ok(ExitCode::from(124)),
        Some(s) => Ok(ExitCode::from(
            match (s.process.exit_code, s.process.signal) {
                (Some(c), _) => c as u8,
                (None, Some(sig)) => 128 + sig as u8,
                _ => 125,
            },
        )),
    }
}

async fn restart(manager: &Manager, args: StopArgs) -> Result<ExitCode, Failure> {
    let env = manager.get_environment(&args.env)?;
    let old = ptest_supervisor::stop(manager, &env, &args.name, args.signal, args.timeout).await?;
    let exe = std::env::current_exe()
        .map_err(|e| ptest_core::Error::io("finding", "the ptest executable", e))?;
    start_again(manager, &env, old.spec, &exe, args.json).await
}

async fn start_again(
    manager: &Manager,
    env: &ptest_core::Environment,
    spec: ServiceSpec,
    exe: &std::path::Path,
    json: bool,
) -> Result<ExitCode, Failure> {
    match ptest_supervisor::start(manager, env, spec, exe).await {
        Ok(s) => {
            if json {
                output::json(&s);
            } else {
                println!("{}", s.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(StartFailure::Ptest(e)) => Err(e.into()),
        Err(StartFailure::NotReady { name, reason, tail }) => {
            output::error(&ptest_core::Error::Usage(format!(
                "process {name:?} {reason}"
            )));
            eprint!("{tail}");
            Ok(ExitCode::from(1))
        }
    }
}
