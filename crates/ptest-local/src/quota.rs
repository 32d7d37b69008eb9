//! Size- and file-count-limited roots (`--disk`, `--files`): the root is a tmpfs with `size=`
//! and `nr_inodes=`, mounted on the host at the root's path when the environment is created
//! (marker and anatomy made inside it) and unmounted when it is removed, before the directory
//! is deleted. The kernel enforces both limits: a write past either fails with `ENOSPC`.
//!
//! A tmpfs rather than a loop-mounted image: nothing to format, no loop device, no file the
//! size of the quota on the host disk, and both limits come with it. The price: the content
//! lives in memory (and swap) and counts against the environment's `--memory` when written
//! from inside it, and it does not survive a reboot of the host.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ptest_core::{EnvId, EnvironmentSpec, Error, Result, root};
use ptest_sandbox::tmpfs::{self, TmpfsLimits};

use crate::isolation::{HostCaps, resolve};

/// Inodes ptest itself makes in a root: the root directory, the marker, the anatomy and
/// [`SHM_DIR`].
const OWN_INODES: u64 = 3 + root::ANATOMY.len() as u64;

/// The directory of a size-limited root shown as the pod's `/dev/shm` (its `tmp/` is the
/// pod's `/tmp`), so that scratch space counts against `--disk` and `--files` too.
pub(crate) const SHM_DIR: &str = "shm";

/// The tmpfs source naming environment `id`'s root in `/proc/self/mountinfo`.
fn source(id: &EnvId) -> String {
    format!("ptest-env-{id}")
}

/// The limits to mount `spec`'s root with: those it asks for, if this host applies them
/// (with `--allow-degraded` on a host that cannot, none).
pub(crate) fn planned(spec: &EnvironmentSpec, path: &Path, id: &EnvId) -> Option<TmpfsLimits> {
    resolve(spec, HostCaps::get())
        .ok()
        .filter(|iso| iso.quota)
        .and_then(|_| limits(spec, path, id))
}

/// The limits `spec` asks for, if any: `--files N` lets the environment make N files and
/// directories of its own, besides what ptest makes.
fn limits(spec: &EnvironmentSpec, path: &Path, id: &EnvId) -> Option<TmpfsLimits> {
    let l = &spec.limits;
    (l.disk.is_some() || l.files.is_some()).then(|| TmpfsLimits {
        bytes: l.disk.map(|d| d.0),
        inodes: l
            .files
            .map(|f| f.saturating_add(OWN_INODES + mount_points_in_tmp(path, id))),
    })
}

/// Directories the pod makes in the root's `tmp/` (its `/tmp`) as mount points: a root, or
/// ptest's home masked around it, beneath `/tmp` is mounted at its host path through `/tmp`
/// (beneath a mask, in the mask's own tmpfs).
fn mount_points_in_tmp(root: &Path, id: &EnvId) -> u64 {
    let masks = crate::sandbox::masks(root, id);
    let mut dirs = std::collections::BTreeSet::new();
    for target in masks.iter().map(PathBuf::as_path).chain([root]) {
        let Ok(rest) = target.strip_prefix("/tmp") else {
            continue;
        };
        let mut dir = PathBuf::from("/tmp");
        for component in rest.components() {
            if masks.iter().any(|m| dir.starts_with(m)) {
                break;
            }
            dir.push(component);
            dirs.insert(dir.clone());
        }
    }
    dirs.len() as u64
}

fn mount_error(path: &Path, e: ptest_sandbox::Error) -> Error {
    Error::Root {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Creates environment `id`'s root at `path`: a plain directory, or with `limits` a tmpfs
/// mounted there first.
pub(crate) fn create(path: &Path, id: &EnvId, limits: Option<TmpfsLimits>) -> Result<()> {
    let Some(limits) = limits else {
        return root::create(path, id);
    };
    if !root::check_available(path)? {
        fs::create_dir_all(path).map_err(|e| Error::io("creating", path, e))?;
    }
    if tmpfs::mount_at(path)
        .map_err(|e| mount_error(path, e))?
        .is_some()
    {
        return Err(Error::Root {
            path: path.to_owned(),
            reason: "is already a mount point; give a directory that is not".into(),
        });
    }
    tmpfs::mount_tmpfs(path, &source(id), limits).map_err(|e| mount_error(path, e))?;
    let made = root::create(path, id).and_then(|()| {
        let shm = path.join(SHM_DIR);
        fs::create_dir(&shm).map_err(|e| Error::io("creating", &shm, e))?;
        fs::set_permissions(&shm, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .map_err(|e| Error::io("setting the mode of", &shm, e))
    });
    made.inspect_err(|_| {
        let _ = tmpfs::unmount(path);
    })
}

/// Removes environment `id`'s root at `path`: unmounts its tmpfs when it has one (only if the
/// marker names `id` and the mount is the one made for `id`), then deletes the directory.
pub(crate) fn remove(path: &Path, id: &EnvId) -> Result<()> {
    let mounted = tmpfs::mount_at(path).map_err(|e| mount_error(path, e))?;
    let Some(mount) = mounted.filter(|m| m.fstype == "tmpfs" && m.source == source(id)) else {
        return root::remove(path, id);
    };
    match root::marker_id(path) {
        Some(found) if found == id.as_str() => {}
        other => {
            return Err(Error::Root {
                path: path.to_owned(),
                reason: format!(
                    "its marker names {}, not {id}; not unmounting it",
                    other.as_deref().unwrap_or("nothing")
                ),
            });
        }
    }
    tmpfs::unmount(&mount.target).map_err(|e| mount_error(path, e))?;
    // What is left is the mount point: empty unless something was put there underneath.
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("deleting", path, e)),
    }
}
