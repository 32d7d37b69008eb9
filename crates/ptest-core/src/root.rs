//! Environment roots on the host: created with a marker naming their id, deleted only when the
//! marker matches, never following a symlink out.

use std::fs;
use std::io::ErrorKind as IoKind;
use std::path::Path;

use ptest_sandbox::tmpfs;

use crate::beneath::Beneath;
use crate::error::{Error, Result};
use crate::name::EnvId;

/// The marker file at the top of every root.
pub const MARKER: &str = ".ptest-env";

/// The directories every root has: working directory, HOME, TMPDIR, process output, pid files.
pub const ANATOMY: [&str; 5] = ["workspace", "home", "tmp", "logs", "run"];

/// What in a root is ptest's own: the marker, background processes' logs, pid files and
/// installs' wheels. A sandbox shows them to the environment's command read-only (bound over
/// themselves), so the command cannot replace them with links or FIFOs for ptest to meet.
pub const OWN: [&str; 3] = [MARKER, "logs", "run"];

/// Beneath [`OWN`], what the command may still write: `run/net/`, where the fault proxy (which
/// runs inside the environment) says what it applied.
pub const OWN_WRITABLE: &str = "run/net";

fn root_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Root {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Checks that `path` can become a root: it must not exist, or be an empty real directory (a
/// directory with content was not made by ptest and is left alone). Returns whether it exists.
pub fn check_available(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(root_error(
            path,
            "is a symlink; give the path of a real directory",
        )),
        Ok(meta) if !meta.is_dir() => Err(root_error(path, "exists and is not a directory")),
        Ok(_) => {
            let mut entries = fs::read_dir(path).map_err(|e| Error::io("reading", path, e))?;
            if entries.next().is_some() {
                return Err(root_error(
                    path,
                    "is a non-empty directory not made by ptest; give a new or empty directory",
                ));
            }
            Ok(true)
        }
        Err(e) if e.kind() == IoKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("inspecting", path, e)),
    }
}

/// Creates the root at `path` for environment `id` (see [`check_available`]), with its marker
/// and anatomy.
pub fn create(path: &Path, id: &EnvId) -> Result<()> {
    if !check_available(path)? {
        fs::create_dir_all(path).map_err(|e| Error::io("creating", path, e))?;
    }
    crate::failpoint::failpoint("create.root_dir");
    let marker = path.join(MARKER);
    fs::write(&marker, format!("{id}\n")).map_err(|e| Error::io("writing", &marker, e))?;
    for dir in ANATOMY.iter().chain([&OWN_WRITABLE]) {
        let dir = path.join(dir);
        fs::create_dir(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    }
    Ok(())
}

/// The id written in the marker at `path`, if any. The marker is in a tree the environment's
/// command can change: it is opened without following a symlink and without blocking (a
/// FIFO put in its place cannot hang ptest), must be a regular file of at most 64 bytes (a
/// huge sparse file costs nothing): see [`crate::beneath`].
pub fn marker_id(path: &Path) -> Option<String> {
    read_marker(path).ok()
}

/// [`marker_id`], or what was refused.
fn read_marker(path: &Path) -> std::result::Result<String, crate::beneath::Error> {
    let bytes = Beneath::open(path)?.read(Path::new(MARKER), 64)?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
}

/// Deletes the root of environment `id`. Gone already is fine. Refuses a root that is a symlink
/// or whose marker names another id. Symlinks inside are removed, never followed.
pub fn remove(path: &Path, id: &EnvId) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("inspecting", path, e)),
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(root_error(
                path,
                "has been replaced by a symlink; not deleting what it points to",
            ));
        }
        Ok(_) => {}
    }
    match marker_id(path) {
        Some(found) if found == id.as_str() => {}
        // A root ptest placed itself, `<home>/envs/<id>`, is its own whatever a command did
        // to its marker (a tampered environment can still be removed); a `--path` root
        // needs its marker.
        _ if is_home_root(path, id) => {}
        Some(found) => {
            return Err(root_error(
                path,
                format!("its marker names environment {found}, not {id}; not deleting it"),
            ));
        }
        // A create killed before it wrote the marker leaves at most empty directories of
        // the anatomy: those go (never anything with content).
        None => return remove_skeleton(path),
    }
    delete_tree(path)
}

/// Whether `path` is `<something>/envs/<id>`: where ptest puts roots in its home.
fn is_home_root(path: &Path, id: &EnvId) -> bool {
    path.file_name() == Some(id.as_str().as_ref())
        && path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "envs")
}

