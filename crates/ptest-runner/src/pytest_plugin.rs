//! ptest's pytest plugin, `_ptest_plugin` (a name that cannot shadow the `ptest` package):
//! ptest writes it into each `basic` and `virtualenv` environment's `tmp/.ptest/`, with a
//! `dist-info` beside it whose `pytest11` entry point makes pytest load it, and puts that
//! directory first on the suite's `PYTHONPATH`. A command that sets its own `PYTHONPATH` (or
//! `PYTEST_DISABLE_PLUGIN_AUTOLOAD`) runs without it, never with an import error. It does two
//! things, each through files beside it:
//!
//! - progress: writes "DONE TOTAL" as tests finish (at most five times a second), which the
//!   runner reads while the suite's `run` command runs and hands to the [`crate::Reporter`];
//! - sharing, for `split = "pytest"`: each shard's pytest deals the tests it collected (after
//!   `-k` and markers) out to the `PTEST_SHARDS` shards, longest first to the least loaded,
//!   by the durations ptest wrote from the suite's history (unknown ones count as the mean,
//!   and each test also as the suite's per-test overhead),
//!   in test id order so that every shard computes the same shares; it keeps its own share
//!   and writes "KEPT COLLECTED", so that ptest knows it ran.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ptest_core::beneath::Beneath;

use crate::split::History;

/// The plugin's module name.
const PLUGIN: &str = "_ptest_plugin";

/// The plugin's directory, relative to the environment root.
const DIR: &str = "tmp/.ptest";

/// The plugin's distribution metadata, so that pytest finds its entry point on `sys.path`.
const DIST_INFO: &str = "_ptest_plugin-1.0.dist-info";
const METADATA: &str = "Metadata-Version: 2.1\nName: _ptest_plugin\nVersion: 1.0\n\
    Summary: ptest run's pytest plugin (progress, split = \"pytest\"), placed by ptest\n";
const ENTRY_POINTS: &str = "[pytest11]\n_ptest_plugin = _ptest_plugin\n";

/// The files beside the plugin: its progress, the durations ptest gives it, the share it kept.
const PROGRESS: &str = "progress";
const DURATIONS: &str = "durations.json";
const SHARED: &str = "shared";

/// The plugin. A pytest-xdist worker neither reports nor shares (its controller does).
const SOURCE: &str = r#""""ptest's pytest plugin: progress and split = "pytest" for ptest run."""

import json
import os
import time

import pytest

_state = {"done": 0, "total": 0, "written": 0.0, "kept": None}


def _write(force=False):
    path = os.environ.get("PTEST_PROGRESS_FILE")
    now = time.monotonic()
    if not path or (not force and now - _state["written"] < 0.2):
        return
    _state["written"] = now
    try:
        with open(path + ".tmp", "w") as f:
            f.write("%d %d\n" % (_state["done"], _state["total"]))
        os.replace(path + ".tmp", path)
    except OSError:
        pass


def _worker(config):
    return hasattr(config, "workerinput")


def _junit_key(nodeid):
    """tests/test_x.py::TestA::test_f[1] as pytest's JUnit names it."""
    parts = nodeid.split("::")
    name = parts.pop()
    classname = []
    if parts:
        path = parts[0][:-3] if parts[0].endswith(".py") else parts[0]
        classname.append(path.replace("/", "."))
    classname.extend(parts[1:])
    return ".".join(classname) + "::" + name


def _mine(ids, history, shard, shards):
    """This shard's ids: longest first to the least loaded shard, ties to the lowest."""
    ids = sorted(ids)
    cases = history.get("cases", {})
    overhead = history.get("overhead", 0.0)
    known = [cases.get(_junit_key(i)) for i in ids]
    found = [d for d in known if d is not None]
    mean = sum(found) / len(found) if found else 1.0
    weights = [(mean if d is None else d) + overhead for d in known]
    loads = [0.0] * shards
    mine = set()
    for i in sorted(range(len(ids)), key=lambda i: (-weights[i], i)):
        lightest = min(range(shards), key=lambda s: (loads[s], s))
        loads[lightest] += weights[i]
        if lightest == shard:
            mine.add(ids[i])
    return mine


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    path = os.environ.get("PTEST_SPLIT_FILE")
    if not path or _worker(config):
        return
    with open(path) as f:
        history = json.load(f)
    shard = int(os.environ.get("PTEST_SHARD", "0"))
    shards = int(os.environ.get("PTEST_SHARDS", "1"))
    mine = _mine([item.nodeid for item in items], history, shard, shards)
    kept = [item for item in items if item.nodeid in mine]
    dropped = [item for item in items if item.nodeid not in mine]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    _state["kept"] = len(kept)
    with open(os.path.join(os.path.dirname(path), "shared"), "w") as f:
        f.write("%d %d\n" % (len(kept), len(items)))
    items[:] = kept


def pytest_sessionfinish(session, exitstatus):
    # A shard left without tests passes: the other shards run them.
    if _state["kept"] == 0 and exitstatus == 5:
        session.exitstatus = 0


