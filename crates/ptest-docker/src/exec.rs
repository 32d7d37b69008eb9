//! Running one command in an environment's container through the exec API, and killing its
//! process tree.
//!
//! Docker starts every exec'd command as the leader of a new session (so its own process
//! group), in the container's PID namespace; the engine reports its host pid, which is what
//! ptest records. Output arrives multiplexed on one connection and is split back into stdout
//! and stderr. A command killed by signal N is reported by Docker as exit code 128+N, and is
//! passed on as such (`signal` stays empty): the exec API does not tell them apart.
//!
//! Docker has no call that kills an exec, and an exec'd command outlives a client that
//! vanished. So as soon as the engine names the command's host pid, a
//! [`ptest_sandbox::watchdog::Watchdog`] is tied to it: should this process die (even by
//! SIGKILL) or drop the command unfinished, the watchdog kills the command's process group
//! and every descendant; it is disarmed once the command has ended. Its pid being gone, the
//! next look at the process records (`env show`, `env rm`, `gc`) finds it ended.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::{Stream, StreamExt};
use jiff::Timestamp;
use ptest_core::captured::BoundedOutput;
use ptest_core::{
    Environment, Error, ExecRequest, OutputMode, ProcessInfo, ProcessResult, Result,
    RunningProcess, pass_on,
};
use ptest_sandbox::watchdog::Watchdog;
use tokio::io::AsyncWrite;

use crate::connection::{engine_error, message_of, status_of};
use crate::container::{CONTAINER_ROOT, CONTAINER_WORKSPACE, command_env};

type Output =
    Pin<Box<dyn Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Send>>;

/// A command started by [`spawn`].
pub(crate) struct DockerProcess {
    docker: Docker,
    exec_id: String,
    pid: u32,
    ticks: u64,
    output: Output,
    // Kept open for the life of the command: the attach connection's write half.
    _input: Pin<Box<dyn AsyncWrite + Send>>,
    mode: OutputMode,
    // The container's OOM counter and its value at the start (see `crate::cgroup`).
    oom: Option<(PathBuf, u64)>,
    command: Vec<String>,
    /// The environment's root on the host, where captured output overflows to (`logs/`).
    root: PathBuf,
    started_at: Timestamp,
    started: Instant,
    /// Kills the command's tree if this process dies or drops this one before its end;
    /// disarmed once the command has ended (see [`watch`]).
    watchdog: Option<Watchdog>,
}

/// The key of a docker environment's details naming the file its container's OOM kills are
/// counted in (noted at activation).
pub(crate) const OOM_COUNTER: &str = "oom_counter";

/// Starts `request` in `container`: working directory `/workspace`, the environment's
/// variables (container paths) plus the request's.
pub(crate) async fn spawn(
    docker: &Docker,
    container: &str,
    env: &Environment,
    request: ExecRequest,
) -> Result<DockerProcess> {
    if request.argv.is_empty() {
        return Err(Error::Usage("no command given".into()));
    }
    let vars: Vec<String> = command_env(env)
        .into_iter()
        .chain(request.env)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    // The container's OOM kills so far, read before the command exists (see `OOM_COUNTER`).
    let oom = env
        .details
        .get(OOM_COUNTER)
        .and_then(|f| f.as_str())
        .map(PathBuf::from)
        .and_then(|f| crate::cgroup::oom_kills(&f).map(|n| (f, n)));
    let (started_at, started) = (Timestamp::now(), Instant::now());
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdin: Some(false),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(false),
                env: Some(vars),
                cmd: Some(request.argv.clone()),
                working_dir: Some(match &request.cwd {
                    Some(rel) => format!("{CONTAINER_ROOT}/{}", rel.display()),
                    None => CONTAINER_WORKSPACE.to_owned(),
                }),
                ..CreateExecOptions::default()
            },
        )
        .await
        .map_err(|e| match status_of(&e) {
            Some(409) => engine_error(
                "run a command",
                format!("container {container} is not running: {}", message_of(&e)),
            ),
            _ => engine_error("run a command", format!("{container}: {}", message_of(&e))),
        })?;
    let started_exec = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|e| engine_error("run a command", message_of(&e)))?;
    let StartExecResults::Attached { output, input } = started_exec else {
        return Err(engine_error(
            "run a command",
            "the engine detached an exec that asked to be attached",
        ));
    };
    // The engine answers the attach before the process exists: wait for its pid while the
    // command runs. Without a pid the process is recorded with none, and `proc start` waits
    // for its end (once in CI, a 30 s command: most likely a loaded dockerd slower than the
    // 10 s this waited before).
    let mut pid = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let inspect = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| engine_error("run a command", message_of(&e)))?;
        pid = inspect
            .pid
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(pid);
        if pid != 0 || inspect.running == Some(false) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let watchdog = if pid == 0 {
        None
    } else {
        watch(docker, &created.id, pid).await?
    };
    let ticks = match pid {
        0 => 0,
        pid => ptest_core::liveness::start_ticks(pid).unwrap_or(0),
    };
    // An environment activated before the counter was noted: read it now, by the pid.
    let oom = oom.or_else(|| {
        let file = (pid != 0)
            .then(|| crate::cgroup::oom_kill_file(pid))
            .flatten()?;
        crate::cgroup::oom_kills(&file).map(|n| (file, n))
    });
    Ok(DockerProcess {
        docker: docker.clone(),
        exec_id: created.id,
        pid,
        ticks,
        output,
        _input: input,
        mode: request.output,
        oom,
        command: request.argv,
        root: env.root.clone(),
        started_at,
        started,
        watchdog,
    })
}

