//! What a background process's tree uses, read from procfs.

use jiff::Timestamp;
use ptest_core::services::{all_marked_pids, marked_pids};
use ptest_core::{ProcessStats, ProcessStatus, ServiceInfo};

/// CPU, memory, threads and open files of every process of `service` (found by its marker),
/// or `None` when nothing of it runs.
pub fn read(service: &ServiceInfo) -> Option<ProcessStats> {
    of_pids(
        service,
        marked_pids(&service.process.env_id, service.process.id),
    )
}

/// [`read`] for each of `services` that runs, filling in their `stats`, with one pass over
/// `/proc` to find them all.
pub fn read_all(services: &mut [ServiceInfo]) {
    let mut pids = all_marked_pids();
    for s in services {
        if matches!(
            s.process.status,
            ProcessStatus::Running | ProcessStatus::Stopping
        ) {
            let key = (s.process.env_id.to_string(), s.process.id);
            s.stats = of_pids(s, pids.remove(&key).unwrap_or_default());
        }
    }
}

fn of_pids(service: &ServiceInfo, pids: Vec<u32>) -> Option<ProcessStats> {
    if pids.is_empty() {
        return None;
    }
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    let mut stats = ProcessStats::default();
    let mut cpu_ticks = 0u64;
    for pid in pids {
        let Ok(Some(stat)) = ptest_sandbox::procfs::stat(pid as i32) else {
            continue;
        };
        stats.processes += 1;
        cpu_ticks += stat.utime + stat.stime;
        stats.threads += stat.threads;
        stats.rss_bytes += stat.rss_pages * page;
        stats.open_fds += std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
    }
    stats.uptime = Timestamp::now()
        .duration_since(service.process.started_at)
        .as_secs_f64()
        .max(0.0);
    if stats.uptime > 0.0 {
        stats.cpu_percent = (cpu_ticks as f64 / hz) / stats.uptime * 100.0;
    }
    Some(stats)
}
