//! The project under test as a wheel, for templates that install it (`packages = ["."]`,
//! `-e .`, `.[test]`, `install_project = true`). Each suite's environment then gets the
//! project's dependencies with its other packages (reused by hash) and this wheel without
//! dependencies: tests import the environment's own copy, never the user's tree, from `/tmp`
//! or anywhere. Where `pyproject.toml` declares the dependencies, the environment is made
//! while the wheel builds (see `run::executor`); else the wheel is read for them first.
//!
//! A run builds the wheel once: with the first interpreter a suite asks for, and again for
//! another interpreter only when the wheel is not pure Python (its tags name an ABI or a
//! platform). Built wheels are kept in `$PTEST_HOME/cache/project-wheels/`, under a
//! fingerprint of the project's files (each kept file's path, size and modification time, and
//! git's `HEAD`, `index` and `packed-refs`; see [`crate::copy::fingerprint`]): the next run
//! of an unchanged project takes the kept wheel and builds nothing. The newest
//! [`KEPT_WHEELS`] are kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ptest_core::{Error, Home};
use ptest_python::{Installer, InstallerKind, Interpreter, ProbeCache, PythonRequest};
use tokio::sync::OnceCell;

use crate::copy::{self, IgnoreRules};

/// How many built wheels `$PTEST_HOME/cache/project-wheels/` keeps.
pub const KEPT_WHEELS: usize = 10;

/// A wheel, or why it could not be had (shared by every suite that waits for it).
type Built = OnceCell<Result<PathBuf, Arc<Error>>>;

/// The wheels of one run: the first one built (with whichever interpreter asked first), and
/// per interpreter the ones a wheel that is not pure needs.
#[derive(Debug, Default)]
pub(crate) struct Wheels {
    first: OnceCell<Result<(String, PathBuf), Arc<Error>>>,
    built: Mutex<HashMap<String, Arc<Built>>>,
}

impl Wheels {
    /// The wheel of the project in `dir` for interpreter `python` (the template's; the
    /// default one when `None`): the run's first wheel when it is pure Python, else one built
    /// for this interpreter; each taken from the cache or built on first use.
    pub(crate) async fn get(
        &self,
        home: &Home,
        dir: &Path,
        python: Option<&str>,
    ) -> Result<PathBuf, Error> {
        let key = python.unwrap_or("").to_owned();
        let first = self
            .first
            .get_or_init(|| {
                let (home, dir, key) = (home.clone(), dir.to_owned(), key.clone());
                async move {
                    blocking(move || wheel(&home, &dir, &key).map(|w| (key, w)))
                        .await
                        .map_err(Arc::new)
                }
            })
            .await
            .clone()
            .map_err(|e| Error::Usage(e.to_string()))?;
        if first.0 == key || is_pure(&first.1) {
            return Ok(first.1);
        }
        let cell = self
            .built
            .lock()
            .expect("no panics while held")
            .entry(key.clone())
            .or_default()
            .clone();
        let (home, dir) = (home.clone(), dir.to_owned());
        let built = cell
            .get_or_init(|| async move {
                blocking(move || wheel(&home, &dir, &key))
                    .await
                    .map_err(Arc::new)
            })
            .await;
        built.clone().map_err(|e| Error::Usage(e.to_string()))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Usage(format!("building the project's wheel: {e}")))
        .and_then(|r| r)
}

/// Whether a wheel (by its file name, `NAME-VERSION[-BUILD]-PY-ABI-PLATFORM.whl`) installs
/// under any Python 3: tags `py3` (or `py2.py3`), `none`, `any`.
fn is_pure(wheel: &Path) -> bool {
    let Some(stem) = wheel
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".whl"))
    else {
        return false;
    };
    let tags: Vec<&str> = stem.rsplitn(4, '-').take(3).collect();
    matches!(tags.as_slice(), [platform, abi, py]
        if *platform == "any" && *abi == "none" && py.split('.').all(|t| t.starts_with("py")))
}

