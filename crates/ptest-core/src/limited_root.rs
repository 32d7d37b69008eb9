//! Size- and file-count-limited roots (`--disk`, `--files`), for every engine whose root is a
//! host directory: the root is a tmpfs with `size=` and `nr_inodes=`, mounted on the host at
//! the root's path when the environment is created (marker, anatomy and [`SHM_DIR`] made
//! inside it) and unmounted when it is removed, before the directory is deleted. The kernel
//! enforces both limits: a write past either fails with `ENOSPC`. An environment's scratch
//! space (`/tmp` is the root's `tmp/`, `/dev/shm` its [`SHM_DIR`]) shares them.
//!
//! A tmpfs rather than a loop-mounted image: nothing to format, no loop device, no file the
//! size of the quota on the host disk, and both limits come with it. The price: the content
//! lives in memory (and swap) and counts against the environment's `--memory` when written
//! from inside it, and it does not survive a reboot of the host. Mounting needs root.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use ptest_sandbox::tmpfs::{self, TmpfsLimits};

use crate::error::{Error, Result};
use crate::model::EnvironmentSpec;
use crate::name::EnvId;
use crate::root;

/// The directory of a size-limited root shown as the environment's `/dev/shm` (its `tmp/`
/// is its `/tmp`), so that scratch space counts against `--disk` and `--files` too.
pub const SHM_DIR: &str = "shm";

/// Inodes ptest itself makes in a root: the root directory, the marker, the anatomy,
/// `run/net` and [`SHM_DIR`].
const OWN_INODES: u64 = 4 + root::ANATOMY.len() as u64;

/// The limits `spec` asks for, if any: `--files N` lets the environment make N files and
/// directories of its own, besides what ptest makes and `extra_inodes` more (mount points an
/// engine makes inside).
pub fn limits(spec: &EnvironmentSpec, extra_inodes: u64) -> Option<TmpfsLimits> {
    let l = &spec.limits;
    (l.disk.is_some() || l.files.is_some()).then(|| TmpfsLimits {
        bytes: l.disk.map(|d| d.0),
        inodes: l.files.map(|f| f.saturating_add(OWN_INODES + extra_inodes)),
    })
}

/// The tmpfs source naming environment `id`'s root in `/proc/self/mountinfo`.
fn source(id: &EnvId) -> String {
    format!("ptest-env-{id}")
}

fn mount_error(path: &Path, e: ptest_sandbox::Error) -> Error {
    Error::Root {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Creates environment `id`'s root at `path`: a plain directory, or with `limits` a tmpfs
/// mounted there first, with a world-writable [`SHM_DIR`] in it.
pub fn create(path: &Path, id: &EnvId, limits: Option<TmpfsLimits>) -> Result<()> {
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
    crate::failpoint::failpoint("create.tmpfs");
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

/// Removes environment `id`'s root at `path`: unmounts its tmpfs when it has one (only the
/// mount made for `id`, named for it, and only if no marker names another environment: a
/// create killed before the marker leaves none), then deletes the directory.
pub fn remove(path: &Path, id: &EnvId) -> Result<()> {
    let mounted = tmpfs::mount_at(path).map_err(|e| mount_error(path, e))?;
    let Some(mount) = mounted.filter(|m| m.fstype == "tmpfs" && m.source == source(id)) else {
        return root::remove(path, id);
    };
    match root::marker_id(path) {
        Some(found) if found != id.as_str() => {
            return Err(Error::Root {
                path: path.to_owned(),
                reason: format!("its marker names {found}, not {id}; not unmounting it"),
            });
        }
        _ => {}
    }
    tmpfs::unmount(&mount.target).map_err(|e| mount_error(path, e))?;
    // What is left is the mount point: empty unless something was put there underneath.
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("deleting", path, e)),
    }
}
