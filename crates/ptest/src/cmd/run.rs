//! `ptest run`: the suites of ptest.toml, each in its own environment, in parallel.

use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ptest_core::Manager;
use ptest_runner::reports::{self, ReportKind};
use ptest_runner::{
    PlannedSuite, Project, Reporter, ResumeError, Run, RunOptions, RunReport, Selection,
    SuiteReport, SuiteStatus, list_text, suites_phrase,
};

use crate::Failure;
use crate::cli::RunArgs;

/// Plans and runs the selected suites (or, with `--resume`, the rest of a run whose ptest
/// died); exits 0 when all passed (flaky included), 1 when any failed or timed out, 130 when
/// cancelled with Ctrl-C.
pub async fn run(manager: Manager, args: RunArgs) -> Result<ExitCode, Failure> {
    let reports_dir = manager.home().path().join("reports");
    let json_stdout = args.json.as_deref() == Some(Path::new("-"));
    let (run, options) = match &args.resume {
        Some(id) => resumed(&manager, id, args.jobs, json_stdout)?,
        None => match planned(&manager, &args, &reports_dir)? {
            Some(planned) => planned,
            None => return Ok(ExitCode::SUCCESS),
        },
    };
    let reporter: Arc<dyn Reporter> = if json_stdout {
        Arc::new(ptest_runner::Silent)
    } else {
        Arc::new(Live::new(std::io::stderr().is_terminal()))
    };
    let cancel = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let report = run
        .execute(Arc::new(manager), options, reporter, cancel)
        .await;

    // Every run's reports, outside the project (which a run never writes to).
    match reports::write_default(&reports_dir, &report) {
        Ok(dir) if !json_stdout => eprintln!(
            "     Reports {}/{{{}}}",
            dir.display(),
            ReportKind::ALL.map(ReportKind::file_name).join(",")
        ),
        Ok(_) => {}
        Err(e) => eprintln!(
            "warning: could not write the reports under {}: {e}",
            reports_dir.display()
        ),
    }
    let asked = [
        (args.junit.as_deref(), ReportKind::Junit),
        (args.html.as_deref(), ReportKind::Html),
        (
            args.json.as_deref().filter(|_| !json_stdout),
            ReportKind::Json,
        ),
    ];
    for (path, kind) in asked {
        if let Some(path) = path {
            reports::write(path, kind, &report)
                .map_err(|e| ptest_core::Error::io("writing", path, e))?;
        }
    }
    if json_stdout {
        // Live lines are off: the warnings still go to stderr.
        for suite in &report.suites {
            for warning in &suite.warnings {
                eprintln!("warning: {}: {warning}", suite.display_name());
            }
        }
        println!("{}", report.to_json());
    }
    Ok(ExitCode::from(report.exit_code().clamp(0, 255) as u8))
}

/// The run `args` asks for and its options; `None` when `--list` printed the plan.
fn planned(
    manager: &Manager,
    args: &RunArgs,
    reports_dir: &Path,
) -> Result<Option<(Run, RunOptions)>, Failure> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut project = match &args.project {
        Some(path) => Project::load(path),
        None => Project::discover(&cwd),
    }
    .map_err(|e| Failure::Diagnostic(miette::Report::new(e)))?;
    project
        .check_engines(manager.engines())
        .map_err(|e| Failure::Diagnostic(miette::Report::new(e)))?;
    let jobs = RunOptions {
        jobs: args.jobs.unwrap_or(0),
        ..RunOptions::default()
    }
    .effective_jobs();
    ptest_runner::split::resolve_auto_shards(&mut project, reports_dir, jobs);
    let selection = Selection {
        names: args.suites.clone(),
        tags: args.tags.clone(),
        exclude_tags: args.exclude_tags.clone(),
        args: (!args.args.is_empty()).then(|| args.args.clone()),
    };
    let run =
        Run::new(project, &selection).map_err(|e| Failure::Diagnostic(miette::Report::new(e)))?;
    if args.list {
        if args.json.is_some() {
            crate::output::json(&run.plan());
        } else {
            print!("{}", list_text(run.plan()));
        }
        return Ok(None);
    }
    let options = RunOptions {
        jobs: args.jobs.unwrap_or(0),
        fail_fast: args.fail_fast,
        retries: args.retries,
        timeout: args.timeout,
        keep: args.keep,
        keep_failed: args.keep_failed,
        supervisor: std::env::current_exe().ok(),
    };
    Ok(Some((run, options)))
}

/// `--resume RUN`: the rest of run `id` with the options it started with (`-j` as given
/// now, if given).
fn resumed(
    manager: &Manager,
    id: &str,
    jobs: Option<usize>,
    quiet: bool,
) -> Result<(Run, RunOptions), Failure> {
    let (run, mut options) = Run::resume(manager, id).map_err(|e| match e {
        ResumeError::Project(e) => Failure::Diagnostic(miette::Report::new(e)),
        ResumeError::Select(e) => Failure::Diagnostic(miette::Report::new(e)),
        ResumeError::Core(e) => Failure::Core(e),
        e => Failure::Core(ptest_core::Error::Usage(e.to_string())),
    })?;
    options.jobs = jobs.unwrap_or(options.jobs);
    options.supervisor = std::env::current_exe().ok();
    if !quiet {
        let shards: u32 = run.plan().iter().map(|p| p.shards).sum();
        let done = run.finished_before().unwrap_or(0);
        let bold = Style::new().bold();
        let _ = writeln!(
            anstream::stderr(),
            "{bold}    Resuming{bold:#} run {} of {}: {done} of {shards} shard(s) finished \
             before, the rest run now",
            run.id(),
            run.project().file.display(),
        );
    }
    Ok((run, options))
}

