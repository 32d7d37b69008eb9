//! Shared set-up for the integration tests: the host interpreter, uv if present, venvs and
//! installs from ptest-testkit's wheelhouse of demo packages.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use ptest_python::{InstallRequest, Installer, Interpreter, PythonRequest, Venv};

use ptest_testkit::skip;
use ptest_testkit::wheels::wheelhouse;

/// The host's Python 3 (via `python3` on PATH), or a skip.
pub fn python() -> Option<Interpreter> {
    match Interpreter::find(&PythonRequest::Default) {
        Ok(python) => Some(python),
        Err(err) => skip(format!("no Python 3 interpreter: {err}")),
    }
}

/// uv on PATH, or a skip.
pub fn uv_installer(cache: &Path) -> Option<Installer> {
    let installer = Installer::detect(cache);
    if installer.kind().name() == "uv" {
        Some(installer)
    } else {
        skip("uv is not on PATH (install it with `pip install uv`)")
    }
}

/// Every installer this host has: pip always, uv when on PATH (a skip is printed otherwise).
pub fn installers(cache: &Path) -> Vec<Installer> {
    let mut all = vec![Installer::pip(&cache.join("pip"))];
    if let Some(uv) = uv_installer(&cache.join("uv")) {
        all.push(uv);
    }
    all
}

/// Installs from the local wheelhouse only.
pub fn local(requirements: &[&str]) -> InstallRequest {
    InstallRequest {
        requirements: requirements.iter().map(|s| (*s).to_owned()).collect(),
        no_index: true,
        find_links: vec![wheelhouse().display().to_string()],
        ..InstallRequest::default()
    }
}

/// A venv in `dir/name` made by `installer`.
pub fn venv(dir: &Path, name: &str, python: &Interpreter, installer: &Installer) -> Venv {
    Venv::create(&dir.join(name), python, installer).unwrap()
}

/// A venv `dir/name` (made by `python -m venv`) whose python writes its pid to `log` at every
/// start (a `.pth` line runs at start-up, even under `-I`), so a test can count starts.
pub fn logging_venv(dir: &Path, name: &str, python: &Interpreter, log: &Path) -> Venv {
    let venv = venv(dir, name, python, &Installer::pip(&dir.join("pip-cache")));
    log_starts(&venv, log);
    venv
}

/// Makes `venv`'s python write its pid to `log` at every start (see [`starts`]).
pub fn log_starts(venv: &Venv, log: &Path) {
    ptest_testkit::python::log_starts(venv.site_packages(), log);
}

/// Runs the venv's python with `code`; returns (success, stdout + stderr).
pub fn run_python(python: &Path, code: &str) -> (bool, String) {
    let output = Command::new(python)
        .arg("-c")
        .arg(code)
        .env_remove("PYTHONPATH")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}
