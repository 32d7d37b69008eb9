//! Cloning a finished venv to a new location by copies (reflinked by the kernel where the file
//! system can share extents: `copy_file_range` on btrfs, xfs, bcachefs; byte copies on ext4).
//!
//! Never by hard links: a hard-linked file is one inode in both venvs, so a command that
//! appends to its environment's `six.py` would change every other environment's, and the
//! template's (issue 23). A venv knows its own absolute path in a few places: the shebang
//! lines of the scripts in `bin/`, `VIRTUAL_ENV` in the `activate*` scripts, and possibly
//! `.pth` files. Those files are written with the path replaced. Symbolic links are recreated
//! as they are (`bin/python` points at the base interpreter, `lib64` at `lib`).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::venv::Venv;

/// What a clone did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CloneReport {
    /// Files copied (or reflinked: the kernel decides).
    pub copied: usize,
    /// Files written anew with the venv path replaced, relative to the venv root.
    pub rewritten: Vec<PathBuf>,
    /// Symbolic links recreated.
    pub symlinks: usize,
}

/// Clones the venv at `src` into `dst` (which must not exist, or be an empty directory) and
/// returns the new venv with what was done.
pub fn clone_venv(src: &Path, dst: &Path) -> Result<(Venv, CloneReport)> {
    let source = Venv::open(src)?;
    let src_root = source.root().to_owned();
    if dst.exists() {
        let empty = fs::read_dir(dst)
            .map_err(Error::io("reading", dst))?
            .next()
            .is_none();
        if !empty {
            return Err(Error::DestinationExists(dst.to_owned()));
        }
    }
    let dst_root = std::path::absolute(dst).map_err(Error::io("resolving", dst))?;
    let mut old_paths = vec![src_root.to_string_lossy().into_owned()];
    if let Ok(canonical) = fs::canonicalize(&src_root) {
        let canonical = canonical.to_string_lossy().into_owned();
        if !old_paths.contains(&canonical) {
            old_paths.push(canonical);
        }
    }
    let mut cloner = Cloner {
        src_root: &src_root,
        dst_root: &dst_root,
        old_paths,
        new_path: dst_root.to_string_lossy().into_owned(),
        report: CloneReport::default(),
    };
    cloner.dir(&src_root, &dst_root)?;
    let report = cloner.report;
    tracing::debug!(src = %src_root.display(), dst = %dst_root.display(), ?report, "cloned venv");
    Ok((Venv::open(&dst_root)?, report))
}

struct Cloner<'a> {
    src_root: &'a Path,
    dst_root: &'a Path,
    /// Spellings of the source root to replace (as given, and canonical).
    old_paths: Vec<String>,
    new_path: String,
    report: CloneReport,
}

impl Cloner<'_> {
    fn dir(&mut self, src: &Path, dst: &Path) -> Result<()> {
        let mode = fs::symlink_metadata(src)
            .map_err(Error::io("reading", src))?
            .permissions()
            .mode();
        match fs::create_dir(dst) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists && dst == self.dst_root => {}
            Err(e) => return Err(Error::io("creating", dst)(e)),
        }
        fs::set_permissions(dst, fs::Permissions::from_mode(mode))
            .map_err(Error::io("setting permissions of", dst))?;
        let mut entries: Vec<_> = fs::read_dir(src)
            .map_err(Error::io("reading", src))?
            .collect::<std::result::Result<_, _>>()
            .map_err(Error::io("reading", src))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let from = entry.path();
            let to = dst.join(entry.file_name());
            let kind = entry.file_type().map_err(Error::io("reading", &from))?;
            if kind.is_symlink() {
                let target = fs::read_link(&from).map_err(Error::io("reading link", &from))?;
                let target = self.rewrite_link_target(&target);
                std::os::unix::fs::symlink(&target, &to)
                    .map_err(Error::io("creating link", &to))?;
                self.report.symlinks += 1;
            } else if kind.is_dir() {
                self.dir(&from, &to)?;
            } else if kind.is_file() {
                self.file(&from, &to)?;
            }
        }
        Ok(())
    }

    /// A link pointing inside the source venv by absolute path (any spelling of it) points
    /// inside the clone.
    fn rewrite_link_target(&self, target: &Path) -> PathBuf {
        if target.is_absolute() {
            for old in &self.old_paths {
                if let Ok(rest) = target.strip_prefix(old) {
                    return self.dst_root.join(rest);
                }
            }
        }
        target.to_owned()
    }

    fn needs_rewrite(&self, from: &Path) -> bool {
        let relative = from.strip_prefix(self.src_root).unwrap_or(from);
        let in_bin = relative.parent() == Some(Path::new("bin"));
        let is_pth = from.extension().is_some_and(|e| e == "pth");
        in_bin || is_pth
    }

    fn file(&mut self, from: &Path, to: &Path) -> Result<()> {
        if self.needs_rewrite(from) {
            let bytes = fs::read(from).map_err(Error::io("reading", from))?;
            if let Some(rewritten) = self.replace_paths(&bytes) {
                let mode = fs::metadata(from)
                    .map_err(Error::io("reading", from))?
                    .permissions()
                    .mode();
                fs::write(to, rewritten).map_err(Error::io("writing", to))?;
                fs::set_permissions(to, fs::Permissions::from_mode(mode))
                    .map_err(Error::io("setting permissions of", to))?;
                let relative = to.strip_prefix(self.dst_root).unwrap_or(to).to_owned();
                self.report.rewritten.push(relative);
                return Ok(());
            }
        }
        fs::copy(from, to).map_err(Error::io("copying", to))?;
        self.report.copied += 1;
        Ok(())
    }

    /// The content with every spelling of the old root replaced, or `None` when it holds none
    /// (or is binary).
    fn replace_paths(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        replace_paths(bytes, &self.old_paths, &self.new_path)
    }
}

/// `bytes` with every path in `olds` (a whole path or a prefix of one) replaced by `new`, or
/// `None` when it holds none of them or is binary.
pub(crate) fn replace_paths(bytes: &[u8], olds: &[String], new: &str) -> Option<Vec<u8>> {
    if bytes.starts_with(b"\x7fELF") || bytes.iter().take(8192).any(|b| *b == 0) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let mut out = text.to_owned();
    let mut changed = false;
    // Longest spelling first, so a canonical path containing the other is not cut.
    let mut olds = olds.to_vec();
    olds.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for old in &olds {
        if out.contains(old.as_str()) {
            out = replace_whole_path(&out, old, new);
            changed = true;
        }
    }
    changed.then(|| out.into_bytes())
}

/// Replaces `old` where it is a whole path or a path prefix (followed by `/`, a quote,
/// whitespace or the end), so `/tmp/venv` does not touch `/tmp/venv2`.
fn replace_whole_path(text: &str, old: &str, new: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(index) = rest.find(old) {
        let after = &rest[index + old.len()..];
        let boundary = after
            .chars()
            .next()
            .is_none_or(|c| c == '/' || c == '"' || c == '\'' || c.is_whitespace() || c == ':');
        out.push_str(&rest[..index]);
        out.push_str(if boundary { new } else { old });
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_whole_paths() {
        let text = "#!/tmp/venv/bin/python\nVIRTUAL_ENV='/tmp/venv'\nother=/tmp/venv2/x\n";
        assert_eq!(
            replace_whole_path(text, "/tmp/venv", "/srv/clone"),
            "#!/srv/clone/bin/python\nVIRTUAL_ENV='/srv/clone'\nother=/tmp/venv2/x\n"
        );
    }
}
