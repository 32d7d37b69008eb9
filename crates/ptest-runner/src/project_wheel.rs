//! The project under test, built once per run into a wheel (one per interpreter a template
//! names), for templates that install it (`packages = ["."]`, `-e .`, `.[test]`,
//! `install_project = true`). Each suite's environment then gets the project's dependencies
//! with its other packages (reused by hash) and this wheel without dependencies: tests import
//! the environment's own copy, never the user's tree, from `/tmp` or anywhere.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ptest_core::{Error, Home};
use ptest_python::{Installer, Interpreter, ProbeCache, PythonRequest};
use tokio::sync::OnceCell;

/// A wheel, or why it could not be built (shared by every suite that waits for it).
type Built = OnceCell<Result<PathBuf, Arc<Error>>>;

/// The wheels of one run, by interpreter.
#[derive(Debug, Default)]
pub(crate) struct Wheels {
    built: Mutex<HashMap<String, Arc<Built>>>,
}

impl Wheels {
    /// The wheel of the project in `dir` for interpreter `python` (the template's; the
    /// default one when `None`), built into the run's `reports/<run>/dist/` on first use.
    pub(crate) async fn get(
        &self,
        home: &Home,
        run_id: &str,
        dir: &Path,
        python: Option<&str>,
    ) -> Result<PathBuf, Error> {
        let key = python.unwrap_or("").to_owned();
        let cell = self
            .built
            .lock()
            .expect("no panics while held")
            .entry(key.clone())
            .or_default()
            .clone();
        let (home, dir, run_id) = (home.clone(), dir.to_owned(), run_id.to_owned());
        let built = cell
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || build(&home, &run_id, &dir, &key))
                    .await
                    .map_err(|e| Error::Usage(format!("building the project's wheel: {e}")))
                    .and_then(|r| r)
                    .map_err(Arc::new)
            })
            .await;
        built.clone().map_err(|e| Error::Usage(e.to_string()))
    }
}

fn build(home: &Home, run_id: &str, dir: &Path, python: &str) -> Result<PathBuf, Error> {
    let cache = home.cache_dir();
    let probes = ProbeCache::new(&cache.join("probes"));
    let request: PythonRequest = python.parse().expect("every string is a python request");
    let interpreter = Interpreter::find_cached(&request, &probes)
        .map_err(|e| Error::Usage(format!("building the project's wheel: {e}")))?;
    let installer = Installer::detect_cached(&cache.join("python"), &probes);
    let label = if python.is_empty() { "default" } else { python };
    let out = home
        .path()
        .join("reports")
        .join(run_id)
        .join("dist")
        .join(label.replace(['/', ' '], "_"));
    std::fs::create_dir_all(&out).map_err(|e| Error::io("creating", &out, e))?;
    ptest_python::project::build_wheel(&installer, &interpreter.path, dir, &out).map_err(|e| {
        Error::Usage(format!(
            "the project in {} could not be built into a wheel (as `pip install .` would): {e}",
            dir.display()
        ))
    })
}
