//! What a run produced: a [`RunReport`] with one [`SuiteReport`] per suite shard, written as
//! JSON (serde), as JUnit XML (see [`crate::junit`]) or as a human summary.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use ptest_core::ResourceUsage;
use serde::{Deserialize, Serialize};

/// How a suite shard ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SuiteStatus {
    /// Its commands succeeded (and no ingested test case failed) on the first attempt.
    Passed,
    /// It failed on every attempt.
    Failed,
    /// It failed, then passed on a retry. Counts as passed.
    Flaky,
    /// It did not run: a dependency failed, fail-fast stopped the run, or the run ended first.
    Skipped,
    /// A command ran past the suite's timeout (its process tree was killed), or the run's
    /// timeout ended it.
    TimedOut,
    /// ptest could not run it: the environment could not be created, the project not copied.
    Error,
    /// The run was cancelled while it ran.
    Cancelled,
}

impl SuiteStatus {
    /// Whether the suite counts as passed (`passed` or `flaky`).
    pub fn is_success(self) -> bool {
        matches!(self, SuiteStatus::Passed | SuiteStatus::Flaky)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SuiteStatus::Passed => "passed",
            SuiteStatus::Failed => "failed",
            SuiteStatus::Flaky => "flaky",
            SuiteStatus::Skipped => "skipped",
            SuiteStatus::TimedOut => "timed_out",
            SuiteStatus::Error => "error",
            SuiteStatus::Cancelled => "cancelled",
        }
    }

    /// A short upper-case label for live output (`PASS`, `FAIL`, `FLAKY`, ...).
    pub fn label(self) -> &'static str {
        match self {
            SuiteStatus::Passed => "PASS",
            SuiteStatus::Failed => "FAIL",
            SuiteStatus::Flaky => "FLAKY",
            SuiteStatus::Skipped => "SKIP",
            SuiteStatus::TimedOut => "TIMEOUT",
            SuiteStatus::Error => "ERROR",
            SuiteStatus::Cancelled => "CANCEL",
        }
    }
}

impl std::fmt::Display for SuiteStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Who could fix a suite's `error`, as ptest-core's [`ptest_core::ErrorKind`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The user's input (a template the engine cannot apply, a package that does not exist).
    Usage,
    /// An environment in the wrong state or a limit reached.
    State,
    /// ptest or the host failed.
    Internal,
}

impl From<ptest_core::ErrorKind> for ErrorClass {
    fn from(kind: ptest_core::ErrorKind) -> Self {
        match kind {
            ptest_core::ErrorKind::Usage => ErrorClass::Usage,
            ptest_core::ErrorKind::State => ErrorClass::State,
            ptest_core::ErrorKind::Internal => ErrorClass::Internal,
        }
    }
}

impl ErrorClass {
    /// ptest's exit code for it (2, 3 or 125).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::Usage => 2,
            ErrorClass::State => 3,
            ErrorClass::Internal => 125,
        }
    }
}

/// The outcome of one test case read from a JUnit file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// It passed.
    Passed,
    /// An assertion failed (`<failure>`).
    Failed,
    /// It broke unexpectedly (`<error>`).
    Error,
    /// It did not run (`<skipped>`).
    Skipped,
}