/// Live progress on stderr, nextest style: a line per suite as it ends (and retries), and
/// on a terminal a progress bar below them with the running, passed and failed counts.
struct Live {
    bar: Option<ProgressBar>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    running: BTreeSet<String>,
    /// Tests done and collected of running pytest suites, by display name.
    progress: HashMap<String, (u64, u64)>,
    passed: usize,
    flaky: usize,
    failed: usize,
    skipped: usize,
}

impl Counts {
    /// The bar's message: running suites first (with a pytest suite's tests so far, the
    /// part a narrow terminal must not cut), then the counts.
    fn message(&self) -> String {
        let mut msg = String::new();
        if !self.running.is_empty() {
            let names: Vec<String> = self
                .running
                .iter()
                .take(4)
                .map(|name| match self.progress.get(name) {
                    Some((done, total)) => format!("{name} {done}/{total}"),
                    None => name.clone(),
                })
                .collect();
            msg.push_str(&names.join(", "));
            if self.running.len() > 4 {
                msg.push_str(", ...");
            }
            msg.push_str(" | ");
        }
        msg.push_str(&format!(
            "{} running, {} passed, {} failed",
            self.running.len(),
            self.passed + self.flaky,
            self.failed
        ));
        if self.flaky > 0 {
            msg.push_str(&format!(" ({} flaky)", self.flaky));
        }
        if self.skipped > 0 {
            msg.push_str(&format!(", {} skipped", self.skipped));
        }
        msg
    }
}

impl Live {
    /// With a progress bar when stderr is a terminal; plain lines otherwise.
    fn new(terminal: bool) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{bar:25}] {pos}/{len} {wide_msg}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            counts: Mutex::default(),
        }
    }

    /// Prints a line above the bar (or plainly).
    fn line(&self, styled: String) {
        match &self.bar {
            Some(bar) => {
                let text = if std::env::var_os("NO_COLOR").is_some() {
                    anstream::adapter::strip_str(&styled).to_string()
                } else {
                    styled
                };
                bar.println(text);
            }
            None => {
                let _ = writeln!(anstream::stderr(), "{styled}");
            }
        }
    }

    fn update(&self, change: impl FnOnce(&mut Counts)) {
        let mut counts = self.counts.lock().expect("no panic while counting");
        change(&mut counts);
        if let Some(bar) = &self.bar {
            bar.set_message(counts.message());
        }
    }
}

impl Reporter for Live {
    fn run_started(&self, run_id: &str, suites: &[PlannedSuite], jobs: usize) {
        let bold = Style::new().bold();
        let shards: u32 = suites.iter().map(|s| s.shards).sum();
        self.line(format!(
            "{bold}    Starting{bold:#} {}, {jobs} at a time (run {run_id})",
            suites_phrase(suites.len(), shards as usize)
        ));
        if let Some(bar) = &self.bar {
            bar.set_length(u64::from(shards));
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        self.update(|_| {});
    }

    fn suite_started(&self, suite: &str, shard: Option<u32>, _env_name: &str) {
        let name = display(suite, shard);
        self.update(|c| {
            c.running.insert(name);
        });
    }

    fn suite_retrying(&self, suite: &str, shard: Option<u32>, attempt: u32, code: Option<i32>) {
        let yellow = Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold();
        let shard = shard.map(|s| format!(" [shard {s}]")).unwrap_or_default();
        let code = code.map(|c| format!(" (exit {c})")).unwrap_or_default();
        self.line(format!(
            "{yellow}       RETRY{yellow:#} {suite}{shard} after attempt {attempt}{code}"
        ));
    }

    fn suite_progress(&self, suite: &str, shard: Option<u32>, done: u64, total: u64) {
        self.update(|c| {
            c.progress.insert(display(suite, shard), (done, total));
        });
    }

    fn suite_finished(&self, report: &SuiteReport) {
        let color = match report.status {
            SuiteStatus::Flaky => AnsiColor::Yellow,
            s if s.is_success() => AnsiColor::Green,
            _ => AnsiColor::Red,
        };
        let style = Style::new().fg_color(Some(color.into())).bold();
        self.line(format!("{style}{}{style:#}", report.line()));
        for warning in &report.warnings {
            self.line(format!("     warning: {warning}"));
        }
        self.update(|c| {
            c.running.remove(&report.display_name());
            c.progress.remove(&report.display_name());
            match report.status {
                SuiteStatus::Passed => c.passed += 1,
                SuiteStatus::Flaky => c.flaky += 1,
                SuiteStatus::Skipped => c.skipped += 1,
                _ => c.failed += 1,
            }
        });
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn run_finished(&self, report: &RunReport) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let _ = write!(anstream::stderr(), "{}", report.summary());
    }
}

/// `name` or `name[shard]`, as [`SuiteReport::display_name`].
fn display(suite: &str, shard: Option<u32>) -> String {
    match shard {
        Some(shard) => format!("{suite}[{shard}]"),
        None => suite.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_each_running_pytest_suites_tests() {
        let mut counts = Counts::default();
        counts.running.insert("unit".into());
        counts.running.insert("lint".into());
        counts.progress.insert("unit".into(), (1200, 26921));
        assert_eq!(
            counts.message(),
            "lint, unit 1200/26921 | 2 running, 0 passed, 0 failed"
        );
    }
}