/// The wheel of the project in `dir` for interpreter `python`: the kept one of these files
/// and this interpreter, or one built now (and kept).
fn wheel(home: &Home, dir: &Path, python: &str) -> Result<PathBuf, Error> {
    let cache = home.cache_dir();
    let probes = ProbeCache::new(&cache.join("probes"));
    let request: PythonRequest = python.parse().expect("every string is a python request");
    let interpreter = Interpreter::find_cached(&request, &probes)
        .map_err(|e| Error::Usage(format!("building the project's wheel: {e}")))?;
    let installer = Installer::detect_cached(&cache.join("python"), &probes);
    let files = IgnoreRules::for_project(dir)
        .and_then(|rules| copy::fingerprint(dir, &rules))
        .map_err(|e| Error::io("reading", dir, e))?;
    let kept = cache.join("project-wheels");
    let label = format!(
        "{files:016x}-{}-{}",
        interpreter
            .path
            .display()
            .to_string()
            .replace(['/', ' '], "_"),
        match installer.kind() {
            InstallerKind::Uv { .. } => "uv",
            _ => "pip",
        }
    );
    let at = kept.join(&label);
    if let Some(found) = the_wheel_in(&at) {
        // Used now: the newest for `prune`.
        let _ = std::fs::File::open(&at).and_then(|d| d.set_modified(std::time::SystemTime::now()));
        return Ok(found);
    }
    let building = kept.join(format!(".{label}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building).map_err(|e| Error::io("creating", &building, e))?;
    let built = ptest_python::project::build_wheel(&installer, &interpreter.path, dir, &building)
        .map_err(|e| {
        let _ = std::fs::remove_dir_all(&building);
        Error::Usage(format!(
            "the project in {} could not be built into a wheel (as `pip install .` would): {e}",
            dir.display()
        ))
    })?;
    let name = built.file_name().expect("a wheel file").to_owned();
    // Into place in one step: another run building the same files at once keeps its own.
    if std::fs::rename(&building, &at).is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    prune(&kept);
    match the_wheel_in(&at) {
        Some(found) if found.file_name() == Some(name.as_os_str()) => Ok(found),
        _ => Err(Error::Usage(format!(
            "the project's wheel was built but is not in {} (removed meanwhile?)",
            at.display()
        ))),
    }
}

/// The one `.whl` file in `dir`, if it holds one.
fn the_wheel_in(dir: &Path) -> Option<PathBuf> {
    let mut wheels = std::fs::read_dir(dir).ok()?.filter_map(|e| {
        let path = e.ok()?.path();
        (path.extension()? == "whl").then_some(path)
    });
    let found = wheels.next()?;
    wheels.next().is_none().then_some(found)
}

/// Removes all but the newest [`KEPT_WHEELS`] kept wheels (a run under way took its path
/// already; one that loses it mid-install fails that suite with the reason).
fn prune(kept: &Path) {
    let Ok(entries) = std::fs::read_dir(kept) else {
        return;
    };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name();
            if name.to_str()?.starts_with('.') {
                return None;
            }
            Some((e.metadata().ok()?.modified().ok()?, e.path()))
        })
        .collect();
    dirs.sort();
    let excess = dirs.len().saturating_sub(KEPT_WHEELS);
    for (_, dir) in dirs.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pure_wheels_are_told_by_their_tags() {
        for (name, pure) in [
            ("itsdangerous-2.2.0-py3-none-any.whl", true),
            ("six-1.16.0-py2.py3-none-any.whl", true),
            ("pkg-1.0-1-py3-none-any.whl", true),
            ("mypy-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", false),
            ("odd-1.0-cp311-none-any.whl", false),
            ("abi3-1.0-cp38-abi3-linux_x86_64.whl", false),
            ("not-a-wheel.tar.gz", false),
        ] {
            assert_eq!(is_pure(Path::new(name)), pure, "{name}");
        }
    }
}