/// Removes an unmarked root that holds nothing but empty directories of the anatomy (what a
/// create killed before its marker leaves); anything else is refused and left.
fn remove_skeleton(path: &Path) -> Result<()> {
    let entries = fs::read_dir(path).map_err(|e| Error::io("reading", path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("reading", path, e))?;
        let name = entry.file_name();
        let empty_anatomy = ANATOMY.iter().any(|d| name == *d)
            && entry.file_type().is_ok_and(|t| t.is_dir())
            && fs::read_dir(entry.path()).is_ok_and(|mut d| d.next().is_none());
        if !empty_anatomy {
            return Err(root_error(
                path,
                format!(
                    "has no {MARKER} marker and holds {}; not deleting a directory ptest \
                     cannot prove is its own",
                    entry.path().display()
                ),
            ));
        }
    }
    for dir in ANATOMY {
        match fs::remove_dir(path.join(dir)) {
            Err(e) if e.kind() != IoKind::NotFound => {
                return Err(Error::io("deleting", path.join(dir), e));
            }
            _ => {}
        }
    }
    fs::remove_dir(path).map_err(|e| Error::io("deleting", path, e))
}

/// Deletes the tree at `path` without crossing into another filesystem: what is mounted
/// beneath it (a bind mount a user or tool made there) is detached first, lazily, so the
/// files of the mounted tree are never touched; and the walk, on directory descriptors,
/// skips any entry on another mount than the root's (a mount it could not detach) and
/// never follows a symlink. A mount left in place keeps its mount point, and the error says
/// so.
fn delete_tree(path: &Path) -> Result<()> {
    let mut kept: Vec<String> = Vec::new();
    let mounts = tmpfs::mounts_beneath(path).map_err(|e| root_error(path, e.to_string()))?;
    for mount in mounts {
        if let Err(e) = tmpfs::unmount(&mount) {
            kept.push(e.to_string());
        }
    }
    let root = Beneath::open(path)?;
    kept.extend(root.empty()?);
    drop(root);
    if !kept.is_empty() {
        return Err(root_error(
            path,
            format!(
                "holds mounts ptest could not detach: {}; left them and what leads to them in \
                 place (unmount them, then remove the environment again)",
                kept.join(", ")
            ),
        ));
    }
    fs::remove_dir(path).map_err(|e| Error::io("deleting", path, e))
}

/// Checks that the root at `path` is intact for environment `id`: its marker names `id` and
/// every directory of the anatomy is there.
pub fn check(path: &Path, id: &EnvId) -> Vec<crate::Finding> {
    let marker = read_marker(path);
    let mut out = vec![crate::Finding {
        check: "marker".into(),
        ok: marker.as_ref().is_ok_and(|m| m == id.as_str()),
        detail: match marker {
            Ok(m) => format!("{MARKER} names {m}"),
            Err(e) if e.is_not_found() => format!("{MARKER} missing under {}", path.display()),
            Err(e) => e.to_string(),
        },
    }];
    for dir in ANATOMY {
        let sub = path.join(dir);
        let is_dir = sub.symlink_metadata().is_ok_and(|m| m.is_dir());
        out.push(crate::Finding {
            check: format!("{dir}/"),
            ok: is_dir,
            detail: if is_dir {
                sub.display().to_string()
            } else {
                format!("{} is missing or not a directory", sub.display())
            },
        });
    }
    out
}

/// Bytes and entries under `path`, counting symlinks as themselves, through directory
/// descriptors (a directory swapped for a symlink while counted is not followed) and not
/// entering other mounts.
pub fn usage(path: &Path) -> std::io::Result<(u64, u64)> {
    Ok(Beneath::open(path)?.usage()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lays_out_anatomy_and_marker() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("r");
        let id = EnvId::random();
        create(&root, &id).unwrap();
        for dir in ANATOMY {
            assert!(root.join(dir).is_dir(), "{dir}");
        }
        assert_eq!(marker_id(&root).as_deref(), Some(id.as_str()));
    }

    #[test]
    fn create_refuses_foreign_non_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("precious"), "data").unwrap();
        let err = create(tmp.path(), &EnvId::random()).unwrap_err();
        assert!(err.to_string().contains("non-empty directory"), "{err}");
        assert_eq!(
            fs::read_to_string(tmp.path().join("precious")).unwrap(),
            "data"
        );
    }

    #[test]
    fn remove_deletes_link_not_target() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "x").unwrap();
        let root = tmp.path().join("root");
        let id = EnvId::random();
        create(&root, &id).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("workspace/link")).unwrap();
        remove(&root, &id).unwrap();
        assert!(!root.exists());
        assert!(outside.join("keep").exists());
    }

    #[test]
    fn remove_refuses_wrong_marker_and_symlinked_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        create(&root, &EnvId::random()).unwrap();
        assert!(remove(&root, &EnvId::random()).is_err());
        assert!(root.exists());
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        assert!(remove(&link, &EnvId::random()).is_err());
        assert!(root.join(MARKER).exists());
    }
}
