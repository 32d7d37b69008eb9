//! Running one command in a sandboxed environment: inside its pod (the pod's holder forks it,
//! already in the pod's namespaces and cgroup) or, at security `low`, on the host inside its
//! cgroup (through a relay process, which a thread of its own spawns and waits for). Either
//! way, if this program dies (a SIGKILLed `ptest env exec`) the command's whole process group
//! dies too: in a pod the holder sees our connection hang up and kills it; on the host the
//! relay gets its parent-death signal (tied to that thread) and kills it.
//!
//! The output is read, and a pod command's end awaited, by [`RunningProcess::wait`] itself
//! on the runtime's reactor: no task or thread per command in a pod.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use async_trait::async_trait;
use ptest_core::{
    Environment, Error, ExecRequest, OutputMode, ProcessResult, Result, RunningProcess,
    SecurityLevel,
};
use ptest_sandbox::{
    CommandSpec, ExitStatus, Rlimits, SpawnedChild, Stdio, seccomp, spawn_in_cgroup,
};
use rustix::process::{Pid, Signal};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use crate::capture::{Capture, Ended};
use crate::sandbox::{self, Entry};

/// A command started in a sandbox.
pub(crate) struct SandboxedProcess {
    pid: u32,
    ticks: u64,
    ending: Ending,
    capture: Capture,
    entry: Arc<Entry>,
    oom_before: u64,
}

/// Where the end of a sandboxed command is learnt.
enum Ending {
    /// From the pod's holder, on our connection to it; what the command left in the
    /// holder's session (marked with `marker`) is ended after it.
    Pod { child: SpawnedChild, marker: String },
    /// From the thread that waits for the command's relay.
    Relay(oneshot::Receiver<Result<ExitStatus>>),
}

fn spawn_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::Engine {
        level: ptest_core::IsolationLevel::Basic,
        action: "run a command in the sandbox",
        source: e.into(),
    }
}

/// Starts `request` in `env`'s sandbox as its `entry` describes.
pub(crate) fn spawn(
    env: &Environment,
    request: ExecRequest,
    entry: Arc<Entry>,
) -> Result<SandboxedProcess> {
    let iso = &entry.iso;
    if request.argv.is_empty() {
        return Err(Error::Usage("no command given".into()));
    }
    // Marks every process this command starts, so what it leaves behind can be found; also
    // names the files its output overflows to.
    let exec_id = ptest_core::EnvId::random();
    let capture = Capture::start(request.argv.clone(), &env.root, exec_id.as_str());
    // Nothing is inherited by a pod command: pass ptest's environment, then the environment's
    // own variables, then the caller's.
    let cwd = request
        .cwd
        .as_ref()
        .map_or_else(|| env.workspace(), |rel| env.root.join(rel));
    let mut cmd = CommandSpec::new(request.argv.clone()).cwd(cwd);
    cmd.env = std::env::vars_os().collect();
    // Each replaces an earlier value of its name (getenv would see only the first).
    for (name, value) in env.command_env().into_iter().chain(request.env) {
        cmd = cmd.env(name, value);
    }
    let marker = format!("PTEST_EXEC_ID={exec_id}");
    let (key, value) = marker.split_once('=').expect("the marker has a '='");
    cmd.env.push((key.into(), value.into()));
    cmd.stdin = Stdio::null().map_err(spawn_error)?;
    cmd.rlimits = Rlimits {
        open_files: env.spec.limits.nofile,
        file_size: env.spec.limits.fsize.map(|s| s.0),
    };
    cmd.capabilities = iso.capabilities();
    cmd.no_new_privs = iso.security >= SecurityLevel::High;
    if iso.seccomp {
        cmd.seccomp = Some(if iso.security >= SecurityLevel::Strict {
            seccomp::Profile::Strict
        } else {
            seccomp::Profile::Container
        });
    }
    if iso.security >= SecurityLevel::Strict {
        cmd.landlock = Some(sandbox::landlock_rules(env));
    }
    let (stdout, stderr) = match &request.output {
        OutputMode::Capture => {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            cmd.stdout = Stdio::Fd(out_w);
            cmd.stderr = Stdio::Fd(err_w);
            (Some(out_r), Some(err_r))
        }
        OutputMode::Inherit => (None, None),
        OutputMode::Fds { stdout, stderr } => {
            cmd.stdout = Stdio::Fd(stdout.try_clone().map_err(spawn_error)?);
            cmd.stderr = Stdio::Fd(stderr.try_clone().map_err(spawn_error)?);
            (None, None)
        }
    };
    let oom_before = oom_kills(&entry);
    // What the command leaves in its process group dies when it exits (the relay kills the
    // group before reaping it); in a pod, also what stayed in its session (below).
    cmd.end_group_on_exit = true;

    let not_found = |e: ptest_sandbox::Error| match e {
        ptest_sandbox::Error::Spawn {
            step: "execve",
            source,
            ..
        } if source.kind() == std::io::ErrorKind::NotFound => Error::Usage(format!(
            "cannot run {:?} in {}: command not found",
            request.argv[0], env.name
        )),
        e @ ptest_sandbox::Error::HolderGone { .. } => Error::Engine {
            level: env.level,
            action: "enter the sandbox",
            source: format!("{e}; the environment's holder is gone: remove it with `ptest env rm`")
                .into(),
        },
        e => spawn_error(e),
    };
    let (pid, ending) = match &entry.pod {
        // The holder forks the command (this blocks until its execve, about one fork/exec);
        // our connection to it is what ties the command to us.
        Some(pod) => {
            let spawned = pod.spawn(&cmd);
            drop(cmd); // our copies of the pipes' write ends: the readers see end-of-file
            let child = spawned.map_err(not_found)?;
            (child.pid(), Ending::Pod { child, marker })
        }
        // The relay's parent-death signal follows the thread that forked it: a thread that
        // lives as long as the command.
        None => {
            let (pid_tx, pid_rx) = std::sync::mpsc::channel();
            let (exit_tx, exit_rx) = oneshot::channel();
            let group = entry.cgroup.clone();
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
            let pid = pid_rx.recv().map_err(spawn_error)?.map_err(not_found)?;
            (pid, Ending::Relay(exit_rx))
        }
    };
    let pid = pid as u32;
    Ok(SandboxedProcess {
        pid,
        ticks: ptest_core::liveness::start_ticks(pid).unwrap_or(0),
        ending,
        capture: capture.reading(stdout, stderr),
        entry,
        oom_before,
    })
}

