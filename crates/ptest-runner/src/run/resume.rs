//! A run's state, kept as the run goes, and `ptest run --resume RUN`: finishing a run whose
//! ptest died (SIGKILL, the OOM killer, a lost machine session) instead of losing it.
//!
//! **Where the state lives.** `$PTEST_HOME/reports/<run id>/state.json`, beside the run's
//! output files and, once it ends, its reports; not rows in the store. The state belongs to
//! the run, not to an environment: the finished shards' reports it keeps point at output
//! files in that directory and become the final `report.json` as they are, a run directory
//! that is pruned takes all of it at once, and the store's schema needs no migration for it.
//! It is rewritten whole (a temporary file renamed over it) when the run starts and each time
//! a shard's outcome is final, so a reader sees the state before or after a shard ended,
//! never half of it. A killed ptest loses nothing written; a machine losing power may lose the
//! last rename (the file is not synced), which only means that shard runs again.
//!
//! **What it holds.** The project file, the selection and options the run was started with,
//! the plan (each planned suite's definition, its template's and its shard count), the
//! owner (the ptest process running it, `PID:START_TICKS`) and every finished shard's
//! [`SuiteReport`].
//!
//! **Resuming.** [`Run::resume`] refuses a run that finished (its `report.json` exists),
//! one whose owner still runs, one another `--resume` holds (`state.lock`, an flock each
//! running and resuming ptest takes), and one whose project changed under it (a planned suite
//! or its template is gone or defined differently, shard counts differ): exit 3 for the
//! first three, 2 for the last. The resumed run keeps the shards that finished — they are not
//! run again, and their reports go into the final report as they were — and re-runs every
//! other shard. Environments are re-created, never reused: before anything runs, every
//! environment of the run that is still there is removed (except a finished shard's that was
//! kept on purpose), and the re-run shards get new ones under the same names. That is
//! simpler than judging whether an environment a dead ptest left mid-attempt is fit to reuse,
//! gives a re-run shard the same fresh start a first one has, and makes an environment that
//! `ptest gc` took in between no different from one that is still there. The output files of
//! an interrupted attempt are deleted, so that the re-run's are its own.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ptest_core::Manager;
use ptest_core::liveness::ProcessId;
use serde::{Deserialize, Serialize};

use crate::config::Project;
use crate::error::{ProjectError, SelectError};
use crate::report::SuiteReport;
use crate::select::Selection;

use super::{Run, RunOptions, Unit};

/// The state file in a run's report directory.
pub const STATE_FILE: &str = "state.json";
/// The lock file a running or resuming ptest holds (flock) in a run's report directory.
const LOCK_FILE: &str = "state.lock";
/// The state file's format.
const VERSION: u32 = 1;
/// The final report: once it exists, the run has ended.
const REPORT_FILE: &str = "report.json";

/// Why a run cannot be resumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// Its ptest.toml cannot be loaded any more (exit 2).
    #[error(transparent)]
    Project(#[from] ProjectError),
    /// Its selection no longer selects (a named suite is gone; exit 2).
    #[error(transparent)]
    Select(#[from] SelectError),
    /// Anything else: no such run, it finished, it still runs (exit 3), the project changed
    /// (exit 2), its state unreadable.
    #[error(transparent)]
    Core(#[from] ptest_core::Error),
}

/// The selection a run was started with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct SavedSelection {
    names: Vec<String>,
    tags: Vec<String>,
    exclude_tags: Vec<String>,
    args: Option<Vec<String>>,
}

impl SavedSelection {
    pub(super) fn new(selection: &Selection) -> Self {
        Self {
            names: selection.names.clone(),
            tags: selection.tags.clone(),
            exclude_tags: selection.exclude_tags.clone(),
            args: selection.args.clone(),
        }
    }

    fn selection(&self) -> Selection {
        Selection {
            names: self.names.clone(),
            tags: self.tags.clone(),
            exclude_tags: self.exclude_tags.clone(),
            args: self.args.clone(),
        }
    }
}

/// The options a run was started with (not the supervisor: that is the resuming ptest).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedOptions {
    jobs: usize,
    fail_fast: bool,
    retries: Option<u32>,
    #[serde(with = "ptest_core::duration::option_seconds")]
    timeout: Option<Duration>,
    keep: bool,
    keep_failed: bool,
}

