//! What a local command records while it runs: its output and its timing, turned into a
//! [`ProcessResult`] when it ends.

use std::os::fd::OwnedFd;
use std::time::Instant;

use jiff::Timestamp;
use ptest_core::{ProcessResult, Result};
use rustix::io::Errno;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe::Receiver;

/// Output pipes and start time of one running command.
pub(crate) struct Capture {
    command: Vec<String>,
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
    /// Starts the clock for `command`, before it is spawned.
    pub fn start(command: Vec<String>) -> Self {
        Self {
            command,
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
        let (stdout, stderr, ended) = tokio::join!(text(self.stdout), text(self.stderr), ended);
        let ended = ended?;
        Ok(ProcessResult {
            command: self.command,
            pid: Some(pid),
            exit_code: ended.exit_code,
            signal: ended.signal,
            stdout,
            stderr,
            started_at: self.started_at,
            ended_at: Timestamp::now(),
            duration: self.started.elapsed(),
            timed_out: false,
            oom_killed: ended.oom_killed,
        })
    }
}

/// All of `pipe` as text; a read error ends it, keeping what was read.
///
/// A command that has ended left all its output in the pipe: that is read directly, and the
/// reactor is involved only while the pipe is still open and empty.
async fn text(pipe: Option<OwnedFd>) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    let Some(pipe) = pipe else {
        return String::new();
    };
    // Only our end: the command's is another open file, still blocking.
    if rustix::io::ioctl_fionbio(&pipe, true).is_err() {
        return String::new();
    }
    loop {
        match rustix::io::read(&pipe, &mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                if let Ok(mut pipe) = Receiver::from_owned_fd(pipe) {
                    let _ = pipe.read_to_end(&mut buf).await;
                }
                break;
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
