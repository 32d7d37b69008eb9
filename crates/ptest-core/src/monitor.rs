//! Thresholds (`[monitor] memory = "90%"`, `disk`, `cpu`, of each environment's limits): a
//! long-lived ptest process (`gc --watch`, `env stats --watch`) samples the environments it
//! watches and records `resource_threshold_exceeded` once each time a reading crosses a
//! threshold on the way up (again only after it has come back below).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::manager::Manager;
use crate::model::{Environment, EnvironmentStatus, IsolationEvent};
use crate::name::EnvId;

/// A share of a limit, written `"90%"` (or a number of percent).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "PercentInput", into = "String")]
pub struct Percent(pub f64);

#[derive(Deserialize)]
#[serde(untagged)]
enum PercentInput {
    Number(f64),
    Text(String),
}

impl TryFrom<PercentInput> for Percent {
    type Error = String;
    fn try_from(input: PercentInput) -> std::result::Result<Self, String> {
        let value = match input {
            PercentInput::Number(n) => n,
            PercentInput::Text(t) => t
                .trim()
                .trim_end_matches('%')
                .trim()
                .parse()
                .map_err(|_| format!("invalid percentage {t:?}: write e.g. \"90%\""))?,
        };
        if !(value > 0.0 && value <= 100.0) {
            return Err(format!(
                "a threshold is a percentage above 0 and at most 100, not {value}"
            ));
        }
        Ok(Percent(value))
    }
}

impl From<Percent> for String {
    fn from(p: Percent) -> String {
        format!("{}%", p.0)
    }
}

/// `[monitor]`: thresholds as shares of each environment's own limits; an environment without
/// a limit on a resource is not watched on it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Memory in use, of `--memory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Percent>,
    /// Bytes under the root, of `--disk`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<Percent>,
    /// CPU time per second since the last sample, of `--cpus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Percent>,
}

impl MonitorConfig {
    /// Whether any threshold is set.
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.disk.is_some() || self.cpu.is_some()
    }
}

/// What a watcher remembers between samples.
#[derive(Debug, Default)]
pub struct Monitor {
    /// Per environment: the last CPU sample (for a rate) and the resources now above their
    /// threshold (so that an event is recorded once per crossing).
    seen: HashMap<EnvId, Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    cpu: Option<(Instant, f64)>,
    above: HashSet<&'static str>,
}

impl Monitor {
    /// Samples every active environment of `manager`'s home against its `[monitor]`
    /// thresholds and records an event for each new crossing; returns how many.
    pub async fn sweep(&mut self, manager: &Manager) -> Result<usize> {
        let config = manager.config().monitor.clone();
        if !config.any() {
            return Ok(0);
        }
        let envs = manager.list_environments(&crate::manager::EnvFilter {
            status: Some(EnvironmentStatus::Active),
            ..Default::default()
        })?;
        let live: HashSet<EnvId> = envs.iter().map(|e| e.id.clone()).collect();
        self.seen.retain(|id, _| live.contains(id));
        let mut recorded = 0;
        for env in &envs {
            recorded += self.sample(manager, &config, env).await?;
        }
        Ok(recorded)
    }

    /// Samples one environment; returns how many events it recorded.
    pub async fn sample(
        &mut self,
        manager: &Manager,
        config: &MonitorConfig,
        env: &Environment,
    ) -> Result<usize> {
        let Ok(usage) = manager.resource_usage(env).await else {
            return Ok(0);
        };
        let seen = self.seen.entry(env.id.clone()).or_default();
        let limits = &env.spec.limits;
        let now = Instant::now();
        let cpu_rate = match (usage.cpu_seconds, seen.cpu) {
            (Some(cpu), Some((then, before))) => {
                let wall = now.duration_since(then).as_secs_f64();
                (wall > 0.0).then(|| (cpu - before) / wall)
            }
            _ => None,
        };
        if let Some(cpu) = usage.cpu_seconds {
            seen.cpu = Some((now, cpu));
        }
        let readings = [
            (
                "memory",
                config.memory,
                usage.memory_bytes.map(|b| b as f64),
                limits.memory.map(|m| m.0 as f64),
            ),
            (
                "disk",
                config.disk,
                usage.disk_bytes.map(|b| b as f64),
                limits.disk.map(|d| d.0 as f64),
            ),
            ("cpu", config.cpu, cpu_rate, limits.cpus),
        ];
        let mut recorded = 0;
        for (resource, threshold, reading, limit) in readings {
            let (Some(threshold), Some(reading), Some(limit)) = (threshold, reading, limit) else {
                continue;
            };
            let share = 100.0 * reading / limit;
            if share < threshold.0 {
                seen.above.remove(resource);
                continue;
            }
            if seen.above.insert(resource) {
                manager.record_event(
                    env,
                    IsolationEvent::ResourceThresholdExceeded,
                    serde_json::json!({
                        "resource": resource,
                        "reading": reading,
                        "limit": limit,
                        "percent": (share * 10.0).round() / 10.0,
                        "threshold": threshold.0,
                    }),
                )?;
                recorded += 1;
            }
        }
        Ok(recorded)
    }
}

/// How often [`while_watching`] samples.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Awaits `work` (a command of `env`, a background process); meanwhile, where `[monitor]`
/// thresholds are set, samples `env` every 2 s. What the supervisors and `ptest run` use, so
/// that whatever runs long in an environment is watched.
pub async fn while_watching<T>(
    manager: &Manager,
    env: &Environment,
    work: impl std::future::Future<Output = T>,
) -> T {
    let thresholds = manager.config().monitor.clone();
    if !thresholds.any() {
        return work.await;
    }
    let mut monitor = Monitor::default();
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            () = tokio::time::sleep(WATCH_EVERY) => {
                if let Err(e) = monitor.sample(manager, &thresholds, env).await {
                    tracing::warn!("could not sample {} against its thresholds: {e}", env.name);
                }
            }
        }
    }
}
