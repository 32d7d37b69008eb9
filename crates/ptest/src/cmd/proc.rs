//! `ptest proc ...` (and `ptest ps`): background processes of environments, and the hidden
//! `ptest __supervise` that owns each one.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use ptest_core::{EnvName, Error, Manager, Readiness, RestartPolicy, ServiceSpec};
use ptest_supervisor::{Follower, Signal, StartFailure};

use crate::Failure;
use crate::output::{self, Table};

/// `ptest proc ...`.
#[derive(Debug, Subcommand)]
pub enum ProcCommand {
    /// Start a background process that outlives this command, supervised (logs, restarts).
    ///
    /// Returns once it runs and every --ready-* check passes; otherwise stops it, prints the
    /// last 20 lines of its output and exits 1.
    Start(StartArgs),
    /// List background processes: status, pid, restarts, uptime, CPU, memory, threads, fds.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Print a background process's output (stdout to stdout, stderr to stderr).
    Logs(LogsArgs),
    /// Stop a background process: a signal (SIGTERM), then SIGKILL of its whole tree.
    Stop(StopArgs),
    /// Wait for a background process to end; exits with its exit code (128+N for signal N,
    /// 124 at the timeout).
    Wait(WaitArgs),
    /// Stop a background process, then start it again with the same settings.
    Restart(StopArgs),
}

/// Arguments of `proc start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Environment name or id.
    pub env: String,
    /// Its name in the environment (default: the program's file name).
    #[arg(long)]
    pub name: Option<EnvName>,
    /// Variable KEY=VALUE, repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub vars: Vec<(String, String)>,
    /// Restart policy: no, on-failure[:N] or always.
    #[arg(long, default_value = "no")]
    pub restart: RestartPolicy,
    /// Ready when this port (a number or a port lease name) accepts TCP connections inside
    /// the environment's network.
    #[arg(long, value_name = "PORT|NAME", help_heading = "Readiness")]
    pub ready_port: Option<String>,
    /// Ready when a line of its output matches this regular expression.
    #[arg(long, value_name = "REGEX", help_heading = "Readiness")]
    pub ready_log: Option<String>,
    /// Ready when GET URL answers STATUS (default: any 2xx).
    #[arg(long, value_name = "URL[=STATUS]", help_heading = "Readiness")]
    pub ready_http: Option<String>,
    /// Ready when this shell command, run in the environment, exits 0.
    #[arg(long, value_name = "CMD", help_heading = "Readiness")]
    pub ready_cmd: Option<String>,
    /// How long to wait for readiness.
    #[arg(long, default_value = "60s", value_parser = parse_duration, help_heading = "Readiness")]
    pub ready_timeout: Duration,
    /// Print the process as JSON.
    #[arg(long)]
    pub json: bool,
    /// The command.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Arguments of `proc list` and `ps`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this environment's.
    pub env: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `proc logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Environment name or id.
    pub env: String,
    /// Process name.
    pub name: String,
    /// Keep printing new output until the process ends (or Ctrl-C).
    #[arg(long, short)]
    pub follow: bool,
    /// Only standard output.
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,
    /// Only standard error.
    #[arg(long)]
    pub stderr: bool,
    /// Only the last N lines of each stream.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
}

/// Arguments of `proc stop` and `proc restart`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Environment name or id.
    pub env: String,
    /// Process name.
    pub name: String,
    /// The signal asking it to stop (a name like TERM, INT, HUP, or a number).
    #[arg(long, default_value = "TERM", value_parser = parse_signal)]
    pub signal: Signal,
    /// How long to wait before SIGKILL of its whole tree.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the process as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `proc wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Environment name or id.
    pub env: String,
    /// Process name.
    pub name: String,
    /// Give up after this long (exit 124).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    ptest_core::duration::parse(s)
}

fn parse_signal(s: &str) -> Result<Signal, String> {
    let name = s.trim_start_matches("SIG").to_ascii_uppercase();
    let signal = match name.as_str() {
        "TERM" => Signal::TERM,
        "INT" => Signal::INT,
        "HUP" => Signal::HUP,
        "QUIT" => Signal::QUIT,
        "KILL" => Signal::KILL,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        n => n
            .parse::<i32>()
            .ok()
            .and_then(Signal::from_named_raw)
            .ok_or_else(|| format!("unknown signal {s:?}"))?,
    };
    Ok(signal)
}

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

fn list(manager: &Manager, args: ListArgs) -> Result<ExitCode, Failure> {
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
