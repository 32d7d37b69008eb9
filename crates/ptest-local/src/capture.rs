//! What a local command records while it runs: its output and its timing, turned into a
//! [`ProcessResult`] when it ends.

use std::os::fd::OwnedFd;
use std::time::Instant;

use jiff::Timestamp;
use ptest_core::captured::{BoundedOutput, Captured};
use ptest_core::{ProcessResult, Result};
use rustix::io::Errno;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe::Receiver;

/// Output pipes and start time of one running command.
pub(crate) struct Capture {
    command: Vec<String>,
    /// The environment's root and the command's id, naming overflow files in `logs/`.
    root: std::path::PathBuf,
    id: String,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    started_at: Timestamp,
    started: Instant,
}

/// How a command ended, as its engine learnt it.
pub(crate) struct Ended {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
}

impl Capture {
    /// Starts the clock for `command`, before it is spawned in the environment rooted at
    /// `root`; `id` names the files its output overflows to.
    pub fn start(command: Vec<String>, root: &std::path::Path, id: &str) -> Self {
        Self {
            command,
            root: root.to_owned(),
            id: id.to_owned(),
            stdout: None,
            stderr: None,
            started_at: Timestamp::now(),
            started: Instant::now(),
        }
    }

    /// The read ends of the command's stdout and stderr pipes (both absent when its output
    /// goes to the caller's terminal or to files).
    pub fn reading(mut self, stdout: Option<OwnedFd>, stderr: Option<OwnedFd>) -> Self {
        self.stdout = stdout;
        self.stderr = stderr;
        self
    }

    /// Reads the output to its ends while `ended` learns how the command ended (a command
    /// writing more than a pipe holds waits for the reader), then the result. The output is
    /// read in the caller's task: no task of its own.
    pub async fn finish(
        self,
        pid: u32,
        ended: impl Future<Output = Result<Ended>>,
    ) -> Result<ProcessResult> {
        let sink =
            |stream: &str| BoundedOutput::new(&self.root, format!("exec-{}.{stream}.log", self.id));
        let (stdout, stderr, ended) = tokio::join!(
            text(self.stdout, sink("stdout")),
            text(self.stderr, sink("stderr")),
            ended
        );
        let ended = ended?;
        Ok(ProcessResult {
            pid: Some(pid),
            exit_code: ended.exit_code,
            signal: ended.signal,
            oom_killed: ended.oom_killed,
            ..ProcessResult::captured(
                self.command,
                self.started_at,
                self.started.elapsed(),
                stdout,
                stderr,
            )
        })
    }
}

/// All of `pipe` into `out` (memory bounded: see [`BoundedOutput`]); a read error ends it,
/// keeping what was read.
///
/// A command that has ended left all its output in the pipe: that is read directly, and the
/// reactor is involved only while the pipe is still open and empty.
async fn text(pipe: Option<OwnedFd>, mut out: BoundedOutput) -> Captured {
    let mut chunk = vec![0u8; 64 << 10];
    let Some(pipe) = pipe else {
        return out.finish();
    };
    // Only our end: the command's is another open file, still blocking.
    if rustix::io::ioctl_fionbio(&pipe, true).is_err() {
        return out.finish();
    }
    loop {
        match rustix::io::read(&pipe, &mut chunk) {
            Ok(0) => break,
            Ok(n) => out.push(&chunk[..n]),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                if let Ok(mut pipe) = Receiver::from_owned_fd(pipe) {
                    loop {
                        match pipe.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => out.push(&chunk[..n]),
                        }
                    }
                }
                break;
            }
            Err(_) => break,
        }
    }
    out.finish()
}