def pytest_collection_finish(session):
    if not _worker(session.config):
        _state["total"] = len(session.items)
        _write(force=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    _state["total"] = max(_state["total"], len(ids))
    _write(force=True)


def pytest_runtest_logfinish(nodeid, location):
    _state["done"] += 1
    _write(force=_state["done"] >= _state["total"])
"#;

/// The plugin in one environment: its directory on the host, which is also where the
/// suite sees it (a sandbox keeps the root's path).
#[derive(Debug, Clone)]
pub(crate) struct Plugin {
    root: PathBuf,
}

impl Plugin {
    /// Writes the plugin into the environment at `root`, beneath it (a link planted there
    /// is refused, never followed).
    pub(crate) fn install(root: &Path) -> std::io::Result<Plugin> {
        let beneath = Beneath::open(root)?;
        let dir = beneath.make_dir(Path::new(DIR), 0o755)?;
        dir.replace(Path::new(&format!("{PLUGIN}.py")), SOURCE.as_bytes(), 0o644)?;
        let info = dir.make_dir(Path::new(DIST_INFO), 0o755)?;
        info.replace(Path::new("METADATA"), METADATA.as_bytes(), 0o644)?;
        info.replace(
            Path::new("entry_points.txt"),
            ENTRY_POINTS.as_bytes(),
            0o644,
        )?;
        Ok(Plugin {
            root: root.to_owned(),
        })
    }

    fn path(&self, file: &str) -> String {
        self.root.join(DIR).join(file).display().to_string()
    }

    fn dir(&self) -> std::io::Result<Beneath> {
        Ok(Beneath::open(&self.root.join(DIR))?)
    }

    /// `PYTHONPATH` (the plugin's directory in front of what `vars`, or else ptest's own
    /// environment, says) and `PTEST_PROGRESS_FILE` for the suite's commands.
    pub(crate) fn vars(&self, vars: &mut BTreeMap<String, String>) {
        let ours = self.root.join(DIR).display().to_string();
        let theirs = vars
            .get("PYTHONPATH")
            .cloned()
            .or_else(|| std::env::var("PYTHONPATH").ok())
            .filter(|v| !v.is_empty());
        let path = match theirs {
            Some(theirs) => format!("{ours}:{theirs}"),
            None => ours,
        };
        vars.insert("PYTHONPATH".into(), path);
        vars.insert("PTEST_PROGRESS_FILE".into(), self.path(PROGRESS));
    }

    /// Makes the suite's pytest keep only its shard's share of the tests, dealt by its
    /// `history`: writes it for the plugin and sets `PTEST_SPLIT_FILE` in `vars`.
    pub(crate) fn split(
        &self,
        history: &History,
        vars: &mut BTreeMap<String, String>,
    ) -> std::io::Result<()> {
        let json = serde_json::to_vec(history).map_err(std::io::Error::other)?;
        self.dir()?.replace(Path::new(DURATIONS), &json, 0o644)?;
        vars.insert("PTEST_SPLIT_FILE".into(), self.path(DURATIONS));
        Ok(())
    }

    /// Forgets what an earlier attempt reported.
    pub(crate) fn reset(&self) {
        if let Ok(dir) = self.dir() {
            for file in [PROGRESS, SHARED] {
                let _ = dir.remove_file(Path::new(file));
            }
        }
    }

    /// `(done, total)` as the plugin last wrote it; `None` before it wrote or when the file
    /// is not one it could have written.
    pub(crate) fn progress(&self) -> Option<(u64, u64)> {
        self.pair(PROGRESS)
    }

    /// `(kept, collected)`: the share a split suite's pytest kept; `None` when the plugin
    /// did not run.
    pub(crate) fn shared(&self) -> Option<(u64, u64)> {
        self.pair(SHARED)
    }

    /// The two numbers the plugin wrote to `file`.
    fn pair(&self, file: &str) -> Option<(u64, u64)> {
        let bytes = self.dir().ok()?.read(Path::new(file), 64).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let (a, b) = text.trim().split_once(' ')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_plugin_goes_beneath_the_root_and_its_files_are_read_back() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("tmp")).unwrap();
        let plugin = Plugin::install(root.path()).unwrap();
        let source = root.path().join(DIR).join("_ptest_plugin.py");
        assert!(
            std::fs::read_to_string(source)
                .unwrap()
                .contains("pytest_runtest_logfinish")
        );
        let entry = root
            .path()
            .join(DIR)
            .join(DIST_INFO)
            .join("entry_points.txt");
        assert!(
            std::fs::read_to_string(entry)
                .unwrap()
                .contains("[pytest11]")
        );
        assert_eq!(plugin.progress(), None);
        std::fs::write(root.path().join(DIR).join(PROGRESS), "12 300\n").unwrap();
        std::fs::write(root.path().join(DIR).join(SHARED), "5 10\n").unwrap();
        assert_eq!(plugin.progress(), Some((12, 300)));
        assert_eq!(plugin.shared(), Some((5, 10)));
        plugin.reset();
        assert_eq!((plugin.progress(), plugin.shared()), (None, None));

        let mut vars = BTreeMap::from([("PYTHONPATH".to_owned(), "/mine".to_owned())]);
        plugin.vars(&mut vars);
        let ours = root.path().join(DIR).display().to_string();
        assert_eq!(vars["PYTHONPATH"], format!("{ours}:/mine"));
        let history = History {
            total: 2.0,
            cases: HashMap::from([("t::a".to_owned(), 1.5)]),
            overhead: 0.5,
        };
        plugin.split(&history, &mut vars).unwrap();
        let written = std::fs::read_to_string(&vars["PTEST_SPLIT_FILE"]).unwrap();
        assert_eq!(
            written,
            r#"{"total":2.0,"cases":{"t::a":1.5},"overhead":0.5}"#
        );
    }

    #[test]
    fn a_planted_link_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("tmp")).unwrap();
        assert!(Plugin::install(root.path()).is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }
}