/// Ties the exec'd command (host pid `pid`) to this process: a [`Watchdog`] kills its process
/// group and tree when this process dies (even by SIGKILL) or drops the [`DockerProcess`]
/// unfinished. Docker has no call that kills an exec, and its command outlives a vanished
/// client. The watchdog's pidfd names whatever has pid `pid` by the time it opens it, so the
/// exec is asked once more whether it still runs: if it does, its pid cannot have been
/// reused and the pidfd is its command; if not, there is nothing to guard.
async fn watch(docker: &Docker, exec_id: &str, pid: u32) -> Result<Option<Watchdog>> {
    let watchdog = tokio::task::spawn_blocking(move || Watchdog::new(pid))
        .await
        .map_err(|e| engine_error("watch a command", e))?;
    let watchdog = match watchdog {
        Ok(w) => w,
        // Ended (and reaped) already: its pid names nothing.
        Err(_) if ptest_core::liveness::start_ticks(pid).is_none() => return Ok(None),
        Err(e) => return Err(engine_error("watch a command", e)),
    };
    let running = docker
        .inspect_exec(exec_id)
        .await
        .map_err(|e| engine_error("run a command", message_of(&e)))?
        .running;
    if running == Some(true) {
        return Ok(Some(watchdog));
    }
    let _ = tokio::task::spawn_blocking(move || watchdog.disarm()).await;
    Ok(None)
}

#[async_trait]
impl RunningProcess for DockerProcess {
    fn pid(&self) -> (u32, u64) {
        (self.pid, self.ticks)
    }