/// One planned suite as the run saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedSuite {
    name: String,
    shards: u32,
    /// The suite as loaded (its `run` with the selection's arguments in).
    definition: serde_json::Value,
    /// Its environment template as loaded.
    template: serde_json::Value,
}

/// What `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    version: u32,
    run_id: String,
    /// The project's `ptest.toml`.
    project: PathBuf,
    /// The ptest process running the run: `PID:START_TICKS`.
    owner: String,
    started_at: Timestamp,
    /// When each resume started.
    #[serde(default)]
    resumed_at: Vec<Timestamp>,
    selection: SavedSelection,
    options: SavedOptions,
    plan: Vec<SavedSuite>,
    /// The shards whose outcome is final, in the order they ended.
    finished: Vec<SuiteReport>,
}

/// What [`Run`] carries for its state: the selection (to save it) and, for a resumed run,
/// the state it resumes and the lock that makes this ptest its only resumer.
#[derive(Debug, Clone, Default)]
pub(super) struct Saved {
    selection: SavedSelection,
    resumed: Option<Arc<Resumed>>,
}

impl Saved {
    pub(super) fn new(selection: &Selection) -> Self {
        Self {
            selection: SavedSelection::new(selection),
            resumed: None,
        }
    }
}

#[derive(Debug)]
struct Resumed {
    state: RunState,
    /// Held (flock) until the run ends.
    _lock: File,
}

/// A run's state as it goes: written when it starts and as each shard ends. Writing is
/// best effort: a run whose state cannot be written still runs (it cannot be resumed, and
/// a warning says so).
pub(super) struct Journal {
    /// `state.json`, or `None` once writing it failed.
    path: Option<PathBuf>,
    state: RunState,
    resumed: bool,
    _lock: Option<Arc<Resumed>>,
    _own_lock: Option<File>,
}

impl Journal {
    /// Starts the state of `run` (or carries on the one it resumes) in `dir`, the run's
    /// report directory, and writes it.
    pub(super) fn begin(run: &Run, dir: &Path, options: &RunOptions, now: Timestamp) -> Self {
        let owner = ProcessId::current().to_string();
        let mut journal = match &run.saved.resumed {
            Some(resumed) => {
                let mut state = resumed.state.clone();
                state.owner = owner;
                state.resumed_at.push(now);
                Journal {
                    path: Some(dir.join(STATE_FILE)),
                    state,
                    resumed: true,
                    _lock: Some(resumed.clone()),
                    _own_lock: None,
                }
            }
            None => {
                let state = RunState {
                    version: VERSION,
                    run_id: run.id.clone(),
                    project: run.project.file.clone(),
                    owner,
                    started_at: now,
                    resumed_at: Vec::new(),
                    selection: run.saved.selection.clone(),
                    options: SavedOptions {
                        jobs: options.jobs,
                        fail_fast: options.fail_fast,
                        retries: options.retries,
                        timeout: options.timeout,
                        keep: options.keep,
                        keep_failed: options.keep_failed,
                    },
                    plan: saved_plan(run),
                    finished: Vec::new(),
                };
                let lock = std::fs::create_dir_all(dir).and_then(|()| lock(dir));
                let (path, own_lock) = match lock {
                    Ok(Some(file)) => (Some(dir.join(STATE_FILE)), Some(file)),
                    Ok(None) => {
                        // Run ids are random: another ptest holding this one's is not expected.
                        tracing::warn!(
                            "run {} cannot be resumed: another ptest holds {}",
                            run.id,
                            dir.join(LOCK_FILE).display()
                        );
                        (None, None)
                    }
                    Err(e) => {
                        tracing::warn!(
                            "run {} cannot be resumed: locking its state in {}: {e}",
                            run.id,
                            dir.display()
                        );
                        (None, None)
                    }
                };
                Journal {
                    path,
                    state,
                    resumed: false,
                    _lock: None,
                    _own_lock: own_lock,
                }
            }
        };
        journal.write();
        journal
    }

