//! Running one command in a directory environment.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use async_trait::async_trait;
use ptest_core::{
    Environment, Error, ExecRequest, OutputMode, ProcessResult, Result, RunningProcess,
};
use rustix::process::{Pid, PidfdFlags, Signal};
use tokio::io::unix::AsyncFd;

use crate::capture::{Capture, Ended};

/// A command started by [`spawn`].
pub(crate) struct LocalProcess {
    child: tokio::process::Child,
    pid: u32,
    ticks: u64,
    pidfd: AsyncFd<OwnedFd>,
    capture: Capture,
}

fn engine_error(action: &'static str, message: String) -> Error {
    Error::Engine {
        level: ptest_core::IsolationLevel::Basic,
        action,
        message,
    }
}

/// Starts `request` in `env`: working directory `workspace/`, the environment's variables,
/// its own process group.
pub(crate) fn spawn(env: &Environment, request: ExecRequest) -> Result<LocalProcess> {
    let (program, args) = request
        .argv
        .split_first()
        .ok_or_else(|| Error::Usage("no command given".into()))?;
    let capture = Capture::start(request.argv.clone());
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(env.workspace())
        .envs(env.command_env())
        .envs(request.env)
        .process_group(0)
        .stdin(Stdio::null());
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent. The command
    // dies with the thread that spawned it, so a `ptest` killed mid-command takes it along.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            Ok(())
        });
    }
    match &request.output {
        OutputMode::Capture => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        OutputMode::Inherit => {}
        OutputMode::Fds { stdout, stderr } => {
            let copy = |fd: &OwnedFd| {
                fd.try_clone()
                    .map_err(|e| engine_error("spawn", format!("output: {e}")))
            };
            cmd.stdout(copy(stdout)?).stderr(copy(stderr)?);
        }
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Usage(format!(
            "cannot run {program:?} in {}: command not found",
            env.name
        )),
        _ => engine_error("spawn", format!("{program:?}: {e}")),
    })?;
    let pid = child.id().expect("a child not yet waited has a pid");
    let ticks = ptest_core::liveness::start_ticks(pid).unwrap_or(0);
    let pidfd = rustix::process::pidfd_open(pid_of(pid), PidfdFlags::empty())
        .map_err(|e| engine_error("spawn", format!("pidfd_open({pid}): {e}")))?;
    // SAFETY: an OwnedFd is a valid open descriptor that stays open, and always returns the
    // same raw fd, for as long as the AsyncFd owns it.
    let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(|e| engine_error("spawn", format!("pidfd: {e}")))?;
    let output = |e: std::io::Error| engine_error("spawn", format!("output pipe: {e}"));
    let stdout = child.stdout.take().map(|p| p.into_owned_fd());
    let stderr = child.stderr.take().map(|p| p.into_owned_fd());
    let capture = capture.reading(
        stdout.transpose().map_err(output)?,
        stderr.transpose().map_err(output)?,
    );
    Ok(LocalProcess {
        pid,
        ticks,
        pidfd,
        capture,
        child,
    })
}

fn pid_of(pid: u32) -> Pid {
    Pid::from_raw(pid as i32).expect("child pids are positive")
}

/// Kills process group `pid` if it is still ours: either `pid` is the live process we started
/// (same start time), or no process has that pid, in which case the group id can only be
/// held by what our process left behind.
pub(crate) fn kill_group(pid: u32, ticks: u64) {
    match ptest_core::liveness::start_ticks(pid) {
        Some(t) if t != ticks => {} // pid reused by an unrelated process: leave it alone
        _ => {
            let _ = rustix::process::kill_process_group(pid_of(pid), Signal::KILL);
        }
    }
}

#[async_trait]
impl RunningProcess for LocalProcess {
    fn pid(&self) -> (u32, u64) {
        (self.pid, self.ticks)
    }

    async fn wait(self: Box<Self>) -> Result<ProcessResult> {
        let Self {
            mut child,
            pid,
            pidfd,
            capture,
            ..
        } = *self;
        let ended = async move {
            // The pidfd turns readable when the command exits; it stays an unreaped zombie, so
            // its pid (= its process group id) cannot be reused while we kill what it left
            // behind.
            let _ = pidfd
                .readable()
                .await
                .map_err(|e| engine_error("wait", e.to_string()))?;
            let _ = rustix::process::kill_process_group(pid_of(pid), Signal::KILL);
            let status = child
                .wait()
                .await
                .map_err(|e| engine_error("wait", e.to_string()))?;
            // Without a cgroup there is no memory limit to be killed by.
            Ok(Ended {
                exit_code: status.code(),
                signal: status.signal(),
                oom_killed: false,
            })
        };
        capture.finish(pid, ended).await
    }
}
