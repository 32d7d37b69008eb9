//! Progress of a run as it happens, for live output: the runner calls a [`Reporter`] from its
//! scheduler as suites start, retry and finish.

use crate::report::{RunReport, SuiteReport};
use crate::select::PlannedSuite;

/// Receives a run's progress. Every method has an empty default, so an implementation
/// overrides only what it shows. Calls come from the runner's tasks, possibly several at
/// once, hence `Send + Sync`.
pub trait Reporter: Send + Sync {
    /// The run is about to start these suites (`jobs` at a time).
    fn run_started(&self, run_id: &str, suites: &[PlannedSuite], jobs: usize) {
        let _ = (run_id, suites, jobs);
    }

    /// A suite shard got its environment and starts its first attempt.
    fn suite_started(&self, suite: &str, shard: Option<u32>, env_name: &str) {
        let _ = (suite, shard, env_name);
    }

    /// Attempt `attempt` (1-based) failed and the suite will be tried again.
    fn suite_retrying(
        &self,
        suite: &str,
        shard: Option<u32>,
        attempt: u32,
        exit_code: Option<i32>,
    ) {
        let _ = (suite, shard, attempt, exit_code);
    }

    /// A pytest suite shard's tests so far: `done` of `total` finished (reported by the
    /// plugin ptest puts on its path, a few times a second at most).
    fn suite_progress(&self, suite: &str, shard: Option<u32>, done: u64, total: u64) {
        let _ = (suite, shard, done, total);
    }

    /// A suite shard ended, however it ended (skipped ones included).
    fn suite_finished(&self, report: &SuiteReport) {
        let _ = report;
    }

    /// The run ended; environments are removed (or kept) by now.
    fn run_finished(&self, report: &RunReport) {
        let _ = report;
    }
}

/// A reporter that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Reporter for Silent {}
