//! Putting a venv back exactly as it was after a failed install.
//!
//! uv and pip resolve and download before they touch a venv, but an install can still fail
//! half-way (uv removes the old version of a package, then cannot write the new one), so
//! the venv is saved first. [`VenvBackup::take`] records every entry of the venv (directories
//! with their mode, symbolic links with their target, files with their inode) and keeps
//! each file alive by a hard link in one flat directory (copied where links are not
//! possible). [`VenvBackup::restore`] removes what is new or replaced and links the saved
//! files back: the venv has the same entries with the same inodes as before. A hard-linked
//! tree of the venv would do the same, but removing it costs a directory removal per
//! directory of the venv (on ext4 with `discard`, over a second for a venv with pandas); one
//! flat directory is removed at the cost of its links alone.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirEntryExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A saved venv, until restored or discarded.
#[derive(Debug)]
pub struct VenvBackup {
    venv: PathBuf,
    dir: PathBuf,
    /// Every entry under the venv, parents before children.
    entries: Vec<(PathBuf, Saved)>,
}

/// One entry as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Saved {
    Dir {
        mode: u32,
    },
    Symlink {
        target: PathBuf,
    },
    /// Kept as `<backup dir>/<index>`; `ino` is the inode the venv had at that path.
    File {
        index: usize,
        ino: u64,
    },
}

impl VenvBackup {
    /// Saves the venv at `venv` into `dir`, which must not exist (it is created, and removed
    /// when the backup is restored or discarded).
    pub fn take(venv: &Path, dir: &Path) -> Result<VenvBackup> {
        fs::create_dir(dir).map_err(Error::io("creating", dir))?;
        let mut backup = VenvBackup {
            venv: venv.to_owned(),
            dir: dir.to_owned(),
            entries: Vec::new(),
        };
        let mut links_refused = false;
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            let here = venv.join(&relative);
            let listing = fs::read_dir(&here).map_err(Error::io("reading", &here))?;
            for entry in listing {
                let entry = entry.map_err(Error::io("reading", &here))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(Error::io("reading", &path))?;
                let name = relative.join(entry.file_name());
                let saved = if kind.is_dir() {
                    pending.push(name.clone());
                    let meta = fs::symlink_metadata(&path).map_err(Error::io("reading", &path))?;
                    Saved::Dir {
                        mode: meta.permissions().mode(),
                    }
                } else if kind.is_symlink() {
                    Saved::Symlink {
                        target: fs::read_link(&path).map_err(Error::io("reading link", &path))?,
                    }
                } else {
                    let index = backup.entries.len();
                    let kept = dir.join(index.to_string());
                    keep(&path, &kept, &mut links_refused)?;
                    Saved::File {
                        index,
                        ino: entry.ino(),
                    }
                };
                backup.entries.push((name, saved));
            }
        }
        Ok(backup)
    }

    /// Puts the venv back as it was when saved, then removes the backup.
    pub fn restore(self) -> Result<()> {
        let wanted: HashMap<&Path, &Saved> =
            self.entries.iter().map(|(p, s)| (p.as_path(), s)).collect();
        self.remove_changed(Path::new(""), &wanted)?;
        for (relative, saved) in &self.entries {
            let path = self.venv.join(relative);
            if fs::symlink_metadata(&path).is_ok() {
                continue; // unchanged, kept by `remove_changed`
            }
            match saved {
                Saved::Dir { mode } => {
                    fs::create_dir(&path).map_err(Error::io("creating", &path))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
                        .map_err(Error::io("setting permissions of", &path))?;
                }
                Saved::Symlink { target } => std::os::unix::fs::symlink(target, &path)
                    .map_err(Error::io("creating link", &path))?,
                Saved::File { index, .. } => {
                    keep(&self.dir.join(index.to_string()), &path, &mut false)?;
                }
            }
        }
        tracing::debug!(venv = %self.venv.display(), "venv restored from its backup");
        self.discard()
    }

    /// Removes the backup, leaving the venv as it is.
    pub fn discard(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).map_err(Error::io("removing", &self.dir))
    }

    /// Removes, under `relative`, every entry that was not there when saved or is not the
    /// same one (another inode, another link target, another kind).
    fn remove_changed(&self, relative: &Path, wanted: &HashMap<&Path, &Saved>) -> Result<()> {
        let here = self.venv.join(relative);
        let listing = fs::read_dir(&here).map_err(Error::io("reading", &here))?;
        for entry in listing {
            let entry = entry.map_err(Error::io("reading", &here))?;
            let path = entry.path();
            let name = relative.join(entry.file_name());
            let kind = entry.file_type().map_err(Error::io("reading", &path))?;
            let same = match wanted.get(name.as_path()) {
                Some(Saved::Dir { .. }) => kind.is_dir(),
                Some(Saved::Symlink { target }) => {
                    kind.is_symlink() && fs::read_link(&path).is_ok_and(|t| &t == target)
                }
                Some(Saved::File { ino, .. }) => kind.is_file() && entry.ino() == *ino,
                None => false,
            };
            if same && kind.is_dir() {
                self.remove_changed(&name, wanted)?;
            } else if !same && kind.is_dir() {
                fs::remove_dir_all(&path).map_err(Error::io("removing", &path))?;
            } else if !same {
                fs::remove_file(&path).map_err(Error::io("removing", &path))?;
            }
        }
        Ok(())
    }
}