    /// Whether the run is a resumed one.
    pub(super) fn resumed(&self) -> bool {
        self.resumed
    }

    /// When the run first started.
    pub(super) fn started_at(&self) -> Timestamp {
        self.state.started_at
    }

    /// When each resume of the run started (empty for a run that was never resumed).
    pub(super) fn resumed_at(&self) -> Vec<Timestamp> {
        self.state.resumed_at.clone()
    }

    /// The shards of `units` that finished before the run was resumed, by index in `units`.
    pub(super) fn finished_before(&self, units: &[Unit]) -> Vec<(usize, SuiteReport)> {
        if !self.resumed {
            return Vec::new();
        }
        units
            .iter()
            .enumerate()
            .filter_map(|(u, unit)| {
                self.state
                    .finished
                    .iter()
                    .find(|r| r.name == unit.suite && r.shard == unit.shard)
                    .map(|r| (u, r.clone()))
            })
            .collect()
    }

    /// Records that `report`'s shard ended, for good.
    pub(super) fn record(&mut self, report: &SuiteReport) {
        self.state
            .finished
            .retain(|r| !(r.name == report.name && r.shard == report.shard));
        self.state.finished.push(report.clone());
        self.write();
    }

    fn write(&mut self) {
        let Some(path) = &self.path else { return };
        let written = serde_json::to_vec(&self.state)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let mut tmp = path.as_os_str().to_owned();
                tmp.push(".tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, path)
            });
        if let Err(e) = written {
            tracing::warn!(
                "run {} cannot be resumed: writing {}: {e}",
                self.state.run_id,
                path.display()
            );
            self.path = None;
        }
    }
}

/// Removes the output files of the shards of `units` that will run again: what an
/// interrupted attempt wrote (`output/<stem>.<attempt>.{stdout.log,stderr.log,junit.xml}`)
/// would otherwise be appended to.
pub(super) fn clear_output(dir: &Path, project: &Project, units: &[&Unit]) {
    let Ok(entries) = std::fs::read_dir(dir.join("output")) else {
        return;
    };
    let stems: Vec<String> = units
        .iter()
        .map(|unit| {
            let mut stem = project
                .suite(&unit.suite)
                .map_or_else(|| unit.suite.clone(), crate::config::Suite::env_stem);
            if let Some(shard) = unit.shard {
                stem.push_str(&format!("-{shard}"));
            }
            stem
        })
        .collect();
    let is_output = |name: &str| {
        stems.iter().any(|stem| {
            name.strip_prefix(stem.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(attempt, kind)| {
                    !attempt.is_empty()
                        && attempt.bytes().all(|b| b.is_ascii_digit())
                        && matches!(kind, "stdout.log" | "stderr.log" | "junit.xml")
                })
        })
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        if name.to_str().is_some_and(is_output)
            && let Err(e) = std::fs::remove_file(entry.path())
        {
            tracing::warn!("could not remove {}: {e}", entry.path().display());
        }
    }
}

/// Takes the run's lock in `dir` without waiting; `None` when another ptest holds it.
fn lock(dir: &Path) -> std::io::Result<Option<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The plan of `run` as its state keeps it.
fn saved_plan(run: &Run) -> Vec<SavedSuite> {
    run.plan
        .iter()
        .map(|planned| {
            let suite = run
                .project
                .suite(&planned.name)
                .expect("planned suites exist");
            let template = run.project.template(suite);
            SavedSuite {
                name: planned.name.clone(),
                shards: planned.shards,
                definition: serde_json::to_value(suite).unwrap_or_default(),
                template: serde_json::to_value(template).unwrap_or_default(),
            }
        })
        .collect()
}

