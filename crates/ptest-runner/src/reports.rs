//! Where a run's reports go. Every run writes `report.json`, `junit.xml` and `report.html`
//! to `$PTEST_HOME/reports/<run id>/` (outside the project, which a run never writes to), and
//! to any path asked for with `--json PATH`, `--junit PATH` or `--html PATH`. Only the
//! newest [`KEEP_RUNS`] run directories are kept.

use std::io;
use std::path::{Path, PathBuf};

use crate::html::to_html;
use crate::junit::to_junit;
use crate::report::RunReport;

/// Run directories kept under `$PTEST_HOME/reports/`; older ones are removed when a run writes
/// its own.
pub const KEEP_RUNS: usize = 50;

/// The kinds of report file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportKind {
    /// The [`RunReport`] as JSON.
    Json,
    /// JUnit XML, one `<testsuite>` per suite shard.
    Junit,
    /// A self-contained HTML page with a timeline and a resource chart.
    Html,
}

impl ReportKind {
    /// Every kind.
    pub const ALL: [ReportKind; 3] = [ReportKind::Json, ReportKind::Junit, ReportKind::Html];

    /// Its file name in a run's report directory.
    pub fn file_name(self) -> &'static str {
        match self {
            ReportKind::Json => "report.json",
            ReportKind::Junit => "junit.xml",
            ReportKind::Html => "report.html",
        }
    }

    /// The report rendered as this kind.
    pub fn render(self, report: &RunReport) -> String {
        match self {
            ReportKind::Json => report.to_json(),
            ReportKind::Junit => to_junit(report),
            ReportKind::Html => to_html(report),
        }
    }
}

/// The directory of a run's reports: `<reports>/<run id>/`, with `reports` usually
/// `$PTEST_HOME/reports`.
pub fn run_dir(reports: &Path, run_id: &str) -> PathBuf {
    reports.join(run_id)
}

/// Writes every kind of report into `run_dir(reports, run id)` and removes all but the newest
/// [`KEEP_RUNS`] run directories; returns the directory.
pub fn write_default(reports: &Path, report: &RunReport) -> io::Result<PathBuf> {
    let dir = run_dir(reports, &report.run_id);
    std::fs::create_dir_all(&dir)?;
    for kind in ReportKind::ALL {
        write(&dir.join(kind.file_name()), kind, report)?;
    }
    prune(reports, KEEP_RUNS)?;
    Ok(dir)
}

/// Writes one report to `path`, creating its directory; written to a temporary file first so
/// a reader never sees half a report.
pub fn write(path: &Path, kind: ReportKind, report: &RunReport) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, kind.render(report))?;
    std::fs::rename(&tmp, path)
}

/// Removes the oldest run directories under `reports` beyond `keep`. Only directories that
/// hold a `report.json` are counted or removed: nothing else there is ptest's.
fn prune(reports: &Path, keep: usize) -> io::Result<()> {
    let mut runs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(reports)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let modified = e
                .path()
                .join(ReportKind::Json.file_name())
                .metadata()
                .ok()?
                .modified()
                .ok()?;
            Some((modified, e.path()))
        })
        .collect();
    if runs.len() <= keep {
        return Ok(());
    }
    runs.sort();
    for (_, dir) in &runs[..runs.len() - keep] {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_newest_run_directories_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..4 {
            let dir = tmp.path().join(format!("run{i}"));
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("report.json"), "{}").unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i);
            std::fs::File::options()
                .write(true)
                .open(dir.join("report.json"))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        std::fs::create_dir(tmp.path().join("not-ours")).unwrap();
        prune(tmp.path(), 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["not-ours", "run2", "run3"]);
    }
}
