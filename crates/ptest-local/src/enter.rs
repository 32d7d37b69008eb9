//! Running one command in a sandboxed environment: inside its pod (the pod's holder forks it,
//! already in the pod's namespaces and cgroup) or, at security `low`, on the host inside its
//! cgroup (through a relay process, which a thread of its own spawns and waits for). Either
//! way, if this program dies (a SIGKILLed `ptest env exec`) the command's whole process group
//! dies too: in a pod the holder sees our connection hang up and kills it; on the host the
//! relay gets its parent-death signal (tied to that thread) and kills it.

use std::os::fd::OwnedFd;

use async_trait::async_trait;
use ptest_core::{
    Environment, Error, ExecRequest, OutputMode, ProcessResult, Result, RunningProcess,
    SecurityLevel,
};
use ptest_sandbox::{CommandSpec, ExitStatus, Rlimits, SpawnedChild, Stdio, spawn_in_cgroup};
use rustix::process::{Pid, Signal};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use crate::capture::Capture;
use crate::isolation::Isolation;
use crate::sandbox;

/// A command started in a sandbox.
pub(crate) struct SandboxedProcess {
    pid: u32,
    ticks: u64,
    exited: oneshot::Receiver<Result<ExitStatus>>,
    capture: Capture,
    cgroup: Option<ptest_sandbox::Cgroup>,
    oom_before: u64,
}

fn spawn_error(e: impl std::fmt::Display) -> Error {
    Error::Engine {
        level: ptest_core::IsolationLevel::Basic,
        action: "run a command in the sandbox",
        message: e.to_string(),
    }
}

/// Starts `request` in `env`'s sandbox as `iso` describes.
pub(crate) fn spawn(
    env: &Environment,
    request: ExecRequest,
    iso: &Isolation,
) -> Result<SandboxedProcess> {
    if request.argv.is_empty() {
        return Err(Error::Usage("no command given".into()));
    }
    let capture = Capture::start(request.argv.clone());
    // Nothing is inherited by a pod command: pass ptest's environment, then the environment's
    // own variables, then the caller's.
    let mut cmd = CommandSpec::new(request.argv.clone()).cwd(env.workspace());
    // A later value of a name replaces an earlier one (getenv would see only the first).
    let vars: std::collections::BTreeMap<std::ffi::OsString, std::ffi::OsString> =
        std::env::vars_os()
            .chain(
                env.command_env()
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into())),
            )
            .chain(request.env.into_iter().map(|(k, v)| (k.into(), v.into())))
            .collect();
    cmd.env = vars.into_iter().collect();
    // Marks every process this command starts, so what it leaves behind can be found.
    let marker = format!("PTEST_EXEC_ID={}", ptest_core::EnvId::random());
    let (key, value) = marker.split_once('=').expect("the marker has a '='");
    cmd.env.push((key.into(), value.into()));
    cmd.stdin = Stdio::null().map_err(spawn_error)?;
    cmd.rlimits = Rlimits {
        open_files: env.spec.limits.nofile,
        file_size: env.spec.limits.fsize.map(|s| s.0),
    };
    if iso.security >= SecurityLevel::High {
        cmd.no_new_privs = true;
        cmd.drop_capabilities = true;
    }
    if iso.security >= SecurityLevel::Strict {
        cmd.landlock = Some(sandbox::landlock_rules(env));
        cmd.seccomp = true;
    }
    let (stdout, stderr) = match &request.output {
        OutputMode::Capture => {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            cmd.stdout = Stdio::Fd(out_w);
            cmd.stderr = Stdio::Fd(err_w);
            (Some(reader(out_r)?), Some(reader(err_r)?))
        }
        OutputMode::Inherit => (None, None),
        OutputMode::Fds { stdout, stderr } => {
            cmd.stdout = Stdio::Fd(stdout.try_clone().map_err(spawn_error)?);
            cmd.stderr = Stdio::Fd(stderr.try_clone().map_err(spawn_error)?);
            (None, None)
        }
    };
    // One handle reads the OOM count here; the waiting task or thread gets a copy of it.
    let cgroup = sandbox::open_cgroup(env);
    let oom_before = oom_kills(cgroup.as_ref());
    // What the command leaves in its process group dies when it exits (the relay kills the
    // group before reaping it); in a pod, also what stayed in its session (below).
    cmd.end_group_on_exit = true;
    let pod = if iso.pod {
        sandbox::attach_with(env, cgroup.clone())?
    } else {
        None
    };
    let group = cgroup.clone();

    let not_found = |e: ptest_sandbox::Error| match e {
        ptest_sandbox::Error::Spawn {
            step: "execve",
            source,
            ..
        } if source.kind() == std::io::ErrorKind::NotFound => Error::Usage(format!(
            "cannot run {:?} in {}: command not found",
            request.argv[0], env.name
        )),
        e => spawn_error(e),
    };
    let (exit_tx, exit_rx) = oneshot::channel();
    let pid = match pod {
        // The holder forks the command (this blocks until its execve, about one fork/exec);
        // our connection to it is what ties the command to us. Its end is awaited on the
        // reactor: no thread of its own.
        Some(pod) => {
            let spawned = pod.spawn(&cmd);
            drop(cmd); // our copies of the pipes' write ends: the readers see end-of-file
            let child = spawned.map_err(not_found)?;
            let pid = child.pid();
            let holder = pod.holder_pid();
            tokio::spawn(async move {
                let status = wait_in_pod(child, holder, group.as_ref(), &marker).await;
                let _ = exit_tx.send(status);
            });
            pid
        }
        // The relay's parent-death signal follows the thread that forked it: a thread that
        // lives as long as the command.
        None => {
            let (pid_tx, pid_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let spawned = spawn_in_cgroup(&cmd, group.as_ref());
                drop(cmd);
                match spawned {
                    Ok(child) => {
                        let _ = pid_tx.send(Ok(child.pid()));
                        let _ = exit_tx.send(child.wait().map_err(spawn_error));
                    }
                    Err(e) => {
                        let _ = pid_tx.send(Err(e));
                    }
                }
            });
            pid_rx.recv().map_err(spawn_error)?.map_err(not_found)?
        }
    } as u32;
    Ok(SandboxedProcess {
        pid,
        ticks: ptest_core::liveness::start_ticks(pid).unwrap_or(0),
        exited: exit_rx,
        capture: capture.reading(stdout, stderr),
        cgroup,
        oom_before,
    })
}

