//! `ptest run`: the suites of ptest.toml, each in its own environment, in parallel.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anstyle::{AnsiColor, Style};
use ptest_core::Manager;
use ptest_runner::{
    PlannedSuite, Project, Reporter, Run, RunOptions, RunReport, Selection, SuiteReport, list_text,
};

use crate::Failure;
use crate::cli::RunArgs;

/// Plans and runs the selected suites; exits 0 when all passed (flaky included), 1 when any
/// failed or timed out, 130 when cancelled with Ctrl-C.
pub async fn run(manager: Manager, args: RunArgs) -> Result<ExitCode, Failure> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let project = match &args.project {
        Some(path) => Project::load(path),
        None => Project::discover(&cwd),
    }
    .map_err(|e| Failure::Diagnostic(miette::Report::new(e)))?;
    let selection = Selection {
        names: args.suites,
        tags: args.tags,
        exclude_tags: args.exclude_tags,
    };
    let run =
        Run::new(project, &selection).map_err(|e| Failure::Diagnostic(miette::Report::new(e)))?;
    if args.list {
        if args.json {
            crate::output::json(&run.plan());
        } else {
            print!("{}", list_text(run.plan()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let options = RunOptions {
        jobs: args.jobs.unwrap_or(0),
        fail_fast: args.fail_fast,
        retries: args.retries,
        timeout: args.timeout,
        keep: args.keep,
    };
    let reporter: Arc<dyn Reporter> = if args.json {
        Arc::new(ptest_runner::Silent)
    } else {
        Arc::new(Live)
    };
    let cancel = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let report = run
        .execute(Arc::new(manager), options, reporter, cancel)
        .await;
    if let Some(path) = &args.junit {
        std::fs::write(path, ptest_runner::junit::to_junit(&report))
            .map_err(|e| ptest_core::Error::io("writing", path, e))?;
    }
    if args.json {
        println!("{}", report.to_json());
    }
    Ok(ExitCode::from(report.exit_code().clamp(0, 255) as u8))
}

/// Prints a line per suite as it starts and ends, nextest style, on stderr.
struct Live;

impl Reporter for Live {
    fn run_started(&self, run_id: &str, suites: &[PlannedSuite], jobs: usize) {
        let bold = Style::new().bold();
        let _ = writeln!(
            anstream::stderr(),
            "{bold}    Starting{bold:#} {} suite(s), {jobs} at a time (run {run_id})",
            suites.len()
        );
    }

    fn suite_retrying(&self, suite: &str, shard: Option<u32>, attempt: u32, code: Option<i32>) {
        let yellow = Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold();
        let shard = shard.map(|s| format!(" [shard {s}]")).unwrap_or_default();
        let code = code.map(|c| format!(" (exit {c})")).unwrap_or_default();
        let _ = writeln!(
            anstream::stderr(),
            "{yellow}       RETRY{yellow:#} {suite}{shard} after attempt {attempt}{code}"
        );
    }

    fn suite_finished(&self, report: &SuiteReport) {
        let color = if report.status.is_success() {
            AnsiColor::Green
        } else {
            AnsiColor::Red
        };
        let style = Style::new().fg_color(Some(color.into())).bold();
        let _ = writeln!(anstream::stderr(), "{style}{}{style:#}", report.line());
    }

    fn run_finished(&self, report: &RunReport) {
        let _ = write!(anstream::stderr(), "{}", report.summary());
    }
}
