//! Size- and file-count-limited roots of the `basic` and `virtualenv` levels (see
//! [`ptest_core::limited_root`]): whether this host applies them, and the mount points a pod
//! makes inside.

use std::path::{Path, PathBuf};

use ptest_core::{EnvId, EnvironmentSpec, limited_root};
use ptest_sandbox::tmpfs::TmpfsLimits;

use crate::isolation::{HostCaps, resolve};

/// The limits to mount `spec`'s root with: those it asks for, if this host applies them
/// (with `--allow-degraded` on a host that cannot, none).
pub(crate) fn planned(spec: &EnvironmentSpec, path: &Path, id: &EnvId) -> Option<TmpfsLimits> {
    resolve(spec, HostCaps::get())
        .ok()
        .filter(|iso| iso.quota)
        .and_then(|_| limited_root::limits(spec, mount_points_in_tmp(path, id)))
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