/// One test case from the JUnit file a suite wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestCaseReport {
    /// The test's name.
    pub name: String,
    /// Its class or module, when given.
    pub classname: Option<String>,
    /// Outcome.
    pub status: CaseStatus,
    /// How long it took, when given.
    #[serde(with = "ptest_core::duration::option_seconds")]
    pub duration: Option<Duration>,
    /// The failure, error or skip message, when given.
    pub message: Option<String>,
    /// The failure's or error's body (a traceback), its first [`CASE_TEXT_MAX`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl TestCaseReport {
    /// Whether it failed or errored.
    pub fn is_failure(&self) -> bool {
        matches!(self.status, CaseStatus::Failed | CaseStatus::Error)
    }

    /// `classname.name`, or `name` without a class.
    pub fn full_name(&self) -> String {
        match &self.classname {
            Some(class) => format!("{class}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Most bytes of a test case's failure body kept (a traceback's end is in the output files).
pub const CASE_TEXT_MAX: usize = 4096;

/// An attempt that did not pass and was run again: kept so that the summary, the HTML and
/// JUnit (`<flakyFailure>`, `<rerunFailure>`) show the failure that was retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptReport {
    /// Its number (1 for the first).
    pub attempt: u32,
    /// How it ended: `failed` or `timed_out`.
    pub status: SuiteStatus,
    /// What failed.
    pub reason: Option<String>,
    /// Exit code of its last command.
    pub exit_code: Option<i32>,
    /// How long it took.
    #[serde(with = "ptest_core::duration::seconds")]
    pub duration: Duration,
    /// The end of its standard output.
    pub stdout_tail: String,
    /// The end of its standard error.
    pub stderr_tail: String,
    /// Its failed and errored test cases (passing ones are left out).
    pub failed_cases: Vec<TestCaseReport>,
}

/// One suite shard's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    /// The suite's name.
    pub name: String,
    /// The shard (0-based) when the suite is sharded.
    pub shard: Option<u32>,
    /// Number of shards (1 when not sharded).
    pub shards: u32,
    /// The environment template.
    pub env: String,
    /// The environment's name, when one was created.
    pub env_name: Option<String>,
    /// Whether the environment was kept after the run.
    pub env_kept: bool,
    /// How it ended.
    pub status: SuiteStatus,
    /// Why it was skipped or errored, what failed, or what went wrong reading its JUnit file.
    pub reason: Option<String>,
    /// Who could fix an `error`.
    pub error_class: Option<ErrorClass>,
    /// Attempts made (0 when it never ran).
    pub attempts: u32,
    /// Exit code of the last command that ran (128+N for signal N, 124 on timeout).
    pub exit_code: Option<i32>,
    /// From the first attempt's start to the last one's end (environment set-up not counted).
    #[serde(with = "ptest_core::duration::seconds")]
    pub duration: Duration,
    /// The end of the last attempt's standard output.
    pub stdout_tail: String,
    /// The end of the last attempt's standard error.
    pub stderr_tail: String,
    /// Files holding every attempt's whole output (setup and run), in the run's report
    /// directory: `output/<suite>[-<shard>].<attempt>.stdout.log` and `.stderr.log`, and the
    /// JUnit file it wrote as `.junit.xml`. Only tails are ever kept in memory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_files: Vec<PathBuf>,
    /// Test cases from the suite's JUnit file (of its last attempt), when it has one.
    pub test_cases: Vec<TestCaseReport>,
    /// The attempts before the last one, which did not pass and were retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<AttemptReport>,
    /// What went wrong without changing the outcome: a JUnit file that is missing or
    /// malformed (the command's result stands).
    pub warnings: Vec<String>,
    /// When the shard took its worker slot (before its environment was created); `None`
    /// when it never ran.
    pub started_at: Option<Timestamp>,
    /// When it gave the slot back (after its environment was removed or kept).
    pub ended_at: Option<Timestamp>,
    /// The worker slot it ran in, `0..jobs`: the lowest one free when it started, so no
    /// two shards hold one slot at the same time.
    pub slot: Option<usize>,
    /// What its environment used, read when the suite ended and before the environment
    /// was removed: peak memory and CPU seconds (from the cgroup where there is one), disk.
    pub resources: Option<ResourceUsage>,
}

impl SuiteReport {
    /// `name` or `name[shard]`.
    pub fn display_name(&self) -> String {
        match self.shard {
            Some(shard) => format!("{}[{shard}]", self.name),
            None => self.name.clone(),
        }
    }

    /// A nextest-style live line: `   PASS [   0.412s] unit (3 tests)`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{:>8} [{:>8.3}s] {}",
            self.status.label(),
            self.duration.as_secs_f64(),
            self.display_name()
        );
        if self.attempts > 1 {
            let _ = write!(line, " (attempt {})", self.attempts);
        }
        if !self.test_cases.is_empty() {
            let failed = self.test_cases.iter().filter(|c| c.is_failure()).count();
            let _ = write!(
                line,
                " ({}, {failed} failed)",
                plural(self.test_cases.len(), "test", "tests")
            );
        }
        if let Some(reason) = &self.reason
            && !self.status.is_success()
        {
            let _ = write!(line, ": {reason}");
        }
        line
    }
}

