//! Typed configuration, loaded in layers: built-in defaults < `~/.config/ptest/config.toml` <
//! `./ptest.toml` `[defaults]` < `PTEST_*` variables < `--config KEY=VALUE` flags. Each value
//! remembers which layer set it (`ptest config show`).

mod layers;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::model::{CleanupPolicy, IsolationLevel};
use crate::ports::PortRange;
use crate::size::ByteSize;

pub use layers::{
    ConfigError, ConfigSources, Entry, FileError, LoadedConfig, Origin, validate_file,
};

/// ptest's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How many environments may exist at once in this home.
    pub max_environments: u32,
    /// The level `env create` uses when none is given.
    pub default_level: IsolationLevel,
    /// Defaults for environments of each level.
    pub level: PerLevel,
    /// Port allocation.
    pub ports: PortsConfig,
    /// Sums of limits over every environment of this home.
    pub quota: QuotaConfig,
    /// Thresholds that raise `resource_threshold_exceeded`.
    pub monitor: crate::monitor::MonitorConfig,
    /// Commands run on events (`[[hooks]]`).
    pub hooks: Vec<crate::hooks::HookConfig>,
}

/// `[quota]`: the most the environments that exist may hold together, summed over their
/// limits (an environment created without a limit counts its level's default limit; with no
/// default either, it is refused). Checked in the store's transaction, as `max_environments`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Sum of memory limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Sum of CPU limits (cores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Sum of disk limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<ByteSize>,
}

impl QuotaConfig {
    /// Whether any quota is set.
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.cpus.is_some() || self.disk.is_some()
    }
}

/// `[ports]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortsConfig {
    /// The host ports ptest hands out (`"20000-29999"`).
    pub range: PortRange,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_environments: 100,
            default_level: IsolationLevel::default(),
            level: PerLevel::default(),
            ports: PortsConfig::default(),
            quota: QuotaConfig::default(),
            monitor: crate::monitor::MonitorConfig::default(),
            hooks: Vec::new(),
        }
    }
}

impl Config {
    /// The defaults for environments of `level`.
    pub fn level(&self, level: IsolationLevel) -> &LevelDefaults {
        match level {
            IsolationLevel::Basic => &self.level.basic,
            IsolationLevel::Virtualenv => &self.level.virtualenv,
            IsolationLevel::Docker => &self.level.docker,
            IsolationLevel::Kubernetes => &self.level.kubernetes,
        }
    }
}

/// One [`LevelDefaults`] per isolation level (`[level.basic]`, `[level.docker]`, ...).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerLevel {
    /// `[level.basic]`.
    pub basic: LevelDefaults,
    /// `[level.virtualenv]`.
    pub virtualenv: LevelDefaults,
    /// `[level.docker]`.
    pub docker: LevelDefaults,
    /// `[level.kubernetes]`.
    pub kubernetes: LevelDefaults,
}

/// Defaults for new environments of one level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LevelDefaults {
    /// When environments are removed.
    pub cleanup: CleanupPolicy,
    /// Time to live under the `scheduled` policy.
    #[serde(with = "duration::text")]
    pub ttl: Duration,
    /// Timeout of each command; `0s` means none.
    #[serde(with = "duration::text")]
    pub exec_timeout: Duration,
    /// Whether environments of this level may be created (`false`: refused, exit 2).
    pub enabled: bool,
    /// How many environments of this level may exist at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_environments: Option<u32>,
    /// Memory limit of an environment created without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// CPU limit (cores) of an environment created without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Disk limit of an environment created without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<ByteSize>,
}

impl Default for LevelDefaults {
    fn default() -> Self {
        Self {
            cleanup: CleanupPolicy::OnRequest,
            ttl: Duration::from_secs(3600),
            exec_timeout: Duration::ZERO,
            enabled: true,
            max_environments: None,
            memory: None,
            cpus: None,
            disk: None,
        }
    }
}

impl LevelDefaults {
    /// The command timeout, `None` when it is `0s`.
    pub fn exec_timeout(&self) -> Option<Duration> {
        (!self.exec_timeout.is_zero()).then_some(self.exec_timeout)
    }
}
