//! ptest's test runner: reads a project's `ptest.toml`, runs its suites in parallel, each in
//! its own environment, and reports, as cargo-nextest does for Rust tests.
//!
//! The main types: [`Project`] (the checked `ptest.toml`: [`EnvTemplate`]s from
//! `[env.NAME]`, [`Suite`]s from `[[suite]]`), [`Selection`] (names, `--tag`,
//! `--exclude-tag`), [`Run`] (a plan under a run id), [`RunOptions`] (`-j`, fail-fast,
//! retries, timeout, keep), the [`Reporter`] trait for live progress, and the [`RunReport`]
//! that comes out, written as JSON, as JUnit XML ([`junit::to_junit`]) or as a summary.
//!
//! The flow of a run:
//!
//! 1. [`Project::discover`] (or [`Project::load`]) reads `ptest.toml` and refuses, with file,
//!    line and column, anything it cannot run: unknown keys, bad durations, unknown templates,
//!    dependency cycles, and what a template cannot have (`project = "overlay"` at security
//!    `low` or in docker).
//! 2. [`Run::new`] plans the selected suites plus what they depend on; [`Run::plan`] is what
//!    `ptest run --list` shows.
//! 3. [`Run::execute`] starts suites as their dependencies pass, `jobs` at a time. Each suite
//!    (or each shard of a `parallel = N` suite) gets its own environment from the
//!    [`ptest_core::Manager`], named `run-<run id>-<suite>[-<shard>]` and labelled
//!    `ptest.run=<run id>`; the project is overlaid on the environment's `workspace/` (a
//!    copy-on-write overlayfs inside its sandbox, see [`ProjectMode`]) or, where there is no
//!    sandbox, copied there (reflinks where the filesystem can, never hard links), so suites
//!    never see each other's writes and the user's tree stays as it was (`project = "bind"`
//!    runs in the real directory instead). `setup`, `run` and `teardown` run there with the
//!    suite's timeout (which kills the whole process tree), a failing suite is retried on an
//!    empty overlay layer or in a fresh copy, and a JUnit file the command writes is read
//!    into per-test results (a missing or malformed one is a warning; the command's result
//!    stands). A pytest suite reports each test as it ends through a plugin ptest writes
//!    into the environment ([`Reporter::suite_progress`]); with `split = "pytest"` the same
//!    plugin keeps each shard's share of the tests ([`split`]). Each shard
//!    records its start, end,
//!    worker slot and its environment's peak memory and CPU time, read before the
//!    environment goes. Environments go as their template's `cleanup` says ([`Disposal`]):
//!    when the suite ends (`immediate`, the default), when the run ends (`on_shutdown`), or
//!    they are kept (`on_request`, `scheduled`, `never`, `keep`, `--keep`, and
//!    `--keep-failed` for failed suites); cancellation and the run's timeout stop what runs
//!    and remove everything.
//! 4. [`RunReport::exit_code`] gives `ptest run`'s exit status; [`reports`] writes the report
//!    as JSON, JUnit ([`junit::to_junit`]) and self-contained HTML ([`html::to_html`]) to
//!    `$PTEST_HOME/reports/<run id>/` and wherever asked. [`init::starter`] is `ptest init`'s
//!    starter file.
//! 5. As it goes, a run keeps its state (selection, options, plan, each finished shard's
//!    report) in `state.json` beside its reports; [`Run::resume`] is `ptest run --resume`:
//!    the rest of a run whose ptest died, in new environments, its finished shards kept.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # async fn demo(manager: Arc<ptest_core::Manager>) -> Result<(), Box<dyn std::error::Error>> {
//! use ptest_runner::{Project, Run, RunOptions, Selection, Silent};
//!
//! let project = Project::discover(std::path::Path::new("."))?;
//! let run = Run::new(project, &Selection::default())?;
//! let report = run
//!     .execute(manager, RunOptions::default(), Arc::new(Silent), async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await;
//! print!("{}", report.summary());
//! std::process::exit(report.exit_code());
//! # }
//! ```

pub mod config;
pub mod copy;
mod error;
pub mod html;
pub mod init;
pub mod junit;
mod project_wheel;
mod pytest_plugin;
mod report;
mod reporter;
pub mod reports;
mod run;
mod select;
pub mod split;

pub use config::{
    Command, Disposal, EnvTemplate, PROJECT_FILE, Parallel, Project, ProjectMode, Split, Suite,
};
pub use error::{ProjectError, ProjectFileError, SelectError};
pub use report::{
    AttemptReport, CASE_TEXT_MAX, CaseStatus, ErrorClass, RunReport, SuiteReport, SuiteStatus,
    TestCaseReport, suites_phrase,
};
pub use reporter::{Reporter, Silent};
pub use run::{RUN_LABEL, ResumeError, Run, RunOptions, STATE_FILE};
pub use select::{PlannedSuite, Selection, list_text};