    async fn wait(mut self: Box<Self>) -> Result<ProcessResult> {
        let exec = &self.exec_id[..self.exec_id.len().min(12)];
        let mut stdout = BoundedOutput::new(&self.root, format!("exec-{exec}.stdout.log"));
        let mut stderr = BoundedOutput::new(&self.root, format!("exec-{exec}.stderr.log"));
        // Where passed-on output goes: the caller's stdout and stderr, or the given
        // descriptors; captured where there is none.
        let mut sinks = self
            .mode
            .sinks()
            .map_err(|e| engine_error("pass a command's output on", e))?;
        while let Some(chunk) = self.output.next().await {
            let chunk = chunk.map_err(|e| engine_error("read a command's output", e))?;
            match (chunk, &mut sinks) {
                (LogOutput::StdOut { message } | LogOutput::Console { message }, None) => {
                    stdout.push(&message)
                }
                (LogOutput::StdErr { message }, None) => stderr.push(&message),
                (
                    LogOutput::StdOut { message } | LogOutput::Console { message },
                    Some((out, _)),
                ) => pass_on(out, &message).await,
                (LogOutput::StdErr { message }, Some((_, err))) => pass_on(err, &message).await,
                (LogOutput::StdIn { .. }, _) => {}
            }
        }
        let ended = Instant::now();
        let (stdout, stderr) = (stdout.finish(), stderr.finish());
        // The stream ends as the command ends; the engine records its exit code a moment later.
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit_code = loop {
            let inspect = self
                .docker
                .inspect_exec(&self.exec_id)
                .await
                .map_err(|e| engine_error("read a command's exit code", message_of(&e)))?;
            if inspect.running != Some(true) {
                break inspect.exit_code.and_then(|c| i32::try_from(c).ok());
            }
            if Instant::now() > deadline {
                return Err(engine_error(
                    "read a command's exit code",
                    format!(
                        "exec {} still reported running after its output ended",
                        self.exec_id
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if let Some(watchdog) = self.watchdog.take() {
            tokio::task::spawn_blocking(move || watchdog.disarm())
                .await
                .map_err(|e| engine_error("end a command's watchdog", e))?;
        }
        // Killed (137 = 128 + SIGKILL) while the container's OOM counter rose: the memory
        // limit did it.
        let oom_killed = exit_code == Some(137)
            && self
                .oom
                .as_ref()
                .is_some_and(|(file, before)| crate::cgroup::oom_kills(file) > Some(*before));
        Ok(ProcessResult {
            oom_killed,
            pid: Some(self.pid).filter(|p| *p != 0),
            exit_code,
            ..ProcessResult::captured(
                self.command,
                self.started_at,
                ended - self.started,
                stdout,
                stderr,
            )
        })
    }
}

/// Kills the process tree of `process` in `container`: its process group and every descendant
/// (also those that started their own session), from the host when ptest may signal them, else
/// with `kill` run inside the container. Nothing is done when the pid now belongs to another
/// process.
pub(crate) async fn kill(docker: &Docker, container: &str, process: &ProcessInfo) -> Result<()> {
    let (pid, ticks) = (process.pid, process.start_ticks);
    if pid == 0 {
        return Ok(());
    }
    match ptest_core::liveness::start_ticks(pid) {
        Some(t) if t != ticks => return Ok(()), // reused by an unrelated process
        _ => {}
    }
    let tree = tokio::task::spawn_blocking(move || descendants(pid))
        .await
        .map_err(|e| engine_error("kill a command", e))?;
    let mut denied = Vec::new();
    if let Err(e) = signal_group(pid)
        && e == rustix::io::Errno::PERM
    {
        denied.push(pid);
    }
    for &child in &tree {
        if let Err(rustix::io::Errno::PERM) = signal_one(child) {
            denied.push(child);
        }
    }
    if denied.is_empty() {
        return Ok(());
    }
    // The processes belong to a user ptest may not signal (rootful Docker, ptest not root):
    // name them as the container sees them and kill them from inside.
    let inner: Vec<String> = denied
        .iter()
        .filter_map(|p| inner_pid(*p))
        .enumerate()
        .map(|(i, p)| {
            if i == 0 && denied[0] == pid {
                format!("-{p}")
            } else {
                p.to_string()
            }
        })
        .collect();
    if inner.is_empty() {
        return Ok(());
    }
    let mut argv = vec![
        "kill".to_owned(),
        "-s".to_owned(),
        "KILL".to_owned(),
        "--".to_owned(),
    ];
    argv.extend(inner);
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(argv),
                attach_stdout: Some(false),
                attach_stderr: Some(false),
                ..CreateExecOptions::default()
            },
        )
        .await
        .map_err(|e| engine_error("kill a command", message_of(&e)))?;
    docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: true,
                tty: false,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|e| engine_error("kill a command", message_of(&e)))?;
    Ok(())
}

fn signal_group(pid: u32) -> std::result::Result<(), rustix::io::Errno> {
    match rustix::process::Pid::from_raw(pid as i32) {
        Some(p) => rustix::process::kill_process_group(p, rustix::process::Signal::KILL),
        None => Ok(()),
    }
}

fn signal_one(pid: u32) -> std::result::Result<(), rustix::io::Errno> {
    match rustix::process::Pid::from_raw(pid as i32) {
        Some(p) => rustix::process::kill_process(p, rustix::process::Signal::KILL),
        None => Ok(()),
    }
}

/// Host pids of every descendant of `root`, from `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = parent_of(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

fn parent_of(pid: u32) -> Option<u32> {
    Some(ptest_sandbox::procfs::stat(pid as i32).ok()??.ppid)
}

/// The pid of host process `pid` in its innermost PID namespace (the container's).
fn inner_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}
