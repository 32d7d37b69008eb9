//! The project as a suite sees it under `project = "copy"`: a real copy of the project tree
//! (reflinked where the filesystem supports `FICLONE`, never hard-linked, since a write through
//! a hard link would change the user's file), without `.git`, `target/`, `.ptest/`, other
//! tools' environments and caches (`.tox/`, `.nox/`, `.venv/`, `__pycache__/`,
//! `.pytest_cache/`, `.mypy_cache/`) and what `.ptestignore` lists. Under `project =
//! "overlay"` the same rules say what the overlay hides ([`ignored_paths`]).
//!
//! `.ptestignore` holds one pattern a line (`#` starts a comment): a pattern without a `/`
//! matches a file or directory of that name anywhere (`*` and `?` are wildcards); one with a
//! `/` is a path from the project directory (`/build`, `docs/out`); a trailing `/` matches
//! directories only.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ptest_core::beneath::Beneath;

/// The file of extra ignore patterns, read from the project directory.
pub const IGNORE_FILE: &str = ".ptestignore";

/// What the copy skips.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    glob: String,
    anchored: bool,
    dir_only: bool,
}

impl IgnoreRules {
    /// The built-in rules plus the project's `.ptestignore`, if it has one.
    pub fn for_project(dir: &Path) -> io::Result<Self> {
        // Version control, build output, ptest's own directory, and the caches and
        // environments other tools keep in a project (a suite gets its own from ptest).
        let mut text = String::from(
            ".git\n/target/\n/.ptest/\n.tox/\n.nox/\n.venv/\n__pycache__/\n.pytest_cache/\n.mypy_cache/\n",
        );
        match fs::read_to_string(dir.join(IGNORE_FILE)) {
            Ok(extra) => text.push_str(&extra),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Self::parse(&text))
    }

    /// Rules from `.ptestignore`-style text.
    pub fn parse(text: &str) -> Self {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let dir_only = line.ends_with('/');
                let line = line.trim_end_matches('/');
                let anchored = line.contains('/');
                Pattern {
                    glob: line.trim_start_matches('/').to_owned(),
                    anchored,
                    dir_only,
                }
            })
            .filter(|p| !p.glob.is_empty())
            .collect();
        Self { patterns }
    }

    /// Whether `relative` (a path from the project directory, `/`-separated) is skipped.
    pub fn ignores(&self, relative: &str, is_dir: bool) -> bool {
        let name = relative.rsplit('/').next().unwrap_or(relative);
        self.patterns.iter().any(|p| {
            (!p.dir_only || is_dir)
                && if p.anchored {
                    glob(&p.glob, relative)
                } else {
                    glob(&p.glob, name)
                }
        })
    }
}

/// Whether `text` matches `pattern` (`*` any run of characters except `/`, `?` one).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' && t[ti] != '/' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star
            && t[mark] != '/'
        {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Files copied.
    pub files: u64,
    /// Of those, files cloned by reflink (shared extents until written).
    pub reflinked: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Copies the tree under `src` into the directory `dst`, skipping what `rules` ignore.
/// Symlinks are copied as symlinks; sockets and other special files are skipped. `dst` is
/// in an environment's root: everything is created beneath its descriptor, new (`O_EXCL`,
/// no symlink followed), so nothing the environment's command put there is written through.
pub fn copy_tree(src: &Path, dst: &Beneath, rules: &IgnoreRules) -> io::Result<CopyStats> {
    let mut stats = CopyStats::default();
    walk(src, rules, |entry| {
        let Entry::Kept { from, rel, kind } = entry else {
            return Ok(());
        };
        let to = Path::new(rel);
        if kind.is_dir() {
            let mode = fs::symlink_metadata(from)
                .map_err(|e| at(e, from))?
                .permissions()
                .mode();
            let made = dst.make_dir(to, 0o700)?;
            rustix::fs::fchmod(made.fd(), rustix::fs::Mode::from_raw_mode(mode & 0o7777))
                .map_err(|e| at(e.into(), from))?;
        } else if kind.is_symlink() {
            let target = fs::read_link(from).map_err(|e| at(e, from))?;
            dst.symlink(&target, to)?;
        } else if kind.is_file() {
            let (bytes, reflinked) = copy_file(from, dst, to)?;
            stats.files += 1;
            stats.bytes += bytes;
            stats.reflinked += u64::from(reflinked);
        }
        Ok(())
    })?;
    Ok(stats)
}

/// The paths under `src` (relative to it) that `rules` ignore, outermost only: what a view
/// of the whole tree must hide to show what [`copy_tree`] would copy.
pub fn ignored_paths(src: &Path, rules: &IgnoreRules) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(src, rules, |entry| {
        if let Entry::Ignored { rel } = entry {
            out.push(PathBuf::from(rel));
        }
        Ok(())
    })?;
    out.sort();
    Ok(out)
}

