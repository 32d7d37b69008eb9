//! What every local command records while it runs: its output (read by tasks as it comes)
//! and its timing, turned into a [`ProcessResult`] when it ends. Shared by host commands
//! (`exec`) and sandboxed ones (`enter`).

use std::time::Instant;

use jiff::Timestamp;
use ptest_core::ProcessResult;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

/// Output readers and start time of one running command.
pub(crate) struct Capture {
    command: Vec<String>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    started_at: Timestamp,
    started: Instant,
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

    /// Reads the command's stdout and stderr to their ends (both absent when its output
    /// goes to the caller's terminal).
    pub fn reading(
        mut self,
        stdout: Option<impl AsyncRead + Unpin + Send + 'static>,
        stderr: Option<impl AsyncRead + Unpin + Send + 'static>,
    ) -> Self {
        self.stdout = stdout.map(read_all);
        self.stderr = stderr.map(read_all);
        self
    }

    /// The result of the ended command: collected output, times, how it ended.
    pub async fn finish(
        self,
        pid: u32,
        exit_code: Option<i32>,
        signal: Option<i32>,
        oom_killed: bool,
    ) -> ProcessResult {
        let duration = self.started.elapsed();
        ProcessResult {
            command: self.command,
            pid: Some(pid),
            exit_code,
            signal,
            stdout: text(self.stdout).await,
            stderr: text(self.stderr).await,
            started_at: self.started_at,
            ended_at: Timestamp::now(),
            duration,
            timed_out: false,
            oom_killed,
        }
    }
}

fn read_all(mut pipe: impl AsyncRead + Unpin + Send + 'static) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        // A read error ends the capture; what was read so far is kept.
        let _ = pipe.read_to_end(&mut buf).await;
        buf
    })
}

async fn text(reader: Option<JoinHandle<Vec<u8>>>) -> String {
    match reader {
        Some(h) => String::from_utf8_lossy(&h.await.unwrap_or_default()).into_owned(),
        None => String::new(),
    }
}
