//! The scheduler: suite shards started as their dependencies pass, at most `jobs` at once;
//! what is left of the run's environments swept at the end.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use ptest_core::{EnvFilter, Manager, RemoveOptions};
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinSet;

use crate::report::{ErrorClass, RunReport, SuiteReport, SuiteStatus};
use crate::reporter::Reporter;

use super::executor::run_unit;
use super::resume::{self, Journal};
use super::{RUN_LABEL, Run, RunOptions, Shared, Stop, Unit, skipped};

impl Run {
    /// Runs the plan with `manager`, telling `reporter` as suites start and end. When
    /// `cancel` resolves (the CLI's Ctrl-C), running suites are stopped and reported
    /// `cancelled`, the rest `skipped`; either way every environment the run made is removed
    /// (except kept ones of suites that ended normally) before this returns.
    pub async fn execute(
        self,
        manager: Arc<Manager>,
        options: RunOptions,
        reporter: Arc<dyn Reporter>,
        cancel: impl Future<Output = ()> + Send,
    ) -> RunReport {
        let start = Instant::now();
        let jobs = options.effective_jobs();
        let report_dir = crate::reports::run_dir(&manager.home().path().join("reports"), &self.id);
        // Saved as the run goes, for `ptest run --resume` (see `resume`).
        let mut journal = Journal::begin(&self, &report_dir, &options, Timestamp::now());
        let started_at = journal.started_at();
        reporter.run_started(&self.id, &self.plan, jobs);
        let shared = Arc::new(Shared {
            run_id: self.id.clone(),
            project: self.project.clone(),
            manager: manager.clone(),
            reporter: reporter.clone(),
            options: options.clone(),
            hidden: OnceCell::new(),
            histories: std::sync::Mutex::default(),
            wheels: crate::project_wheel::Wheels::default(),
        });

        let units: Vec<Unit> = self
            .plan
            .iter()
            .flat_map(|p| {
                let sharded = p.shards > 1;
                (0..p.shards).map(move |n| Unit {
                    suite: p.name.clone(),
                    shard: sharded.then_some(n),
                    shards: p.shards,
                })
            })
            .collect();
        let mut results: Vec<Option<SuiteReport>> = vec![None; units.len()];
        // Per suite: shards not yet finished, and whether all finished ones passed.
        let mut left: HashMap<&str, (u32, bool)> = self
            .plan
            .iter()
            .map(|p| (p.name.as_str(), (p.shards, true)))
            .collect();
        let mut pending: VecDeque<usize> = (0..units.len()).collect();
        let (stop_tx, stop_rx) = watch::channel(None::<Stop>);
        let mut running: JoinSet<SuiteReport> = JoinSet::new();
        // Per task: its unit and its worker slot. The lowest free slot is taken, so the
        // highest slot used + 1 is the most shards that ever ran at once.
        let mut task_unit: HashMap<tokio::task::Id, (usize, usize)> = HashMap::new();
        let mut free_slots: BTreeSet<usize> = (0..jobs).collect();
        let mut no_more: Option<String> = None;
        // A resumed run: the shards that finished before stand as they ended; what is left of
        // the run's environments goes, and the rest run again in new ones.
        let before = journal.finished_before(&units);
        for (u, report) in before {
            reporter.suite_finished(&report);
            finish(&mut left, &report);
            if options.fail_fast && !report.status.is_success() && no_more.is_none() {
                no_more = Some(format!("fail-fast: {} did not pass", report.display_name()));
            }
            results[u] = Some(report);
        }
        if journal.resumed() {
            pending.retain(|&u| results[u].is_none());
            let finished: Vec<SuiteReport> = results.iter().flatten().cloned().collect();
            sweep(&manager, &self.id, &finished).await;
            let rerun: Vec<&Unit> = pending.iter().map(|&u| &units[u]).collect();
            resume::clear_output(&report_dir, &self.project, &rerun);
        }
        let (mut cancelled, mut timed_out) = (false, false);
        let deadline = options.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut cancel = std::pin::pin!(cancel);

        loop {
            let mut i = 0;
            while i < pending.len() {
                let u = pending[i];
                let unit = &units[u];
                let suite = self
                    .project
                    .suite(&unit.suite)
                    .expect("planned suites exist");
                let skip = no_more.clone().or_else(|| {
                    suite
                        .depends_on
                        .iter()
                        .find_map(|d| match left.get(d.as_str()) {
                            Some((0, false)) => Some(format!("dependency {d:?} did not pass")),
                            _ => None,
                        })
                });
                if let Some(reason) = skip {
                    let report = skipped(&self.project, unit, reason);
                    reporter.suite_finished(&report);
                    finish(&mut left, &report);
                    if !cancelled {
                        // A cancelled run ends here: what it did not finish is not saved.
                        journal.record(&report);
                    }
                    results[u] = Some(report);
                    pending.remove(i);
                    continue;
                }
                let ready = suite
                    .depends_on
                    .iter()
                    .all(|d| matches!(left.get(d.as_str()), Some((0, true))));
                if ready && let Some(slot) = free_slots.pop_first() {
                    let handle = running.spawn(run_unit(
                        shared.clone(),
                        unit.clone(),
                        slot,
                        stop_rx.clone(),
                    ));
                    task_unit.insert(handle.id(), (u, slot));
                    pending.remove(i);
                    continue;
                }
                i += 1;
            }
            if running.is_empty() {
                // Nothing runs and nothing is ready: everything is done (cycles are refused
                // when the project is loaded, and every dependency is in the plan).
                debug_assert!(pending.is_empty());
                break;
            }
            tokio::select! {
                joined = running.join_next_with_id() => {
                    let (u, report) = match joined.expect("the set is not empty") {
                        Ok((id, report)) => {
                            let (u, slot) = task_unit[&id];
                            free_slots.insert(slot);
                            (u, report)
                        }
                        Err(e) => {
                            let (u, slot) = task_unit[&e.id()];
                            free_slots.insert(slot);
                            let mut report = skipped(&self.project, &units[u], String::new());
                            report.status = SuiteStatus::Error;
                            report.error_class = Some(ErrorClass::Internal);
                            report.reason = Some(format!("the suite's task failed: {e}"));
                            report.slot = Some(slot);
                            (u, report)
                        }
                    };
                    reporter.suite_finished(&report);
                    finish(&mut left, &report);
                    if !cancelled {
                        journal.record(&report);
                    }
                    if options.fail_fast && !report.status.is_success() && no_more.is_none() {
                        no_more = Some(format!("fail-fast: {} did not pass", report.display_name()));
                    }
                    results[u] = Some(report);
                }
                () = &mut cancel, if !cancelled => {
                    cancelled = true;
                    no_more = Some("the run was cancelled".into());
                    let _ = stop_tx.send(Some(Stop::Cancelled));
                }
                () = sleep_until(deadline), if deadline.is_some() && !timed_out && !cancelled => {
                    timed_out = true;
                    let t = humantime::format_duration(options.timeout.unwrap_or_default());
                    no_more = Some(format!("the run's timeout ({t}) passed"));
                    let _ = stop_tx.send(Some(Stop::RunTimeout));
                }
            }
        }

        let suites: Vec<SuiteReport> = results
            .into_iter()
            .map(|r| r.expect("every unit is reported"))
            .collect();
        sweep(&manager, &self.id, &suites).await;
        let duration = if journal.resumed() {
            // From the first start: the whole run, the time it lay dead included.
            Timestamp::now()
                .duration_since(started_at)
                .try_into()
                .unwrap_or_default()
        } else {
            start.elapsed()
        };
        let report = RunReport {
            run_id: self.id,
            project: self.project.file.display().to_string(),
            started_at,
            resumed_at: journal.resumed_at(),
            duration,
            cancelled,
            timed_out,
            jobs,
            suites,
        };
        reporter.run_finished(&report);
        report
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn finish(left: &mut HashMap<&str, (u32, bool)>, report: &SuiteReport) {
    if let Some((n, ok)) = left.get_mut(report.name.as_str()) {
        *n = n.saturating_sub(1);
        *ok &= report.status.is_success();
    }
}

/// Removes what is left of the run's environments (one whose creation was interrupted, one a
/// failed removal left behind), except those kept on purpose.
async fn sweep(manager: &Manager, run_id: &str, suites: &[SuiteReport]) {
    let kept: BTreeSet<&str> = suites
        .iter()
        .filter(|s| s.env_kept)
        .filter_map(|s| s.env_name.as_deref())
        .collect();
    let filter = EnvFilter {
        labels: vec![(RUN_LABEL.to_owned(), run_id.to_owned())],
        ..EnvFilter::default()
    };
    let envs = match manager.list_environments(&filter) {
        Ok(envs) => envs,
        Err(e) => {
            tracing::warn!("could not list the environments of run {run_id}: {e}");
            return;
        }
    };
    for env in envs.iter().filter(|e| !kept.contains(e.name.as_str())) {
        if let Err(e) = manager.cleanup(env, RemoveOptions { force: true }).await {
            tracing::warn!("could not remove environment {}: {e}", env.name);
        }
    }
}
