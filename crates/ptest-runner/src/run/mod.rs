//! Executing a plan: the scheduler and what one suite shard does.
//!
//! The scheduler starts suite shards as their dependencies pass, at most `jobs` at once, each
//! in its own environment `run-<run id>-<suite>[-<shard>]` labelled `ptest.run=<run id>`. A
//! shard creates its environment with the project overlaid on its `workspace/` (`project =
//! "overlay"`, the default where the environment is sandboxed) or copies the project there
//! (`project = "copy"`), runs `setup`, `run` and `teardown` there (again, on an empty overlay
//! layer or after a fresh copy, for each retry), reads its JUnit file, and removes the
//! environment unless it is kept.
//! Cancellation and the run's timeout drop the running commands; the environments are then
//! removed with force, which kills every process left in them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ptest_core::{Labels, Manager};
use tokio::sync::{OnceCell, watch};

use crate::config::Project;
use crate::error::SelectError;
use crate::report::{SuiteReport, SuiteStatus};
use crate::reporter::Reporter;
use crate::select::{PlannedSuite, Selection};
use crate::split;

pub use ptest_core::RUN_LABEL;

mod dispatcher;
mod executor;
mod resume;
mod services;

pub use resume::{ResumeError, STATE_FILE};

/// Lines and bytes kept of a suite's output in the report.
const TAIL_LINES: usize = 40;
const TAIL_BYTES: usize = 8 * 1024;

/// How to execute a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Suite shards at once; 0 means the number of available cores.
    pub jobs: usize,
    /// Start no new suite after the first one fails; running ones finish.
    pub fail_fast: bool,
    /// Retries for every suite, instead of each suite's own `retries`.
    pub retries: Option<u32>,
    /// Ends the whole run after this long: running suites are `timed_out`, the rest `skipped`.
    pub timeout: Option<Duration>,
    /// Keep every environment after the run (as `keep = true` on every template).
    pub keep: bool,
    /// The `ptest` executable, re-run as the supervisor of suites' services; suites with
    /// services fail without it.
    pub supervisor: Option<PathBuf>,
    /// Keep the environments of suites that failed, timed out or errored (under the
    /// `on_request` policy), whatever their template's `cleanup` says.
    pub keep_failed: bool,
}

impl RunOptions {
    /// The number of suite shards run at once.
    pub fn effective_jobs(&self) -> usize {
        if self.jobs > 0 {
            self.jobs
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// A planned run of a project: which suites, under which run id.
#[derive(Debug, Clone)]
pub struct Run {
    id: String,
    project: Arc<Project>,
    plan: Vec<PlannedSuite>,
    /// What its state keeps (`state.json`, see `resume`), and the state it resumes.
    saved: resume::Saved,
}

/// Why running suites were interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    RunTimeout,
}

/// One environment's worth of work: a suite, or one shard of it.
#[derive(Debug, Clone)]
struct Unit {
    suite: String,
    shard: Option<u32>,
    shards: u32,
}

impl Unit {
    /// The labels of the environments it makes: the run's (`ptest.run`), the process running
    /// it (`ptest.run.owner`, for `gc`), its suite and shard.
    fn labels(&self, run_id: &str) -> Labels {
        let mut labels = Labels::new();
        labels.insert(RUN_LABEL.into(), run_id.to_owned());
        labels.insert(
            ptest_core::RUN_OWNER_LABEL.into(),
            ptest_core::liveness::ProcessId::current().to_string(),
        );
        labels.insert("ptest.suite".into(), self.suite.clone());
        if let Some(shard) = self.shard {
            labels.insert("ptest.shard".into(), shard.to_string());
        }
        labels
    }
}

struct Shared {
    run_id: String,
    project: Arc<Project>,
    manager: Arc<Manager>,
    reporter: Arc<dyn Reporter>,
    options: RunOptions,
    /// What an overlaid project hides (what a copy leaves out), found once per run.
    hidden: OnceCell<Result<Vec<PathBuf>, Arc<std::io::Error>>>,
    /// Each split suite's history, read once per run.
    histories: std::sync::Mutex<HashMap<String, Arc<OnceCell<Arc<split::History>>>>>,
    /// The project's wheels, built once per run for templates that install it.
    wheels: crate::project_wheel::Wheels,
}

impl Shared {
    /// The run's directory of reports and output: `$PTEST_HOME/reports/<run id>/`.
    fn report_dir(&self) -> PathBuf {
        self.manager
            .home()
            .path()
            .join("reports")
            .join(&self.run_id)
    }
}

impl Run {
    /// Plans a run of `project` with the suites `selection` picks (and their dependencies),
    /// under a fresh run id; each planned suite's `run` carries the selection's arguments.
    pub fn new(mut project: Project, selection: &Selection) -> Result<Self, SelectError> {
        let plan = selection.plan(&project)?;
        for planned in &plan {
            if let Some(suite) = project.suites.iter_mut().find(|s| s.name == planned.name) {
                suite.run = selection.command(suite, !planned.dependency_only);
            }
        }
        Ok(Self {
            id: ptest_core::EnvId::random().to_string(),
            project: Arc::new(project),
            plan,
            saved: resume::Saved::new(selection),
        })
    }

    /// The run id: part of every environment name and the `ptest.run` label's value.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The suites that will run, in file order (what `ptest run --list` shows).
    pub fn plan(&self) -> &[PlannedSuite] {
        &self.plan
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.project
    }
}

fn base_report(project: &Project, unit: &Unit) -> SuiteReport {
    let suite = project.suite(&unit.suite).expect("planned suites exist");
    SuiteReport {
        name: unit.suite.clone(),
        shard: unit.shard,
        shards: unit.shards,
        env: suite.env.clone(),
        env_name: None,
        env_kept: false,
        status: SuiteStatus::Error,
        reason: None,
        error_class: None,
        attempts: 0,
        exit_code: None,
        duration: Duration::ZERO,
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        output_files: Vec::new(),
        test_cases: Vec::new(),
        retried: Vec::new(),
        warnings: Vec::new(),
        started_at: None,
        ended_at: None,
        slot: None,
        resources: None,
    }
}

fn skipped(project: &Project, unit: &Unit, reason: String) -> SuiteReport {
    SuiteReport {
        status: SuiteStatus::Skipped,
        reason: Some(reason),
        ..base_report(project, unit)
    }
}

fn error(mut report: SuiteReport, what: &str, e: &ptest_core::Error) -> SuiteReport {
    report.status = SuiteStatus::Error;
    report.reason = Some(format!("{what}: {e}"));
    report.error_class = Some(e.kind().into());
    report
}

/// Waits for the stop signal; never returns if it never comes.
async fn stopped(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    let seen = stop.wait_for(Option::is_some).await.map(|s| *s);
    match seen {
        Ok(s) => s.expect("waited for Some"),
        Err(_) => std::future::pending().await,
    }
}
