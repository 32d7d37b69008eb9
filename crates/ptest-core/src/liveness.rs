//! Is a recorded process still the one we started? A pid alone can be reused; the pair
//! (pid, start time in clock ticks since boot) cannot.

/// The kernel's start time of `pid` in clock ticks since boot, or `None` when it is gone.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = ptest_sandbox::procfs::stat(pid as i32).ok()??;
    (!stat.is_dead()).then_some(stat.start_time)
}

/// A process as `PID:START_TICKS`, which names it for as long as it lives and never another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// Its pid.
    pub pid: u32,
    /// Its start time, clock ticks after boot.
    pub ticks: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> ProcessId {
        let pid = std::process::id();
        ProcessId {
            pid,
            ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    /// Whether it still runs.
    pub fn is_alive(self) -> bool {
        is_alive(self.pid, self.ticks)
    }
}

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.pid, self.ticks)
    }
}

impl std::str::FromStr for ProcessId {
    type Err = String;
    fn from_str(s: &str) -> Result<ProcessId, String> {
        let bad = || format!("{s:?} is not PID:START_TICKS");
        let (pid, ticks) = s.split_once(':').ok_or_else(bad)?;
        Ok(ProcessId {
            pid: pid.parse().map_err(|_| bad())?,
            ticks: ticks.parse().map_err(|_| bad())?,
        })
    }
}

/// Whether `pid` is alive and is the process that had `ticks` as its start time.
pub fn is_alive(pid: u32, ticks: u64) -> bool {
    start_ticks(pid) == Some(ticks)
}

/// Sends `signal` to the process group `pid` leads (every engine starts its commands as
/// group leaders), or to the process alone if it leads none.
pub fn signal_group(pid: u32, signal: rustix::process::Signal) {
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return;
    };
    if rustix::process::kill_process_group(pid, signal).is_err() {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_reuse_is_detected() {
        let me = std::process::id();
        let ticks = start_ticks(me).expect("own /proc entry");
        assert!(is_alive(me, ticks));
        assert!(!is_alive(me, ticks + 1));
        assert_eq!(start_ticks(u32::MAX / 2), None);
    }
}
