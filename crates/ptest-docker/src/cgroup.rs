//! The one cgroup reading the engine takes from the host: the memory cgroup's `oom_kill`
//! counter of a container, which tells an OOM kill of an exec'd command apart from any other
//! SIGKILL. Readable only when the engine runs on this host.

use std::path::{Path, PathBuf};

/// The file holding the `oom_kill` counter of the memory cgroup of host process `pid`:
/// `memory.oom_control` on cgroup v1, `memory.events` on v2.
pub(crate) fn oom_kill_file(pid: u32) -> Option<PathBuf> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            Some(PathBuf::from(format!(
                "/sys/fs/cgroup/memory{path}/memory.oom_control"
            )))
        } else if controllers.is_empty() && unified {
            Some(PathBuf::from(format!("/sys/fs/cgroup{path}/memory.events")))
        } else {
            None
        }
    })
}

/// The `oom_kill` count in `file` (see [`oom_kill_file`]).
pub(crate) fn oom_kills(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == "oom_kill").then(|| v.trim().parse().ok()).flatten()
    })
}