/// Everything a run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The run's id (also the `ptest.run` label of its environments).
    pub run_id: String,
    /// The project file.
    pub project: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When each `ptest run --resume` of it started, when it was resumed (its `started_at`
    /// and `duration` then cover the whole run, from the first start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed_at: Vec<Timestamp>,
    /// How long it took.
    #[serde(with = "ptest_core::duration::seconds")]
    pub duration: Duration,
    /// Whether it was cancelled.
    pub cancelled: bool,
    /// Whether the run's own timeout ended it.
    pub timed_out: bool,
    /// Suite shards at once (the number of worker slots).
    pub jobs: usize,
    /// One entry per suite shard, in plan order.
    pub suites: Vec<SuiteReport>,
}

impl RunReport {
    /// The number of suite shards with `status`.
    pub fn count(&self, status: SuiteStatus) -> usize {
        self.suites.iter().filter(|s| s.status == status).count()
    }

    /// Whether every suite passed (flaky counts as passed) and the run was not cut short.
    pub fn success(&self) -> bool {
        !self.cancelled && !self.timed_out && self.suites.iter().all(|s| s.status.is_success())
    }

    /// The exit code of `ptest run`: 0 when everything passed (flaky included); 130 when
    /// cancelled; when a suite could not run because of an `error`, ptest's code for its
    /// kind (2 usage, 3 state, 125 internal); otherwise 1 (something failed, timed out or
    /// was skipped because of a failure).
    pub fn exit_code(&self) -> i32 {
        if self.cancelled {
            return 130;
        }
        if let Some(class) = self
            .suites
            .iter()
            .filter_map(|s| s.error_class)
            .max_by_key(|c| c.exit_code())
        {
            return class.exit_code();
        }
        if self.success() { 0 } else { 1 }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    /// A human summary: one line per suite that did not pass with its output tail, then the
    /// totals, as nextest prints at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for suite in self.suites.iter().filter(|s| {
            !s.status.is_success() && s.status != SuiteStatus::Skipped
                || s.status == SuiteStatus::Flaky
        }) {
            let _ = writeln!(
                out,
                "--- {} {} ---",
                suite.status.label(),
                suite.display_name()
            );
            if let Some(reason) = &suite.reason {
                let _ = writeln!(out, "{reason}");
            }
            // The failures that were retried first, then the last attempt's.
            for earlier in &suite.retried {
                let _ = writeln!(
                    out,
                    "  attempt {} {}: {}",
                    earlier.attempt,
                    earlier.status.label(),
                    earlier.reason.as_deref().unwrap_or("")
                );
                details(
                    &mut out,
                    "    ",
                    &earlier.failed_cases,
                    &earlier.stdout_tail,
                    &earlier.stderr_tail,
                );
            }
            if !suite.retried.is_empty() {
                let _ = writeln!(out, "  attempt {}:", suite.attempts);
            }
            details(
                &mut out,
                "  ",
                &suite.test_cases,
                &suite.stdout_tail,
                &suite.stderr_tail,
            );
            if let (true, Some(env)) = (suite.env_kept, &suite.env_name) {
                let _ = writeln!(
                    out,
                    "  environment {env} kept: enter it with `ptest env exec {env} -- sh`, \
                     remove it with `ptest env rm {env}`"
                );
            }
        }
        for suite in &self.suites {
            for warning in &suite.warnings {
                let _ = writeln!(out, "warning: {}: {warning}", suite.display_name());
            }
        }
        let mut names: Vec<&str> = self.suites.iter().map(|s| s.name.as_str()).collect();
        names.dedup();
        let _ = write!(
            out,
            "Summary [{:>8.3}s] {} (run {}): {} passed",
            self.duration.as_secs_f64(),
            suites_phrase(names.len(), self.suites.len()),
            self.run_id,
            self.count(SuiteStatus::Passed),
        );
        // Each shard is counted once, under its own status: the counts add up to the shards.
        for status in [
            SuiteStatus::Flaky,
            SuiteStatus::Failed,
            SuiteStatus::TimedOut,
            SuiteStatus::Error,
            SuiteStatus::Cancelled,
            SuiteStatus::Skipped,
        ] {
            let n = self.count(status);
            if n > 0 {
                let _ = write!(out, ", {n} {status}");
            }
        }
        if self.cancelled {
            out.push_str(" (cancelled)");
        }
        if self.timed_out {
            out.push_str(" (run timeout)");
        }
        out.push('\n');
        out
    }
}

