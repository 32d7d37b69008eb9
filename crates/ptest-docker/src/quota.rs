//! The environment root of a container with `--disk` or `--files`: a tmpfs with `size=` and
//! `nr_inodes=`, mounted on the host at the root's path when the environment is created (the
//! marker, the anatomy and [`SHM_DIR`] made inside it) and unmounted when it is removed, as the
//! `basic` level does. The container's `/tmp` and `/dev/shm` are directories of this root (see
//! [`crate::container`]), so everything an environment writes outside the image's own layer
//! shares one limit, and the kernel refuses a write past it with `ENOSPC`.
//!
//! The mount is named `ptest-env-<id>` in `/proc/self/mountinfo`, like the `basic` level's, so
//! `remove` only ever unmounts the one made for its environment. It needs the Docker engine on
//! this host (the root is bind-mounted into the container) and ptest running as root.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ptest_core::{EnvId, EnvironmentSpec, Error, Result, root};
use ptest_sandbox::tmpfs::{self, TmpfsLimits};

/// The directory of a size-limited root shown as the container's `/dev/shm` (its `tmp/` is
/// the container's `/tmp`).
pub(crate) const SHM_DIR: &str = "shm";

/// Inodes ptest itself makes in a root: the root directory, the marker, [`SHM_DIR`] and the
/// anatomy.
const OWN_INODES: u64 = 3 + root::ANATOMY.len() as u64;

/// The limits `spec` asks the root to have, if any: `--files N` lets the environment make N
/// files and directories of its own, besides what ptest makes.
pub(crate) fn limits(spec: &EnvironmentSpec) -> Option<TmpfsLimits> {
    let l = &spec.limits;
    (l.disk.is_some() || l.files.is_some()).then(|| TmpfsLimits {
        bytes: l.disk.map(|d| d.0),
        inodes: l.files.map(|f| f.saturating_add(OWN_INODES)),
    })
}

/// The tmpfs source naming environment `id`'s root in `/proc/self/mountinfo`.
fn source(id: &EnvId) -> String {
    format!("ptest-env-{id}")
}

fn mount_error(path: &Path, e: ptest_sandbox::Error) -> Error {
    Error::Root {
        path: path.to_owned(),
        reason: format!(
            "--disk and --files make the root a size-limited tmpfs, which needs ptest to run \
             as root: {e}"
        ),
    }
}

/// Creates environment `id`'s root at `path`: a plain directory, or with `limits` a tmpfs
/// mounted there first, with a world-writable [`SHM_DIR`] in it.
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
        fs::set_permissions(&shm, fs::Permissions::from_mode(0o1777))
            .map_err(|e| Error::io("setting the mode of", &shm, e))
    });
    made.inspect_err(|_| {
        let _ = tmpfs::unmount(path);
    })
}

/// Removes environment `id`'s root at `path`: unmounts its tmpfs when it has one (only the
/// mount made for `id`), then deletes what is left.
pub(crate) fn remove(path: &Path, id: &EnvId) -> Result<()> {
    let mounted = tmpfs::mount_at(path).map_err(|e| mount_error(path, e))?;
    let ours = mounted.filter(|m| m.fstype == "tmpfs" && m.source == source(id));
    let Some(mount) = ours else {
        return root::remove(path, id);
    };
    tmpfs::unmount(&mount.target).map_err(|e| mount_error(path, e))?;
    // What is left is the mount point: empty unless something was put there underneath.
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("deleting", path, e)),
    }
}
