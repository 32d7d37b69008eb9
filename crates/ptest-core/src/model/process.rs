//! Processes run inside environments.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::ProcessStatus;
use crate::duration;
use crate::name::EnvId;

/// The outcome of a foreground command (`env exec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessResult {
    /// The command line.
    pub command: Vec<String>,
    /// Host pid it ran as.
    pub pid: Option<u32>,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// Captured standard output (empty when output went to the caller's terminal): its first
    /// [`crate::captured::CAPTURE_LIMIT`] bytes.
    pub stdout: String,
    /// Captured standard error, as `stdout`.
    pub stderr: String,
    /// Whether stdout was longer than what `stdout` holds.
    #[serde(default)]
    pub stdout_truncated: bool,
    /// The file in the environment's `logs/` holding all of a truncated stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_file: Option<std::path::PathBuf>,
    /// Whether stderr was longer than what `stderr` holds.
    #[serde(default)]
    pub stderr_truncated: bool,
    /// The file in the environment's `logs/` holding all of a truncated stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_file: Option<std::path::PathBuf>,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub ended_at: Timestamp,
    /// How long it ran.
    #[serde(with = "duration::seconds")]
    pub duration: Duration,
    /// Whether it was killed for running past its timeout.
    pub timed_out: bool,
    /// Whether the environment's memory limit killed it (the cgroup's OOM count rose and it
    /// died of SIGKILL).
    pub oom_killed: bool,
}

impl ProcessResult {
    /// The result of `command`, started at `started_at` and ended now after `duration`, with
    /// its output as captured; no exit status, pid or OOM kill yet: an engine sets what it
    /// learnt (`ProcessResult { exit_code, ..ProcessResult::captured(..) }`).
    pub fn captured(
        command: Vec<String>,
        started_at: Timestamp,
        duration: Duration,
        stdout: crate::captured::Captured,
        stderr: crate::captured::Captured,
    ) -> Self {
        ProcessResult {
            command,
            pid: None,
            exit_code: None,
            signal: None,
            stdout: stdout.text,
            stderr: stderr.text,
            stdout_truncated: stdout.truncated,
            stdout_file: stdout.file,
            stderr_truncated: stderr.truncated,
            stderr_file: stderr.file,
            started_at,
            ended_at: Timestamp::now(),
            duration,
            timed_out: false,
            oom_killed: false,
        }
    }

    /// Whether it exited with code 0 before any timeout: a command killed for its timeout may
    /// still report 0 (a shell's `wait` does once its children are killed).
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// The shell convention for its outcome: the exit code, 128 + signal, or 124 on timeout.
    pub fn shell_code(&self) -> i32 {
        if self.timed_out {
            124
        } else if let Some(code) = self.exit_code {
            code
        } else {
            128 + self.signal.unwrap_or(0)
        }
    }
}

/// A process ptest started in an environment, as recorded in the state store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Store id of the record.
    pub id: i64,
    /// The environment it runs in.
    pub env_id: EnvId,
    /// Host pid (also its process group).
    pub pid: u32,
    /// The kernel's start time of `pid`, in clock ticks after boot: tells a reused pid apart.
    pub start_ticks: u64,
    /// The command line.
    pub command: Vec<String>,
    /// What it is doing.
    pub status: ProcessStatus,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}
