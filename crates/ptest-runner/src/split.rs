//! `split = "pytest"`: a suite's tests shared out among its shards, as pytest-split and
//! nextest's partitioning do, with nothing for the user to install. The first shard to get
//! there runs the suite's own `run` command once with ptest's pytest plugin collecting (so
//! `-k`, markers and paths mean the same), the ids are dealt out longest first to the least
//! loaded shard by their durations in the newest earlier run's report under
//! `$PTEST_HOME/reports/` (tests without a known duration count as the known mean), and each
//! shard's pytest runs only its share. `parallel = "auto"` picks a shard count from the cores
//! and that same history.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{Project, Suite};
use crate::report::RunReport;

/// Earlier runs' reports read at most when looking for a suite's history.
const HISTORY_RUNS: usize = 10;

/// Seconds of a suite's last known duration per shard that `parallel = "auto"` aims for:
/// a shard costs an environment and a pytest start-up, worth it for seconds of tests only.
const AUTO_SECONDS_PER_SHARD: f64 = 2.0;

/// What the newest earlier run of a suite says.
#[derive(Debug, Default)]
pub(crate) struct History {
    /// Its shards' durations added up, in seconds.
    pub total: f64,
    /// Seconds per test, by [`junit_key`].
    pub cases: HashMap<String, f64>,
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
        return Some(history);
    }
    None
}

/// The key of pytest test id `tests/test_x.py::TestA::test_f[1]` as pytest's JUnit names it:
/// `tests.test_x.TestA::test_f[1]` (classname, then name).
pub(crate) fn junit_key(nodeid: &str) -> String {
    let mut parts: Vec<&str> = nodeid.split("::").collect();
    let name = parts.pop().unwrap_or_default();
    let mut class: Vec<String> = Vec::new();
    if let Some(file) = parts.first() {
        class.push(file.trim_end_matches(".py").replace('/', "."));
    }
    class.extend(parts.iter().skip(1).map(|p| (*p).to_owned()));
    format!("{}::{name}", class.join("."))
}

/// `ids` dealt out to `shards` shards: longest first to the least loaded (ties to the lowest
/// shard), each share in collection order. Tests without a duration count as the mean of
/// those with one (one second when none has one).
pub(crate) fn partition(
    ids: &[String],
    shards: usize,
    durations: &HashMap<String, f64>,
) -> Vec<Vec<String>> {
    let known: Vec<Option<f64>> = ids
        .iter()
        .map(|id| durations.get(&junit_key(id)).copied())
        .collect();
    let found: Vec<f64> = known.iter().flatten().copied().collect();
    let mean = if found.is_empty() {
        1.0
    } else {
        found.iter().sum::<f64>() / found.len() as f64
    };
    let weights: Vec<f64> = known.iter().map(|d| d.unwrap_or(mean)).collect();
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    let mut loads = vec![0.0_f64; shards.max(1)];
    let mut owner = vec![0usize; ids.len()];
    for i in order {
        let lightest = (0..loads.len())
            .min_by(|&a, &b| loads[a].total_cmp(&loads[b]).then(a.cmp(&b)))
            .expect("at least one shard");
        loads[lightest] += weights[i];
        owner[i] = lightest;
    }
    let mut out = vec![Vec::new(); loads.len()];
    for (i, id) in ids.iter().enumerate() {
        out[owner[i]].push(id.clone());
    }
    out
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
    fn ids_map_to_junit_names() {
        assert_eq!(
            junit_key("tests/test_x.py::TestA::test_f[1]"),
            "tests.test_x.TestA::test_f[1]"
        );
        assert_eq!(junit_key("test_y.py::test_g"), "test_y::test_g");
    }

    #[test]
    fn shares_are_balanced_by_duration_and_keep_collection_order() {
        let ids: Vec<String> = ["t.py::a", "t.py::b", "t.py::c", "t.py::d", "t.py::new"]
            .map(String::from)
            .to_vec();
        let durations = HashMap::from([
            ("t::a".to_owned(), 10.0),
            ("t::b".to_owned(), 1.0),
            ("t::c".to_owned(), 1.0),
            ("t::d".to_owned(), 8.0),
        ]);
        // Longest first: a (10) to 0, d (8) to 1, new (the mean, 5) to 1, b and c to 0:
        // loads 12 and 13.
        let shares = partition(&ids, 2, &durations);
        assert_eq!(shares[0], ["t.py::a", "t.py::b", "t.py::c"]);
        assert_eq!(shares[1], ["t.py::d", "t.py::new"]);
        // Without history, counts even out.
        let shares = partition(&ids, 2, &HashMap::new());
        assert_eq!((shares[0].len(), shares[1].len()), (3, 2));
        // More shards than tests: the rest are empty.
        assert_eq!(partition(&ids[..1], 3, &HashMap::new())[2].len(), 0);
    }

    #[test]
    fn auto_takes_a_shard_per_two_seconds_of_history_up_to_the_cores() {
        let h = |total| History {
            total,
            cases: HashMap::new(),
        };
        assert_eq!(auto_shards(None, 4), 4);
        assert_eq!(auto_shards(Some(&h(1.3)), 4), 1);
        assert_eq!(auto_shards(Some(&h(5.0)), 4), 3);
        assert_eq!(auto_shards(Some(&h(500.0)), 2), 2);
    }
}
