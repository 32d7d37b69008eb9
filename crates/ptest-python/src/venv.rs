//! Virtual environments: creating one (with uv, or `python -m venv --without-pip`) and
//! opening an existing one from its `pyvenv.cfg`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::installer::{Installer, InstallerKind, run_tool};
use crate::interpreter::{Interpreter, PythonRequest};
use crate::probe_cache::ProbeCache;

/// Most bytes of a `pyvenv.cfg` read (a real one is a few lines).
pub(crate) const PYVENV_CFG_MAX: u64 = 64 * 1024;
/// An existing virtual environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Venv {
    root: PathBuf,
    config: BTreeMap<String, String>,
    site_packages: PathBuf,
}

impl Venv {
    /// Creates a venv at `path` for `interpreter`: `uv venv` when `installer` is uv (fast, no
    /// pip inside), `python -m venv --without-pip` otherwise. `path` must not hold a venv yet.
    pub fn create(path: &Path, interpreter: &Interpreter, installer: &Installer) -> Result<Venv> {
        let started = Instant::now();
        let mut command = match installer.kind() {
            InstallerKind::Uv { binary, .. } => {
                let mut c = Command::new(binary);
                c.arg("venv")
                    .arg("--quiet")
                    .arg("--no-config")
                    .arg("--no-python-downloads")
                    .arg("--python")
                    .arg(&interpreter.path)
                    .arg(path)
                    .env("UV_CACHE_DIR", installer.cache_dir());
                c
            }
            InstallerKind::Pip => {
                let mut c = Command::new(&interpreter.path);
                c.arg("-m").arg("venv").arg("--without-pip").arg(path);
                c
            }
        };
        run_tool(
            &mut command,
            &format!("creating the virtual environment {}", path.display()),
        )?;
        let venv = Venv::open(path)?;
        tracing::debug!(venv = %path.display(), tool = installer.kind().name(), elapsed = ?started.elapsed(), "created venv");
        Ok(venv)
    }

    /// Opens the venv rooted at `path`, reading its `pyvenv.cfg` and locating its python and
    /// `site-packages`; no subprocess.
    pub fn open(path: &Path) -> Result<Venv> {
        let not_venv = |reason: &str| Error::NotAVenv {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let cfg_path = path.join("pyvenv.cfg");
        let text = crate::regular::read_to_string(path, &cfg_path, PYVENV_CFG_MAX)
            .map_err(|e| not_venv(&format!("cannot read pyvenv.cfg ({e})")))?;
        let config: BTreeMap<String, String> = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let root = std::path::absolute(path).map_err(Error::io("resolving", path))?;
        if !root.join("bin").join("python").exists() {
            return Err(not_venv("bin/python is missing or points nowhere"));
        }
        let site_packages = find_site_packages(&root, &config)
            .ok_or_else(|| not_venv("no lib/<python>/site-packages directory"))?;
        Ok(Venv {
            root,
            config,
            site_packages,
        })
    }

    /// The venv's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `bin/`.
    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }

    /// `bin/python`.
    pub fn python(&self) -> PathBuf {
        self.bin_dir().join("python")
    }

    /// The `site-packages` directory packages are installed into.
    pub fn site_packages(&self) -> &Path {
        &self.site_packages
    }

    /// A value from `pyvenv.cfg` (`home`, `version`, `version_info`, `uv`, ...).
    pub fn config(&self, key: &str) -> Option<&str> {
        self.config.get(key).map(String::as_str)
    }

    /// The Python version recorded in `pyvenv.cfg` (`version` or uv's `version_info`).
    pub fn python_version(&self) -> Option<&str> {
        self.config("version")
            .or_else(|| self.config("version_info"))
    }

    /// The base interpreter the venv was made from: `executable` from `pyvenv.cfg` when
    /// present, else `pythonX.Y`, `python3` or `python` in its `home` directory.
    pub fn base_python(&self) -> Option<PathBuf> {
        if let Some(exe) = self.config("executable") {
            let exe = PathBuf::from(exe);
            if exe.exists() {
                return Some(exe);
            }
        }
        let home = PathBuf::from(self.config("home")?);
        let mut names = Vec::new();
        if let Some(version) = self.python_version() {
            let mm: Vec<&str> = version.split('.').take(2).collect();
            names.push(format!("python{}", mm.join(".")));
        }
        names.push("python3".to_owned());
        names.push("python".to_owned());
        names.into_iter().map(|n| home.join(n)).find(|p| p.exists())
    }

    /// Asks the venv's python to describe its interpreter (one subprocess); this gives the
    /// marker environment used by [`crate::check()`] and [`crate::tree()`].
    pub fn interpreter(&self) -> Result<Interpreter> {
        self.interpreter_cached(&ProbeCache::none())
    }

    /// [`Venv::interpreter`], answered from `probes` while the interpreter is unchanged. The
    /// binary asked is the one the venv's python resolves to (its base interpreter, whose
    /// markers are the venv's), so every venv of one interpreter shares one answer, usually
    /// the one kept when the environment was made: no Python starts.
    pub fn interpreter_cached(&self, probes: &ProbeCache) -> Result<Interpreter> {
        let python = self.python();
        let binary = std::fs::canonicalize(&python).map_err(Error::io("resolving", &python))?;
        Interpreter::find_cached(&PythonRequest::Path(binary), probes)
    }
}

fn find_site_packages(root: &Path, config: &BTreeMap<String, String>) -> Option<PathBuf> {
    let lib = root.join("lib");
    let version = config
        .get("version")
        .or_else(|| config.get("version_info"))
        .map(|v| v.split('.').take(2).collect::<Vec<_>>().join("."));
    if let Some(mm) = version {
        let direct = lib.join(format!("python{mm}")).join("site-packages");
        if direct.is_dir() {
            return Some(direct);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found.into_iter().next()
}
