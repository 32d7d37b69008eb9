//! `split = "pytest"`: a suite's tests shared out among its shards, as pytest-split and
//! nextest's partitioning do, with nothing for the user to install. Each shard's pytest
//! collects as usual (so `-k`, markers and paths mean the same) and ptest's plugin keeps the
//! shard's share, dealt by the tests' durations in the newest earlier run of the suite among
//! the reports under `$PTEST_HOME/reports/` (ptest's pytest plugin does it); every shard deals
//! alike, so each test runs in exactly one. `parallel = "auto"` picks a shard count from the
//! cores and the same history.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{Project, Suite};
use crate::report::RunReport;

/// Earlier runs' reports read at most when looking for a suite's history.
const HISTORY_RUNS: usize = 10;

/// Seconds of a suite's last known duration per shard that `parallel = "auto"` aims for:
/// a shard costs an environment and a pytest start-up, worth it for seconds of tests only.
const AUTO_SECONDS_PER_SHARD: f64 = 2.0;

/// What the newest earlier run of a suite says; what ptest's pytest plugin deals tests by.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct History {
    /// Its shards' durations added up, in seconds.
    pub total: f64,
    /// Seconds per test, by JUnit `classname::name`.
    pub cases: HashMap<String, f64>,
    /// Seconds per test the suite spent beyond its tests' own times (pytest's start-up,
    /// collection and reporting), spread over its tests: thousands of quick tests weigh more
    /// than their times say.
    pub overhead: f64,
}

/// The newest earlier run of `suite` in `project_file` among the reports under `reports`;
/// `None` when none of the newest [`HISTORY_RUNS`] ran it. One report is in memory at a time.
pub(crate) fn history(reports: &Path, project_file: &str, suite: &str) -> Option<History> {
    let mut runs: Vec<(std::time::SystemTime, std::path::PathBuf)> = std::fs::read_dir(reports)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let file = e.path().join("report.json");
            Some((file.metadata().ok()?.modified().ok()?, file))
        })
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.0));
    for (_, file) in runs.into_iter().take(HISTORY_RUNS) {
        let Ok(f) = std::fs::File::open(&file) else {
            continue;
        };
        let Ok(report) = serde_json::from_reader::<_, RunReport>(std::io::BufReader::new(f)) else {
            continue;
        };
        if report.project != project_file {
            continue;
        }
        let shards: Vec<_> = report
            .suites
            .iter()
            .filter(|s| s.name == suite && s.status.is_success())
            .collect();
        if shards.is_empty() {
            continue;
        }
        let mut history = History::default();
        for shard in shards {
            history.total += shard.duration.as_secs_f64();
            for case in &shard.test_cases {
                if let Some(d) = case.duration {
                    let key = format!("{}::{}", case.classname.as_deref().unwrap_or(""), case.name);
                    history.cases.insert(key, d.as_secs_f64());
                }
            }
        }
        let own: f64 = history.cases.values().sum();
        if !history.cases.is_empty() {
            history.overhead = ((history.total - own) / history.cases.len() as f64).max(0.0);
        }
        return Some(history);
    }
    None
}

/// Sets the shard count of each `parallel = "auto"` suite of `project` from its history in
/// `reports`: one shard per 2 s of its last known duration, at least
/// one and at most `cores`; without history it keeps `cores`.
pub fn resolve_auto_shards(project: &mut Project, reports: &Path, cores: usize) {
    let file = project.file.display().to_string();
    for suite in project.suites.iter_mut().filter(|s| s.auto_shards) {
        suite.shards = auto_shards(history(reports, &file, &suite.name).as_ref(), cores);
    }
}

fn auto_shards(history: Option<&History>, cores: usize) -> u32 {
    let cores = cores.max(1);
    let wanted = match history {
        Some(h) => ((h.total / AUTO_SECONDS_PER_SHARD).ceil() as usize).clamp(1, cores),
        None => cores,
    };
    u32::try_from(wanted).unwrap_or(u32::MAX)
}

/// Whether `suite` shares its tests out among its shards.
pub(crate) fn splits(suite: &Suite, shards: u32) -> bool {
    suite.split.is_some() && shards > 1
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn history_spreads_what_tests_do_not_account_for_over_them() {
        let reports = tempfile::tempdir().unwrap();
        let report = crate::report::tests::report(serde_json::json!({
            "name": "unit", "status": "passed", "attempts": 1, "duration": 10.0,
            "test_cases": [
                {"name": "a", "classname": "t", "status": "passed", "duration": 1.0,
                 "message": null},
                {"name": "b", "classname": "t", "status": "passed", "duration": 3.0,
                 "message": null}
            ]
        }));
        std::fs::create_dir(reports.path().join("r1")).unwrap();
        std::fs::write(reports.path().join("r1/report.json"), report.to_json()).unwrap();
        let h = history(reports.path(), "p", "unit").unwrap();
        assert_eq!((h.total, h.cases["t::b"], h.overhead), (10.0, 3.0, 3.0));
        assert!(history(reports.path(), "other", "unit").is_none());
        assert!(history(reports.path(), "p", "lint").is_none());
    }

    #[test]
    fn auto_takes_a_shard_per_two_seconds_of_history_up_to_the_cores() {
        let h = |total| History {
            total,
            ..History::default()
        };
        assert_eq!(auto_shards(None, 4), 4);
        assert_eq!(auto_shards(Some(&h(1.3)), 4), 1);
        assert_eq!(auto_shards(Some(&h(5.0)), 4), 3);
        assert_eq!(auto_shards(Some(&h(500.0)), 2), 2);
    }
}