/// What differs between the plan a run started with and the one its project gives now.
fn changes(before: &[SavedSuite], now: &[SavedSuite]) -> Vec<String> {
    let mut out = Vec::new();
    for old in before {
        let Some(new) = now.iter().find(|s| s.name == old.name) else {
            out.push(format!("suite {:?} is no longer planned", old.name));
            continue;
        };
        if new.shards != old.shards {
            out.push(format!(
                "suite {:?} has {} shard(s), it had {}",
                old.name, new.shards, old.shards
            ));
        }
        let keys = differing_keys(&old.definition, &new.definition);
        if !keys.is_empty() {
            out.push(format!("suite {:?} changed: {}", old.name, keys.join(", ")));
        }
        let keys = differing_keys(&old.template, &new.template);
        if !keys.is_empty() {
            let env = new.definition["env"].as_str().unwrap_or("?");
            out.push(format!(
                "the environment template {env:?} of suite {:?} changed: {}",
                old.name,
                keys.join(", ")
            ));
        }
    }
    for new in now
        .iter()
        .filter(|n| !before.iter().any(|o| o.name == n.name))
    {
        out.push(format!("suite {:?} is newly planned", new.name));
    }
    out
}

/// The top-level keys in which two JSON objects differ (`shards` aside: compared apart).
fn differing_keys(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return if a == b {
            Vec::new()
        } else {
            vec!["its definition".to_owned()]
        };
    };
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .filter(|k| k.as_str() != "shards" && a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// `Missing`: exit 3, with the text as given.
fn missing(text: String) -> ResumeError {
    ResumeError::Core(ptest_core::Error::Missing(text))
}

/// The id of the run that started last under `reports`, among those with a state.
fn last_run(reports: &Path) -> Result<String, ResumeError> {
    #[derive(Deserialize)]
    struct Started {
        run_id: String,
        started_at: Timestamp,
    }
    let entries = std::fs::read_dir(reports).map_err(|e| {
        missing(format!(
            "no run to resume: {} cannot be read ({e})",
            reports.display()
        ))
    })?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let text = std::fs::read(e.path().join(STATE_FILE)).ok()?;
            serde_json::from_slice::<Started>(&text).ok()
        })
        .max_by_key(|s| s.started_at)
        .map(|s| s.run_id)
        .ok_or_else(|| {
            missing(format!(
                "no run to resume: no run under {} has a saved state",
                reports.display()
            ))
        })
}

impl Run {
    /// Plans the rest of run `id` (or `last`, the run started last) from the state its ptest
    /// kept under `$PTEST_HOME/reports/<id>/`: the same project, selection and shards under
    /// the same id, with the shards that finished kept as they ended. Returns the run and the
    /// options it was started with. Holds the run's lock until the returned run ends. See the
    /// module's documentation for what is refused and why.
    pub fn resume(manager: &Manager, id: &str) -> Result<(Run, RunOptions), ResumeError> {
        let reports = manager.home().path().join("reports");
        let id = if id == "last" {
            last_run(&reports)?
        } else {
            id.to_owned()
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(missing(format!(
                "no run {id:?} to resume: a run id is the one `ptest run` prints as it starts \
                 (\"(run ID)\"), or `last`"
            )));
        }
        let dir = crate::reports::run_dir(&reports, &id);
        if dir.join(REPORT_FILE).exists() {
            return Err(missing(format!(
                "run {id} already finished, there is nothing to resume; its reports are in {}",
                dir.display()
            )));
        }
        let text = match std::fs::read(dir.join(STATE_FILE)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(missing(format!(
                    "no run {id} to resume: {} does not exist (a run id is the one `ptest run` \
                     prints as it starts; `last` is the run started last)",
                    dir.join(STATE_FILE).display()
                )));
            }
            Err(e) => return Err(ptest_core::Error::io("reading", dir.join(STATE_FILE), e).into()),
        };
        let state: RunState = serde_json::from_slice(&text)
            .ok()
            .filter(|s: &RunState| s.version == VERSION && s.run_id == id)
            .ok_or_else(|| {
                missing(format!(
                    "run {id} cannot be resumed: {} is not a run state this ptest reads",
                    dir.join(STATE_FILE).display()
                ))
            })?;
        let busy = || {
            missing(format!(
                "run {id} is still running (ptest {}); only a run whose ptest died can be \
                 resumed",
                state
                    .owner
                    .split(':')
                    .next()
                    .map_or(String::new(), |pid| format!("pid {pid}"))
            ))
        };
        let lock = lock(&dir)
            .map_err(|e| ptest_core::Error::io("locking", dir.join(LOCK_FILE), e))?
            .ok_or_else(busy)?;
        if state
            .owner
            .parse::<ProcessId>()
            .is_ok_and(ProcessId::is_alive)
        {
            return Err(busy());
        }

