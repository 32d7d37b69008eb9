//! Finding an environment's processes on the host: every command ptest starts carries
//! `PTEST_ENV_ID=<id>` in its environment, and children inherit it, so a scan of
//! `/proc/*/environ` finds them wherever they double-forked to.

use std::fs;

/// A process found in an environment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub pid: u32,
    /// Resident memory in bytes.
    pub rss: u64,
    /// CPU time (user + system) in clock ticks.
    pub cpu_ticks: u64,
}

/// Processes whose environment holds `PTEST_ENV_ID=<id>` (excluding this process).
pub(crate) fn scan(id: &str) -> Vec<Found> {
    let needle = format!("PTEST_ENV_ID={id}");
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .filter_map(read_stat)
        .collect()
}

fn read_stat(pid: u32) -> Option<Found> {
    let stat = ptest_sandbox::procfs::stat(pid as i32).ok()??;
    if stat.state == b'Z' {
        return None;
    }
    let page = rustix::param::page_size() as u64;
    Some(Found {
        pid,
        cpu_ticks: stat.utime + stat.stime,
        rss: stat.rss_pages * page,
    })
}