/// A fingerprint of what a copy of `src` would hold: every kept entry's path, kind, size and
/// modification time (nothing is read), plus git's `HEAD`, `index` and `packed-refs` (a build
/// that takes its version from git changes with them). Equal fingerprints mean a build of
/// the project would see the same files.
pub fn fingerprint(src: &Path, rules: &IgnoreRules) -> io::Result<u64> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let stat = |path: &Path, rel: &str| {
        let meta = fs::symlink_metadata(path).map_err(|e| at(e, path))?;
        let seen = (meta.mode(), meta.len(), meta.mtime(), meta.mtime_nsec());
        io::Result::Ok((rel.to_owned(), seen))
    };
    let mut seen = Vec::new();
    walk(src, rules, |entry| {
        if let Entry::Kept { from, rel, .. } = entry {
            seen.push(stat(from, rel)?);
        }
        Ok(())
    })?;
    for git in [".git/HEAD", ".git/index", ".git/packed-refs"] {
        let path = src.join(git);
        if path.exists() {
            seen.push(stat(&path, git)?);
        }
    }
    // Directory order is the filesystem's: sorted, the same tree hashes the same.
    seen.sort();
    let mut hasher = std::hash::DefaultHasher::new();
    seen.hash(&mut hasher);
    Ok(hasher.finish())
}

/// One entry met by [`walk`].
enum Entry<'a> {
    /// Skipped by the rules (and, for a directory, not entered).
    Ignored { rel: &'a str },
    /// Kept; directories are entered after this.
    Kept {
        from: &'a Path,
        rel: &'a str,
        kind: fs::FileType,
    },
}

/// Visits the tree under `src`, parents before children, without following symlinks. Names
/// that are not UTF-8 cannot be matched or reported and are left out.
fn walk(
    src: &Path,
    rules: &IgnoreRules,
    mut visit: impl FnMut(Entry<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let mut stack: Vec<(PathBuf, String)> = vec![(src.to_owned(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| at(e, &dir))? {
            let entry = entry.map_err(|e| at(e, &dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let child_rel = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            let from = entry.path();
            let kind = entry.file_type().map_err(|e| at(e, &from))?;
            if rules.ignores(&child_rel, kind.is_dir()) {
                visit(Entry::Ignored { rel: &child_rel })?;
                continue;
            }
            visit(Entry::Kept {
                from: &from,
                rel: &child_rel,
                kind,
            })?;
            if kind.is_dir() {
                stack.push((from, child_rel));
            }
        }
    }
    Ok(())
}

/// Copies one file to the new file `to` beneath `dst`, by reflink when the filesystem can;
/// returns (bytes, reflinked).
fn copy_file(from: &Path, dst: &Beneath, to: &Path) -> io::Result<(u64, bool)> {
    let mut source = fs::File::open(from).map_err(|e| at(e, from))?;
    let meta = source.metadata().map_err(|e| at(e, from))?;
    let mut target = dst.create_new(to, 0o600)?;
    let reflinked = rustix::fs::ioctl_ficlone(&target, &source).is_ok();
    if !reflinked {
        // std's copy between files uses copy_file_range/sendfile: a real copy of the content.
        io::copy(&mut source, &mut target).map_err(|e| at(e, from))?;
    }
    target
        .set_permissions(fs::Permissions::from_mode(meta.permissions().mode()))
        .map_err(|e| at(e, from))?;
    Ok((meta.len(), reflinked))
}

fn at(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn globs_match_names_and_anchored_paths() {
        let rules = IgnoreRules::parse("*.log\n/build/\ndocs/out\n# comment\nnode_modules/\n");
        assert!(rules.ignores("x.log", false));
        assert!(rules.ignores("a/b/y.log", false));
        assert!(rules.ignores("build", true));
        assert!(!rules.ignores("src/build", true));
        assert!(rules.ignores("docs/out", false));
        assert!(rules.ignores("web/node_modules", true));
        assert!(!rules.ignores("node_modules", false));
        assert!(!rules.ignores("main.py", false));
    }

    #[test]
    fn copy_skips_ignored_and_is_independent_of_the_source() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        fs::create_dir_all(src.join(".git")).unwrap();
        fs::create_dir_all(src.join("target")).unwrap();
        fs::create_dir_all(src.join("pkg/target")).unwrap();
        fs::write(src.join(".git/HEAD"), "ref").unwrap();
        fs::write(src.join("target/big"), "x").unwrap();
        fs::write(src.join("pkg/target/kept"), "k").unwrap();
        fs::write(src.join("a.txt"), "a").unwrap();
        fs::write(src.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(src.join("junk.tmp"), "j").unwrap();
        fs::write(src.join(IGNORE_FILE), "*.tmp\n").unwrap();
        std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
        fs::create_dir(&dst).unwrap();
        let into = Beneath::open(&dst).unwrap();

        let rules = IgnoreRules::for_project(&src).unwrap();
        assert_eq!(
            ignored_paths(&src, &rules).unwrap(),
            [".git", "junk.tmp", "target"].map(PathBuf::from),
            "outermost ignored paths only, nothing under them"
        );
        let stats = copy_tree(&src, &into, &rules).unwrap();
        assert_eq!(
            stats.files, 4,
            "a.txt, run.sh, .ptestignore, pkg/target/kept"
        );
        assert!(!dst.join(".git").exists());
        assert!(!dst.join("target").exists());
        assert!(!dst.join("junk.tmp").exists());
        assert!(dst.join("pkg/target/kept").is_file());
        assert_eq!(fs::read_link(dst.join("link")).unwrap(), Path::new("a.txt"));
        let mode = fs::metadata(dst.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);

        fs::write(dst.join("a.txt"), "changed").unwrap();
        assert_eq!(fs::read_to_string(src.join("a.txt")).unwrap(), "a");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(src.join("a.txt")).unwrap().nlink(), 1);
    }
}