        let mut project = Project::load(&state.project)?;
        project
            .check_engines(manager.engines())
            .map_err(ResumeError::Project)?;
        // `parallel = "auto"` was resolved when the run started: the same shards again.
        for suite in project.suites.iter_mut().filter(|s| s.auto_shards) {
            if let Some(saved) = state.plan.iter().find(|p| p.name == suite.name) {
                suite.shards = saved.shards;
            }
        }
        let mut run = Run::new(project, &state.selection.selection())?;
        let changed = changes(&state.plan, &saved_plan(&run));
        if !changed.is_empty() {
            return Err(ptest_core::Error::Usage(format!(
                "run {id} cannot be resumed: {} changed since it started ({}); start a new run \
                 with `ptest run`",
                state.project.display(),
                changed.join("; ")
            ))
            .into());
        }
        let o = &state.options;
        let options = RunOptions {
            jobs: o.jobs,
            fail_fast: o.fail_fast,
            retries: o.retries,
            timeout: o.timeout,
            keep: o.keep,
            supervisor: None,
            keep_failed: o.keep_failed,
        };
        run.id = id;
        run.saved.resumed = Some(Arc::new(Resumed { state, _lock: lock }));
        Ok((run, options))
    }

    /// For a resumed run, how many suite shards finished before it was resumed; `None` for a
    /// run that is not resumed.
    pub fn finished_before(&self) -> Option<usize> {
        let resumed = self.saved.resumed.as_ref()?;
        let planned: usize = self.plan.iter().map(|p| p.shards as usize).sum();
        Some(resumed.state.finished.len().min(planned))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn suite(name: &str, shards: u32, run: &str) -> SavedSuite {
        SavedSuite {
            name: name.into(),
            shards,
            definition: serde_json::json!({"name": name, "env": "basic", "run": run,
                "shards": shards}),
            template: serde_json::json!({"level": "basic"}),
        }
    }

    #[test]
    fn a_changed_plan_is_named_suite_by_suite() {
        let before = [
            suite("a", 1, "true"),
            suite("b", 2, "x"),
            suite("c", 1, "y"),
        ];
        let now = [
            suite("a", 1, "true"),
            suite("b", 3, "x"),
            suite("d", 1, "z"),
        ];
        assert_eq!(
            changes(&before, &now),
            [
                "suite \"b\" has 3 shard(s), it had 2",
                "suite \"c\" is no longer planned",
                "suite \"d\" is newly planned",
            ]
        );
        let mut edited = suite("a", 1, "false");
        edited.template = serde_json::json!({"level": "virtualenv"});
        assert_eq!(
            changes(&[suite("a", 1, "true")], &[edited]),
            [
                "suite \"a\" changed: run",
                "the environment template \"basic\" of suite \"a\" changed: level",
            ]
        );
        assert!(changes(&before, &before).is_empty());
    }

    #[test]
    fn only_the_interrupted_shards_output_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("output");
        std::fs::create_dir(&out).unwrap();
        let names = [
            "unit-py3.1.stdout.log",
            "unit-py3.11.1.stdout.log",
            "unit-py3.2.junit.xml",
            "unit-py3.x.stdout.log",
            "other.1.stderr.log",
        ];
        for name in names {
            std::fs::write(out.join(name), "").unwrap();
        }
        let text = "[[suite]]\nname = \"unit-py3\"\nrun = \"true\"\n\n\
                    [[suite]]\nname = \"other\"\nrun = \"true\"\n";
        std::fs::write(dir.path().join("ptest.toml"), text).unwrap();
        let project = Project::load(&dir.path().join("ptest.toml")).unwrap();
        let unit = Unit {
            suite: "unit-py3".into(),
            shard: None,
            shards: 1,
        };
        clear_output(dir.path(), &project, &[&unit]);
        let mut left: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "other.1.stderr.log",
                "unit-py3.11.1.stdout.log",
                "unit-py3.x.stdout.log"
            ]
        );
    }
}