/// Makes `to` the file `from` by a hard link, or by a copy once links were refused (another
/// file system, or `protected_hardlinks`).
fn keep(from: &Path, to: &Path, links_refused: &mut bool) -> Result<()> {
    if !*links_refused {
        match fs::hard_link(from, to) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(18) || e.kind() == ErrorKind::PermissionDenied => {
                *links_refused = true;
            }
            Err(e) => return Err(Error::io("hard-linking", to)(e)),
        }
    }
    fs::copy(from, to)
        .map(drop)
        .map_err(Error::io("copying", to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tree(root: &Path) -> Vec<(PathBuf, String, u64)> {
        let mut out = Vec::new();
        let mut pending = vec![root.to_owned()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).expect("read") {
                let path = entry.expect("entry").path();
                let meta = fs::symlink_metadata(&path).expect("stat");
                let what = if meta.is_dir() {
                    pending.push(path.clone());
                    format!("dir {:o}", meta.permissions().mode())
                } else if meta.file_type().is_symlink() {
                    format!("link {}", fs::read_link(&path).expect("link").display())
                } else {
                    fs::read_to_string(&path).expect("read")
                };
                let ino = if meta.is_file() { meta.ino() } else { 0 };
                out.push((
                    path.strip_prefix(root).expect("under").to_owned(),
                    what,
                    ino,
                ));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn restore_undoes_removals_additions_and_replacements() {
        let dir = tempfile::tempdir().expect("tempdir");
        let venv = dir.path().join("venv");
        let pkg = venv.join("lib/site-packages/pkg");
        fs::create_dir_all(&pkg).expect("mkdir");
        fs::write(pkg.join("__init__.py"), "old").expect("write");
        fs::write(venv.join("lib/site-packages/keep.py"), "kept").expect("write");
        std::os::unix::fs::symlink("lib", venv.join("lib64")).expect("symlink");
        let before = tree(&venv);

        let backup = VenvBackup::take(&venv, &dir.path().join("backup")).expect("take");
        // What a half-done install leaves: the old package removed, a new one half-written,
        // a file replaced by a new one, a link changed.
        fs::remove_dir_all(&pkg).expect("rm");
        fs::create_dir_all(venv.join("lib/site-packages/new")).expect("mkdir");
        fs::write(venv.join("lib/site-packages/new/x.py"), "new").expect("write");
        fs::remove_file(venv.join("lib/site-packages/keep.py")).expect("rm");
        fs::write(venv.join("lib/site-packages/keep.py"), "replaced").expect("write");
        fs::remove_file(venv.join("lib64")).expect("rm");
        std::os::unix::fs::symlink("elsewhere", venv.join("lib64")).expect("symlink");
        assert_ne!(tree(&venv), before);

        backup.restore().expect("restore");
        assert_eq!(tree(&venv), before, "same entries, contents and inodes");
        assert!(!dir.path().join("backup").exists(), "the backup is removed");
    }

    #[test]
    fn discard_leaves_the_venv_as_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let venv = dir.path().join("venv");
        fs::create_dir_all(venv.join("bin")).expect("mkdir");
        fs::write(venv.join("bin/tool"), "one").expect("write");
        let backup = VenvBackup::take(&venv, &dir.path().join("backup")).expect("take");
        fs::write(venv.join("bin/other"), "two").expect("write");
        let after = tree(&venv);
        backup.discard().expect("discard");
        assert_eq!(tree(&venv), after);
        assert!(!dir.path().join("backup").exists());
    }
}