/// An attempt's failed cases and output tails, each line indented by `indent`.
fn details(out: &mut String, indent: &str, cases: &[TestCaseReport], stdout: &str, stderr: &str) {
    for case in cases.iter().filter(|c| c.is_failure()) {
        let what = match case.status {
            CaseStatus::Error => "error:",
            _ => "failed:",
        };
        let _ = writeln!(out, "{indent}{what} {}", case.full_name());
    }
    for (label, tail) in [("stdout", stdout), ("stderr", stderr)] {
        if !tail.trim().is_empty() {
            let _ = writeln!(out, "{indent}{label}:");
            for line in tail.trim_end().lines() {
                let _ = writeln!(out, "{indent}  {line}");
            }
        }
    }
}

/// "1 suite", "4 suites", or "4 suites as 5 shards" when sharded suites make more runs than
/// suites: a run's size, said alike when it starts and in its summary.
pub fn suites_phrase(suites: usize, shards: usize) -> String {
    let mut phrase = plural(suites, "suite", "suites");
    if shards != suites {
        let _ = write!(phrase, " as {shards} shards");
    }
    phrase
}

/// `n` and the noun's singular or plural.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The last `lines` lines of `text`, at most `bytes` bytes (cut at a character boundary).
pub(crate) fn tail(text: &str, lines: usize, bytes: usize) -> String {
    let start = text
        .char_indices()
        .rev()
        .filter(|(_, c)| *c == '\n')
        .nth(lines)
        .map_or(0, |(i, _)| i + 1);
    let mut start = start.max(text.len().saturating_sub(bytes));
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A report with one suite shard, from the JSON shape `ptest run --json` prints.
    pub(crate) fn report(suite: serde_json::Value) -> RunReport {
        let mut full = serde_json::json!({
            "name": "s", "shard": null, "shards": 1, "env": "basic", "env_name": null,
            "env_kept": false, "reason": null, "error_class": null, "exit_code": null,
            "duration": 1.0, "stdout_tail": "", "stderr_tail": "", "test_cases": [],
            "warnings": [], "started_at": null, "ended_at": null, "slot": null,
            "resources": null
        });
        for (k, v) in suite.as_object().unwrap() {
            full[k] = v.clone();
        }
        serde_json::from_value(serde_json::json!({
            "run_id": "r", "project": "p", "started_at": "2026-01-01T00:00:00Z",
            "duration": 1.0, "cancelled": false, "timed_out": false, "jobs": 1,
            "suites": [full]
        }))
        .unwrap()
    }

    #[test]
    fn sizes_read_as_english() {
        assert_eq!(suites_phrase(1, 1), "1 suite");
        assert_eq!(suites_phrase(4, 5), "4 suites as 5 shards");
        assert_eq!(plural(1, "test", "tests"), "1 test");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2, 100), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 5, 100), "a\nb\nc");
        assert_eq!(tail("abcdef", 5, 3), "def");
        assert_eq!(tail("ééé", 5, 3), "é");
    }
}