/// Waits for a command the pod's holder forked, then ends what it left behind: processes of
/// the environment's cgroup that carry the command's marker and stayed in its session, which
/// is the holder's (a `setsid` daemon has left it on purpose).
async fn wait_in_pod(child: SpawnedChild, entry: &Entry, marker: &str) -> Result<ExitStatus> {
    let status = match child.try_wait().map_err(spawn_error)? {
        Some(status) => status,
        None => {
            let fd = child.exit_fd().map_err(spawn_error)?;
            // SAFETY: an OwnedFd is a valid open descriptor that stays open, and always
            // returns the same raw fd, for as long as the AsyncFd owns it.
            let ended =
                unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                    .map_err(spawn_error)?;
            loop {
                ended.readable().await.map_err(spawn_error)?.clear_ready();
                if let Some(status) = child.try_wait().map_err(spawn_error)? {
                    break status;
                }
            }
        }
    };
    // Read from procfs, like the candidates' sessions (getsid(2) reads 0 for a session led
    // from outside the caller's PID namespace, and rustix asserts it is not).
    // Most commands leave nothing: the holder alone is one read, not a scan.
    let group = entry
        .cgroup
        .as_ref()
        .filter(|_| entry.gauges.as_ref().and_then(|g| g.pids_current()) != Some(1));
    if let (Some(group), Some(pod)) = (group, &entry.pod)
        && let holder = pod.holder_pid()
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
    Some(ptest_sandbox::procfs::stat(pid).ok()??.session)
}

/// Whether `pid`'s environment holds `var` (`NAME=value`).
fn carries(pid: i32, var: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == var.as_bytes()))
}

fn oom_kills(entry: &Entry) -> u64 {
    entry
        .gauges
        .as_ref()
        .and_then(|g| g.oom_kills())
        .unwrap_or(0)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(spawn_error)
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

    fn has_ended(&mut self) -> bool {
        // The holder reports the end once; the connection keeps it for `wait`.
        match &self.ending {
            Ending::Pod { child, .. } => matches!(child.try_wait(), Ok(Some(_))),
            Ending::Relay(_) => false,
        }
    }

    async fn wait(self: Box<Self>) -> Result<ProcessResult> {
        let Self {
            pid,
            ending,
            capture,
            entry,
            oom_before,
            ..
        } = *self;
        let ended = async move {
            let status = match ending {
                Ending::Pod { child, marker } => wait_in_pod(child, &entry, &marker).await?,
                Ending::Relay(exited) => exited.await.map_err(spawn_error)??,
            };
            let oom_killed = status.signal() == Some(9) && oom_kills(&entry) > oom_before;
            Ok(Ended {
                exit_code: status.code(),
                signal: status.signal(),
                oom_killed,
            })
        };
        capture.finish(pid, ended).await
    }
}
