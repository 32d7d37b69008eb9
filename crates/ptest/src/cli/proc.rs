//! Arguments of `ptest proc ...` and `ptest ps`.

use std::time::Duration;

use clap::{Args, Subcommand};
use ptest_core::{EnvName, RestartPolicy};
use ptest_supervisor::Signal;

use super::{parse_duration, parse_pair};

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
    List(ProcListArgs),
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
pub struct ProcListArgs {
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
