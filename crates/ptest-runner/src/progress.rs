//! Per-test progress of pytest suites: a tiny pytest plugin, `_ptest_progress` (a name that
//! cannot shadow the `ptest` package), that ptest writes into each environment's `tmp/.ptest/`
//! and puts on the suite's `PYTHONPATH` and `PYTEST_PLUGINS`. It writes "DONE TOTAL" to a
//! file beside it as tests finish (at most five times a second), which the runner reads
//! while the suite's `run` command runs and hands to the [`crate::Reporter`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ptest_core::beneath::Beneath;

/// The plugin's module name.
pub(crate) const PLUGIN: &str = "_ptest_progress";

/// The plugin's directory, relative to the environment root.
const DIR: &str = "tmp/.ptest";

/// The file the plugin writes, relative to [`DIR`].
const FILE: &str = "progress";

/// The plugin. A pytest-xdist worker stays silent (its controller reports for all).
const SOURCE: &str = r#""""ptest's progress reporter for pytest: "DONE TOTAL" in $PTEST_PROGRESS_FILE."""

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

/// Where a suite's environment has the plugin: its directory on the host (which is also
/// where the suite sees it, a sandbox keeping the root's path).
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    root: PathBuf,
}

impl Progress {
    /// Writes the plugin into the environment at `root`, beneath it (a link planted there
    /// is refused, never followed).
    pub(crate) fn install(root: &Path) -> std::io::Result<Progress> {
        let beneath = Beneath::open(root)?;
        let dir = beneath.make_dir(Path::new(DIR), 0o755)?;
        dir.replace(Path::new(&format!("{PLUGIN}.py")), SOURCE.as_bytes(), 0o644)?;
        Ok(Progress {
            root: root.to_owned(),
        })
    }

    /// `PYTHONPATH`, `PYTEST_PLUGINS` and `PTEST_PROGRESS_FILE` for the suite's commands,
    /// added to what `vars` (or else ptest's own environment) already says.
    pub(crate) fn vars(&self, vars: &mut BTreeMap<String, String>) {
        let dir = self.root.join(DIR);
        let joined = |key: &str, ours: String, sep: &str| {
            let theirs = vars
                .get(key)
                .cloned()
                .or_else(|| std::env::var(key).ok())
                .filter(|v| !v.is_empty());
            match theirs {
                Some(theirs) => format!("{ours}{sep}{theirs}"),
                None => ours,
            }
        };
        let path = joined("PYTHONPATH", dir.display().to_string(), ":");
        let plugins = joined("PYTEST_PLUGINS", PLUGIN.to_owned(), ",");
        vars.insert("PYTHONPATH".into(), path);
        vars.insert("PYTEST_PLUGINS".into(), plugins);
        vars.insert(
            "PTEST_PROGRESS_FILE".into(),
            dir.join(FILE).display().to_string(),
        );
    }

    /// Forgets what an earlier attempt reported.
    pub(crate) fn reset(&self) {
        if let Ok(dir) = Beneath::open(&self.root.join(DIR)) {
            let _ = dir.remove_file(Path::new(FILE));
        }
    }

    /// `(done, total)` as the plugin last wrote it; `None` before it wrote or when the file
    /// is not one it could have written.
    pub(crate) fn read(&self) -> Option<(u64, u64)> {
        let bytes = Beneath::open(&self.root.join(DIR))
            .ok()?
            .read(Path::new(FILE), 64)
            .ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let (done, total) = text.trim().split_once(' ')?;
        Some((done.parse().ok()?, total.parse().ok()?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_plugin_goes_beneath_the_root_and_its_reports_are_read_back() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("tmp")).unwrap();
        let progress = Progress::install(root.path()).unwrap();
        let plugin = root.path().join(DIR).join("_ptest_progress.py");
        assert!(
            std::fs::read_to_string(plugin)
                .unwrap()
                .contains("pytest_runtest_logfinish")
        );
        assert_eq!(progress.read(), None);
        std::fs::write(root.path().join(DIR).join(FILE), "12 300\n").unwrap();
        assert_eq!(progress.read(), Some((12, 300)));
        progress.reset();
        assert_eq!(progress.read(), None);

        let mut vars = BTreeMap::from([("PYTEST_PLUGINS".to_owned(), "mine".to_owned())]);
        progress.vars(&mut vars);
        assert_eq!(vars["PYTEST_PLUGINS"], "_ptest_progress,mine");
        assert!(vars["PYTHONPATH"].starts_with(&root.path().join(DIR).display().to_string()));
    }

    #[test]
    fn a_planted_link_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("tmp")).unwrap();
        assert!(Progress::install(root.path()).is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }
}
