//! ptest's pytest plugin, `_ptest_plugin` (a name that cannot shadow the `ptest` package):
//! ptest writes it into each `basic` and `virtualenv` environment's `tmp/.ptest/`, with a
//! `dist-info` beside it whose `pytest11` entry point makes pytest load it, and puts that
//! directory first on the suite's `PYTHONPATH`. A command that sets its own `PYTHONPATH` (or
//! `PYTEST_DISABLE_PLUGIN_AUTOLOAD`) runs without it, never with an import error. It does
//! three things, each through a file beside it:
//!
//! - progress: writes "DONE TOTAL" as tests finish (at most five times a second), which the
//!   runner reads while the suite's `run` command runs and hands to the [`crate::Reporter`];
//! - collection, for `split = "pytest"`: with `PTEST_COLLECT_TO` set, writes every collected
//!   test id, one a line, and runs none;
//! - selection, for `split = "pytest"`: keeps only the test ids listed in the selection file
//!   ptest wrote for the shard (when that file exists).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ptest_core::beneath::Beneath;

/// The plugin's module name.
pub(crate) const PLUGIN: &str = "_ptest_plugin";

/// The plugin's directory, relative to the environment root.
const DIR: &str = "tmp/.ptest";

/// The plugin's distribution metadata, so that pytest finds its entry point on `sys.path`.
const DIST_INFO: &str = "_ptest_plugin-1.0.dist-info";
const METADATA: &str = "Metadata-Version: 2.1\nName: _ptest_plugin\nVersion: 1.0\n\
    Summary: ptest run's pytest plugin (progress, split = \"pytest\"), placed by ptest\n";
const ENTRY_POINTS: &str = "[pytest11]\n_ptest_plugin = _ptest_plugin\n";

/// The files beside the plugin: what it reports, what it collected, what it should run.
const PROGRESS: &str = "progress";
const COLLECTED: &str = "collected";
const SELECTED: &str = "selected";

/// Most bytes of collected test ids ptest reads (about a million tests).
const COLLECTED_MAX: u64 = 128 << 20;

/// The plugin. A pytest-xdist worker reports no progress (its controller does, for all).
const SOURCE: &str = r#""""ptest's pytest plugin: progress, collection and selection for ptest run."""

import os
import time

import pytest

_state = {"done": 0, "total": 0, "written": 0.0}


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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    collect_to = os.environ.get("PTEST_COLLECT_TO")
    if collect_to:
        with open(collect_to, "w") as f:
            for item in items:
                f.write(item.nodeid + "\n")
        config.hook.pytest_deselected(items=list(items))
        items[:] = []
        return
    selected = os.environ.get("PTEST_SELECT_FILE")
    if selected and os.path.exists(selected):
        with open(selected) as f:
            wanted = set(line.rstrip("\n") for line in f)
        keep = [item for item in items if item.nodeid in wanted]
        if len(keep) < len(items):
            config.hook.pytest_deselected(
                items=[item for item in items if item.nodeid not in wanted]
            )
            items[:] = keep


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
    /// environment, says), `PTEST_PROGRESS_FILE` and `PTEST_SELECT_FILE` for the suite's
    /// commands.
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
        vars.insert("PTEST_SELECT_FILE".into(), self.path(SELECTED));
    }

    /// The variable that makes a pytest run write its collected ids and run none.
    pub(crate) fn collect_var(&self) -> (String, String) {
        ("PTEST_COLLECT_TO".into(), self.path(COLLECTED))
    }

    /// Forgets what an earlier attempt reported and collected.
    pub(crate) fn reset(&self) {
        if let Ok(dir) = self.dir() {
            for file in [PROGRESS, COLLECTED] {
                let _ = dir.remove_file(Path::new(file));
            }
        }
    }

    /// `(done, total)` as the plugin last wrote it; `None` before it wrote or when the file
    /// is not one it could have written.
    pub(crate) fn progress(&self) -> Option<(u64, u64)> {
        let bytes = self.dir().ok()?.read(Path::new(PROGRESS), 64).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let (done, total) = text.trim().split_once(' ')?;
        Some((done.parse().ok()?, total.parse().ok()?))
    }

    /// The test ids a collecting run wrote, in collection order.
    pub(crate) fn collected(&self) -> std::io::Result<Vec<String>> {
        let bytes = self.dir()?.read(Path::new(COLLECTED), COLLECTED_MAX)?;
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Makes the suite's pytest run only `ids`.
    pub(crate) fn select(&self, ids: &[String]) -> std::io::Result<()> {
        let mut text = ids.join("\n");
        text.push('\n');
        Ok(self
            .dir()?
            .replace(Path::new(SELECTED), text.as_bytes(), 0o644)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
        assert_eq!(plugin.progress(), None);
        std::fs::write(root.path().join(DIR).join(PROGRESS), "12 300\n").unwrap();
        assert_eq!(plugin.progress(), Some((12, 300)));
        std::fs::write(root.path().join(DIR).join(COLLECTED), "a.py::t\nb.py::u\n").unwrap();
        assert_eq!(plugin.collected().unwrap(), ["a.py::t", "b.py::u"]);
        plugin.reset();
        assert_eq!(plugin.progress(), None);
        assert!(plugin.collected().is_err());
        plugin.select(&["a.py::t".to_owned()]).unwrap();
        let selected = std::fs::read_to_string(root.path().join(DIR).join(SELECTED)).unwrap();
        assert_eq!(selected, "a.py::t\n");

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
        let mut vars = BTreeMap::from([("PYTHONPATH".to_owned(), "/mine".to_owned())]);
        plugin.vars(&mut vars);
        let ours = root.path().join(DIR).display().to_string();
        assert_eq!(vars["PYTHONPATH"], format!("{ours}:/mine"));
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
