//! A stable path to a venv for the time uv works on it.
//!
//! uv keeps what an interpreter said about itself under the path it was given. Every
//! environment's venv has a path of its own, so each install into a new environment would make
//! uv start that venv's python once (a Python start-up, 20–60 ms, most of a small install) to
//! learn what it already knows. Giving uv a symbolic link that always has the same path, one
//! per venv configuration (`<dir>/<hash of pyvenv.cfg>/<n>`, pointed at the venv and held under
//! a lock while in use), lets it answer from its cache. Python takes a venv's prefix from the
//! path it was started by, so what uv writes naming that prefix (the `#!` lines of the scripts
//! it puts in `bin/`) names the link: [`VenvLink::release`] rewrites those files to name the
//! venv itself, as a new file renamed into place (a hard-linked file is never edited).

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use sha2::{Digest, Sha256};

use crate::clone::replace_paths;
use crate::error::{Error, Result};
use crate::venv::Venv;

/// A link to a venv at a stable path, held (locked) until released.
#[derive(Debug)]
pub(crate) struct VenvLink {
    link: PathBuf,
    venv: PathBuf,
    /// Holds the lock on `<n>.lock`; dropping it lets the next install use the link.
    _lock: File,
}

impl VenvLink {
    /// Takes the first free link for venvs configured like `venv` under `dir` and points it
    /// at `venv`.
    pub(crate) fn acquire(dir: &Path, venv: &Venv) -> Result<VenvLink> {
        let dir = dir.join(config_key(venv)?);
        fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
        for n in 0.. {
            let lock_path = dir.join(format!("{n}.lock"));
            let lock = File::create(&lock_path).map_err(Error::io("creating", &lock_path))?;
            match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => continue,
                Err(e) => return Err(Error::io("locking", &lock_path)(e.into())),
            }
            let link = dir.join(n.to_string());
            match fs::remove_file(&link) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", &link)(e)),
            }
            std::os::unix::fs::symlink(venv.root(), &link)
                .map_err(Error::io("creating link", &link))?;
            return Ok(VenvLink {
                link,
                venv: venv.root().to_owned(),
                _lock: lock,
            });
        }
        unreachable!("the range of link numbers is unbounded")
    }

    /// The venv's python through the link.
    pub(crate) fn python(&self) -> PathBuf {
        self.link.join("bin").join("python")
    }

    /// Makes every script in `bin/` and `.pth` file in `site-packages` that names the link
    /// name the venv instead, removes the link and frees it. Returns the files rewritten,
    /// relative to the venv.
    pub(crate) fn release(self, venv: &Venv) -> Result<Vec<PathBuf>> {
        let olds = [self.link.to_string_lossy().into_owned()];
        let new = self.venv.to_string_lossy();
        let mut rewritten = Vec::new();
        for (dir, wanted) in [
            (venv.bin_dir(), None),
            (venv.site_packages().to_owned(), Some("pth")),
        ] {
            let entries = fs::read_dir(&dir).map_err(Error::io("reading", &dir))?;
            for entry in entries {
                let entry = entry.map_err(Error::io("reading", &dir))?;
                let path = entry.path();
                let is_file = entry.file_type().is_ok_and(|t| t.is_file());
                let extension_fits =
                    wanted.is_none_or(|ext| path.extension().is_some_and(|e| e == ext));
                if !is_file || !extension_fits {
                    continue;
                }
                let bytes = fs::read(&path).map_err(Error::io("reading", &path))?;
                if let Some(text) = replace_paths(&bytes, &olds, &new) {
                    replace_file(&path, &text)?;
                    rewritten.push(path.strip_prefix(&self.venv).unwrap_or(&path).to_owned());
                }
            }
        }
        match fs::remove_file(&self.link) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", &self.link)(e)),
        }
        Ok(rewritten)
    }
}

/// Writes `text` to a new file beside `path` with its permissions, then renames it over
/// `path`, so a file shared by hard link with another venv or a cache is left as it was.
fn replace_file(path: &Path, text: &[u8]) -> Result<()> {
    let mode = fs::metadata(path)
        .map_err(Error::io("reading", path))?
        .permissions()
        .mode();
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let staging = path.with_file_name(format!(".{name}.ptest-{}", std::process::id()));
    fs::write(&staging, text).map_err(Error::io("writing", &staging))?;
    fs::set_permissions(&staging, fs::Permissions::from_mode(mode))
        .map_err(Error::io("setting permissions of", &staging))?;
    fs::rename(&staging, path).map_err(Error::io("renaming", &staging))
}

/// What uv's cached answer for a link depends on: the venv's `pyvenv.cfg` (base interpreter,
/// version, system site-packages), without the lines naming the venv itself (`command`, which
/// `python -m venv` writes, and `prompt`).
fn config_key(venv: &Venv) -> Result<String> {
    let cfg = venv.root().join("pyvenv.cfg");
    let text = crate::regular::read_to_string(venv.root(), &cfg, crate::venv::PYVENV_CFG_MAX)
        .map_err(Error::io("reading", &cfg))?;
    let mut digest = Sha256::new();
    for line in text.lines() {
        let key = line.split_once('=').map_or(line, |(k, _)| k).trim();
        if key != "command" && key != "prompt" {
            digest.update(line.as_bytes());
            digest.update(b"\n");
        }
    }
    Ok(digest.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
