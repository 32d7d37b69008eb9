//! cgroup v1: one directory per controller hierarchy, same relative path in each.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    Backoff, Controller, Limits, Usage, V1Mounts, kill_until_empty, read_keyed, read_u64,
    write_file,
};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub(super) struct CgroupV1 {
    /// The group's directory in each mounted controller (co-mounted controllers share one).
    dirs: Vec<(Controller, PathBuf)>,
}

fn require(mounts: &V1Mounts, c: Controller) -> Result<()> {
    if mounts.path(c).is_some() {
        Ok(())
    } else {
        Err(Error::ControllerMissing {
            controller: c.name(),
            reason: "mounted (cgroup v1)".into(),
        })
    }
}

impl CgroupV1 {
    pub(super) fn create(mounts: &V1Mounts, rel: &Path, limits: &Limits) -> Result<CgroupV1> {
        if limits.memory_bytes.is_some() {
            require(mounts, Controller::Memory)?;
        }
        if limits.cpu_cores.is_some() {
            require(mounts, Controller::Cpu)?;
        }
        if limits.pids_max.is_some() {
            require(mounts, Controller::Pids)?;
        }
        let mut dirs = Vec::new();
        for c in Controller::ALL {
            let Some(mount) = mounts.path(c) else {
                continue;
            };
            let dir = mount.join(rel);
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent).map_err(|source| Error::CgroupIo {
                    action: "create",
                    path: parent.into(),
                    source,
                })?;
            }
            // Co-mounted controllers (cpu,cpuacct) share a directory created on the first pass.
            if !dirs.iter().any(|(_, d)| d == &dir) {
                fs::create_dir(&dir).map_err(|source| Error::CgroupIo {
                    action: "create",
                    path: dir.clone(),
                    source,
                })?;
            }
            dirs.push((c, dir));
        }
        let group = CgroupV1 { dirs };
        if let Err(e) = group.set_limits(limits) {
            for dir in group.unique_dirs() {
                let _ = fs::remove_dir(dir);
            }
            return Err(e);
        }
        Ok(group)
    }

    pub(super) fn open(mounts: &V1Mounts, rel: &Path) -> Option<CgroupV1> {
        let dirs: Vec<_> = Controller::ALL
            .iter()
            .filter_map(|&c| mounts.path(c).map(|m| (c, m.join(rel))))
            .filter(|(_, d)| d.is_dir())
            .collect();
        if dirs.is_empty() {
            None
        } else {
            Some(CgroupV1 { dirs })
        }
    }

    fn dir(&self, c: Controller) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, d)| d.as_path())
    }

    pub(super) fn unique_dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for (_, d) in &self.dirs {
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
        out
    }

    fn need(&self, c: Controller) -> Result<&Path> {
        self.dir(c).ok_or_else(|| Error::ControllerMissing {
            controller: c.name(),
            reason: "mounted (cgroup v1)".into(),
        })
    }

    pub(super) fn set_limits(&self, limits: &Limits) -> Result<()> {
        if let Some(bytes) = limits.memory_bytes {
            let dir = self.need(Controller::Memory)?;
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            let value = bytes.to_string();
            // memsw must stay >= limit: raising needs memsw first, lowering limit first. Trying
            // memsw, limit, memsw covers both directions.
            let first = if memsw.exists() {
                write_file(&memsw, &value)
            } else {
                Ok(())
            };
            write_file(&dir.join("memory.limit_in_bytes"), &value)?;
            if memsw.exists() {
                if first.is_err() {
                    write_file(&memsw, &value)?;
                }
            } else {
                tracing::warn!(path = %dir.display(), "swap accounting is off: the memory limit does not count swap");
            }
        }
        if let Some(cores) = limits.cpu_cores {
            let dir = self.need(Controller::Cpu)?;
            let period: u64 = 100_000;
            let quota = ((cores * period as f64).round() as u64).max(1_000);
            write_file(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
            write_file(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        if let Some(max) = limits.pids_max {
            let dir = self.need(Controller::Pids)?;
            write_file(&dir.join("pids.max"), &max.to_string())?;
        }
        Ok(())
    }

    pub(super) fn oom_kills(&self) -> Result<Option<u64>> {
        match self.dir(Controller::Memory) {
            Some(dir) => read_keyed(&dir.join("memory.oom_control"), "oom_kill"),
            None => Ok(None),
        }
    }

    /// The files behind [`super::Gauges`]: the OOM-kill count's and the task count's.
    pub(super) fn gauge_files(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (
            self.dir(Controller::Memory)
                .map(|d| d.join("memory.oom_control")),
            self.dir(Controller::Pids).map(|d| d.join("pids.current")),
        )
    }

    pub(super) fn pids_current(&self) -> Result<Option<u64>> {
        self.dir(Controller::Pids)
            .map(|dir| read_u64(&dir.join("pids.current")))
            .transpose()
    }

    pub(super) fn usage(&self) -> Result<Usage> {
        let mut usage = Usage::default();
        if let Some(dir) = self.dir(Controller::Memory) {
            usage.memory_current = Some(read_u64(&dir.join("memory.usage_in_bytes"))?);
            usage.memory_peak = Some(read_u64(&dir.join("memory.max_usage_in_bytes"))?);
            usage.oom_kills = self.oom_kills()?;
        }
        if let Some(dir) = self.dir(Controller::Cpuacct) {
            usage.cpu_time = Some(Duration::from_nanos(read_u64(&dir.join("cpuacct.usage"))?));
        }
        usage.pids_current = self.pids_current()?;
        Ok(usage)
    }

    fn all_pids(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        for dir in self.unique_dirs() {
            match fs::read_to_string(dir.join("cgroup.procs")) {
                Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(Error::CgroupIo {
                        action: "read",
                        path: dir.join("cgroup.procs"),
                        source,
                    });
                }
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    pub(super) fn kill_all(&self) -> Result<()> {
        // Nothing outside can fork into an empty group: the usual case once a pod's holder has
        // taken its PID namespace down, which then needs no freezing.
        if self.all_pids()?.is_empty() {
            return Ok(());
        }
        let primary = self.unique_dirs().into_iter().next().unwrap_or_default();
        if self.dir(Controller::Freezer).is_some() {
            self.freeze(true)?;
            for pid in self.all_pids()? {
                let _ = crate::sys::kill(pid, libc::SIGKILL);
            }
            self.freeze(false)?;
        }
        kill_until_empty(&primary, || self.all_pids())
    }

    pub(super) fn freeze(&self, frozen: bool) -> Result<()> {
        let freezer = self
            .dir(Controller::Freezer)
            .ok_or(Error::ControllerMissing {
                controller: "freezer",
                reason: "mounted".into(),
            })?;
        let state = freezer.join("freezer.state");
        let want = if frozen { "FROZEN" } else { "THAWED" };
        write_file(&state, want)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut backoff = Backoff::up_to(Duration::from_millis(2));
        while super::read_string(&state)?.trim() != want && Instant::now() < deadline {
            backoff.sleep();
        }
        Ok(())
    }
}

/// Children of `parent` in every mounted controller.
pub(super) fn list(mounts: &V1Mounts, parent: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for c in Controller::ALL {
        if let Some(mount) = mounts.path(c) {
            names.extend(super::child_dirs(&mount.join(parent))?);
        }
    }
    Ok(names)
}