/// Waits for a command the pod's holder forked, then ends what it left behind: processes of
/// the environment's cgroup that carry the command's marker and stayed in its session, which
/// is the holder's (a `setsid` daemon has left it on purpose).
async fn wait_in_pod(
    child: SpawnedChild,
    holder: i32,
    group: Option<&ptest_sandbox::Cgroup>,
    marker: &str,
) -> Result<ExitStatus> {
    let fd = child.exit_fd().map_err(spawn_error)?;
    // SAFETY: an OwnedFd is a valid open descriptor that stays open, and always returns the
    // same raw fd, for as long as the AsyncFd owns it.
    let ended = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(spawn_error)?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_error)? {
            break status;
        }
        ended.readable().await.map_err(spawn_error)?.clear_ready();
    };
    // Read from procfs, like the candidates' sessions (getsid(2) reads 0 for a session led
    // from outside the caller's PID namespace, and rustix asserts it is not).
    // Most commands leave nothing: the holder alone is one read, not a scan.
    let group = group.filter(|g| g.pids_current().ok().flatten() != Some(1));
    if let Some(group) = group
        && let Some(session) = session_of(holder)
    {
        for p in group.pids().unwrap_or_default() {
            if p != holder
                && session_of(p) == Some(session)
                && carries(p, marker)
                && let Some(pid) = Pid::from_raw(p)
            {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
    }
    Ok(status)
}

/// The session of `pid` as our `/proc` shows it.
fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name: state, ppid, pgrp, session.
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Whether `pid`'s environment holds `var` (`NAME=value`).
fn carries(pid: i32, var: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == var.as_bytes()))
}

fn oom_kills(cgroup: Option<&ptest_sandbox::Cgroup>) -> u64 {
    cgroup
        .and_then(|c| c.oom_kills().ok().flatten())
        .unwrap_or(0)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(spawn_error)
}

/// The read end of an output pipe, polled by the runtime's reactor (a `tokio::fs::File` would
/// hand every read to the blocking thread pool).
fn reader(fd: OwnedFd) -> Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd).map_err(spawn_error)
}

/// Kills `pid` and everything below it, with their process groups: a sandboxed command's
/// tree, from the command itself (in a pod, where it leads its group) or from its relay
/// (at `low`, where the relay's child leads the command's group).
pub(crate) fn kill_tree(pid: u32, ticks: u64) {
    if ptest_core::liveness::start_ticks(pid) != Some(ticks) {
        return;
    }
    let mut stack = vec![pid];
    let mut all = Vec::new();
    while let Some(p) = stack.pop() {
        all.push(p);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            stack.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    // Stopped first, parents before children, so that no process reacts to a child's death
    // (a shell's `wait` returning 0) between the kills; then children first, so nothing is
    // re-parented away between them. SIGKILL ends stopped processes too.
    for p in &all {
        if let Some(pid) = Pid::from_raw(*p as i32) {
            let _ = rustix::process::kill_process(pid, Signal::STOP);
        }
    }
    for p in all.iter().rev() {
        if let Some(pid) = Pid::from_raw(*p as i32) {
            // Only a group leader has a group with its own id; for the rest this is ESRCH.
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
}

#[async_trait]
impl RunningProcess for SandboxedProcess {
    fn pid(&self) -> (u32, u64) {
        (self.pid, self.ticks)
    }

    async fn wait(mut self: Box<Self>) -> Result<ProcessResult> {
        let status = (&mut self.exited).await.map_err(spawn_error)??;
        let oom_killed =
            status.signal() == Some(9) && oom_kills(self.cgroup.as_ref()) > self.oom_before;
        Ok(self
            .capture
            .finish(self.pid, status.code(), status.signal(), oom_killed)
            .await)
    }
}
