//! cgroup v2: one unified directory; controllers enabled down the path via
//! `cgroup.subtree_control`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    Backoff, Limits, Usage, kill_until_empty, read_keyed, read_pids, read_u64, write_file,
};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub(super) struct CgroupV2 {
    pub(super) dir: PathBuf,
}

/// Controllers listed in the hierarchy root's `cgroup.controllers`.
pub(super) fn root_controllers(root: &Path) -> Vec<String> {
    fs::read_to_string(root.join("cgroup.controllers"))
        .map(|t| t.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

impl CgroupV2 {
    pub(super) fn create(
        root: &Path,
        parent: &str,
        rel: &Path,
        limits: &Limits,
    ) -> Result<CgroupV2> {
        let available = root_controllers(root);
        let wanted = [
            ("memory", limits.memory_bytes.is_some()),
            ("cpu", limits.cpu_cores.is_some()),
            ("pids", limits.pids_max.is_some()),
        ];
        for (name, required) in wanted {
            if required && !available.iter().any(|a| a == name) {
                return Err(Error::ControllerMissing {
                    controller: name,
                    reason: format!("listed in {}", root.join("cgroup.controllers").display()),
                });
            }
        }
        // Enable the controllers on every level from the root down to the parent; a controller
        // only needed for readings is enabled on a best-effort basis.
        let mut level = root.to_path_buf();
        let mut levels = vec![level.clone()];
        for component in Path::new(parent).components() {
            level.push(component);
            levels.push(level.clone());
        }
        for dir in &levels {
            fs::create_dir_all(dir).map_err(|source| Error::CgroupIo {
                action: "create",
                path: dir.clone(),
                source,
            })?;
            for (name, required) in wanted {
                if !available.iter().any(|a| a == name) {
                    continue;
                }
                let control = dir.join("cgroup.subtree_control");
                if let Err(e) = write_file(&control, &format!("+{name}")) {
                    if required {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "could not enable optional controller");
                }
            }
        }
        let dir = root.join(rel);
        fs::create_dir(&dir).map_err(|source| Error::CgroupIo {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        let group = CgroupV2 { dir };
        if let Err(e) = group.set_limits(limits) {
            let _ = fs::remove_dir(&group.dir);
            return Err(e);
        }
        Ok(group)
    }

    pub(super) fn open(root: &Path, rel: &Path) -> Option<CgroupV2> {
        let dir = root.join(rel);
        dir.is_dir().then_some(CgroupV2 { dir })
    }

    pub(super) fn set_limits(&self, limits: &Limits) -> Result<()> {
        if let Some(bytes) = limits.memory_bytes {
            write_file(&self.dir.join("memory.max"), &bytes.to_string())?;
            let swap = self.dir.join("memory.swap.max");
            if swap.exists() {
                write_file(&swap, "0")?;
            } else {
                tracing::warn!(path = %self.dir.display(), "swap accounting is off: the memory limit does not count swap");
            }
        }
        if let Some(cores) = limits.cpu_cores {
            let period: u64 = 100_000;
            let quota = ((cores * period as f64).round() as u64).max(1_000);
            write_file(&self.dir.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        if let Some(max) = limits.pids_max {
            write_file(&self.dir.join("pids.max"), &max.to_string())?;
        }
        Ok(())
    }

    pub(super) fn optional_u64(&self, file: &str) -> Result<Option<u64>> {
        let path = self.dir.join(file);
        if path.exists() {
            read_u64(&path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The files behind [`super::Gauges`]: the OOM-kill count's and the task count's.
    pub(super) fn gauge_files(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (
            Some(self.dir.join("memory.events")),
            Some(self.dir.join("pids.current")),
        )
    }

    pub(super) fn oom_kills(&self) -> Result<Option<u64>> {
        let events = self.dir.join("memory.events");
        if events.exists() {
            read_keyed(&events, "oom_kill")
        } else {
            Ok(None)
        }
    }

    pub(super) fn usage(&self) -> Result<Usage> {
        let cpu_stat = self.dir.join("cpu.stat");
        Ok(Usage {
            memory_current: self.optional_u64("memory.current")?,
            memory_peak: self.optional_u64("memory.peak")?,
            cpu_time: if cpu_stat.exists() {
                read_keyed(&cpu_stat, "usage_usec")?.map(Duration::from_micros)
            } else {
                None
            },
            pids_current: self.optional_u64("pids.current")?,
            oom_kills: self.oom_kills()?,
        })
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let procs = self.dir.join("cgroup.procs");
        if !procs.exists() {
            return Ok(Vec::new());
        }
        read_pids(&procs)
    }

    pub(super) fn kill_all(&self) -> Result<()> {
        let kill = self.dir.join("cgroup.kill");
        if kill.exists() {
            write_file(&kill, "1")?;
        } else {
            self.freeze(true)?;
            for pid in self.pids()? {
                let _ = crate::sys::kill(pid, libc::SIGKILL);
            }
            self.freeze(false)?;
        }
        kill_until_empty(&self.dir, || self.pids())
    }

    pub(super) fn freeze(&self, frozen: bool) -> Result<()> {
        write_file(
            &self.dir.join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
        )?;
        let events = self.dir.join("cgroup.events");
        let want = Some(u64::from(frozen));
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut backoff = Backoff::up_to(Duration::from_millis(2));
        while read_keyed(&events, "frozen")? != want && Instant::now() < deadline {
            backoff.sleep();
        }
        Ok(())
    }
}
