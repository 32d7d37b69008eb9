//! `ptest status`: this home at a glance — environments by level and status, what the quotas
//! hold, and whether the processes ptest keeps (holders, supervisors) are alive.

use std::collections::BTreeMap;
use std::process::ExitCode;

use ptest_core::{ByteSize, EnvFilter, Manager, liveness};
use serde::Serialize;

use crate::Failure;
use crate::cli::StatusArgs;
use crate::output;

#[derive(Serialize)]
struct Status {
    environments: usize,
    /// Level → status → how many.
    by_level: BTreeMap<String, BTreeMap<String, usize>>,
    /// Resource → what the environments' limits sum to, and the quota (if set).
    quota: BTreeMap<&'static str, QuotaUse>,
    holders: Alive,
    supervisors: Alive,
}

#[derive(Serialize)]
struct QuotaUse {
    used: String,
    limit: Option<String>,
}

#[derive(Serialize, Default)]
struct Alive {
    alive: usize,
    gone: usize,
}

impl Alive {
    fn count(&mut self, alive: bool) {
        if alive {
            self.alive += 1;
        } else {
            self.gone += 1;
        }
    }
}

/// Prints the summary (or it as JSON).
pub fn run(manager: &Manager, args: StatusArgs) -> Result<ExitCode, Failure> {
    let envs = manager.list_environments(&EnvFilter::default())?;
    let mut by_level: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let (mut memory, mut cpus, mut disk) = (0u64, 0f64, 0u64);
    let mut holders = Alive::default();
    for env in &envs {
        *by_level
            .entry(env.level.to_string())
            .or_default()
            .entry(env.status.to_string())
            .or_default() += 1;
        memory += env.spec.limits.memory.map_or(0, |m| m.0);
        cpus += env.spec.limits.cpus.unwrap_or(0.0);
        disk += env.spec.limits.disk.map_or(0, |d| d.0);
        let sandbox = env.details.get("sandbox");
        let holder =
            sandbox.and_then(|s| Some((s["holder_pid"].as_u64()?, s["start_time"].as_u64()?)));
        if let Some((pid, ticks)) = holder
            && env.status == ptest_core::EnvironmentStatus::Active
        {
            holders.count(liveness::is_alive(pid as u32, ticks));
        }
    }
    let mut supervisors = Alive::default();
    for s in manager.services(None)? {
        if let (true, Some(pid), Some(ticks)) = (
            s.process.status.is_live(),
            s.supervisor_pid,
            s.supervisor_ticks,
        ) {
            supervisors.count(liveness::is_alive(pid, ticks));
        }
    }
    let quota = &manager.config().quota;
    let status = Status {
        environments: envs.len(),
        by_level,
        quota: BTreeMap::from([
            (
                "memory",
                QuotaUse {
                    used: ByteSize(memory).to_string(),
                    limit: quota.memory.map(|q| q.to_string()),
                },
            ),
            (
                "cpus",
                QuotaUse {
                    used: format!("{cpus}"),
                    limit: quota.cpus.map(|q| format!("{q}")),
                },
            ),
            (
                "disk",
                QuotaUse {
                    used: ByteSize(disk).to_string(),
                    limit: quota.disk.map(|q| q.to_string()),
                },
            ),
        ]),
        holders,
        supervisors,
    };
    if args.json {
        output::json(&status);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} environment(s) (max_environments {})",
        status.environments,
        manager.config().max_environments
    );
    for (level, counts) in &status.by_level {
        let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        println!("  {level:<11} {}", counts.join(", "));
    }
    for (resource, q) in &status.quota {
        match &q.limit {
            Some(limit) => println!("quota {resource:<7} {} of {limit}", q.used),
            None => println!("limits {resource:<6} {} (no quota)", q.used),
        }
    }
    println!(
        "holders     {} alive, {} gone",
        status.holders.alive, status.holders.gone
    );
    println!(
        "supervisors {} alive, {} gone",
        status.supervisors.alive, status.supervisors.gone
    );
    Ok(ExitCode::SUCCESS)
}
