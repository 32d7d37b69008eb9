//! `[[suite]]`: one test suite, the command that runs it and how.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::service::{Service, ServiceConfig};
use toml::Spanned;

use super::Command;

/// A `[[suite]]` table as written in `ptest.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteConfig {
    /// Unique name: `[a-z0-9][a-z0-9_.-]*`, at most 40 characters (it is part of the
    /// environment's name).
    pub name: Spanned<String>,
    /// The `[env.NAME]` template; a `basic` environment with a project copy when absent.
    #[serde(default)]
    pub env: Option<Spanned<String>>,
    /// The test command.
    pub run: Spanned<Command>,
    /// Runs before `run`, in the same environment and directory.
    #[serde(default)]
    pub setup: Option<Command>,
    /// Runs after `run`, whatever its outcome.
    #[serde(default)]
    pub teardown: Option<Command>,
    /// Kills each command (and its whole process tree) after this long.
    #[serde(default, with = "ptest_core::duration::option")]
    pub timeout: Option<Duration>,
    /// How many times a failing suite is run again; passing on a retry makes it `flaky`.
    #[serde(default)]
    pub retries: u32,
    /// Tags for `--tag` and `--exclude-tag`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Number of shards: that many environments, each run with `PTEST_SHARD`=0..N-1 and
    /// `PTEST_SHARDS`=N; `"auto"` picks it from the cores and the suite's history.
    #[serde(default)]
    pub parallel: Option<Spanned<Parallel>>,
    /// How shards share the tests: `"pytest"` gives each shard its share of the test ids
    /// pytest collects; without it every shard runs the whole command.
    #[serde(default)]
    pub split: Option<Spanned<Split>>,
    /// A JUnit XML file the command writes, relative to its working directory.
    #[serde(default)]
    pub junit: Option<PathBuf>,
    /// Suites that must pass before this one starts.
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    /// Extra variables for every command of the suite.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// Services started before `setup`, stopped after `teardown`: background processes in
    /// the suite's environment, or containers of their own.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
}

/// `parallel`: a shard count or `"auto"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Parallel {
    /// That many shards.
    Count(NonZeroU32),
    /// Only `"auto"` is accepted (checked with a span where the file is loaded).
    Word(String),
}

/// `split`: how a sharded suite's tests are shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Split {
    /// Test ids collected once by pytest, dealt out by earlier durations (see
    /// [`crate::split`]).
    Pytest,
}

/// A checked suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suite {
    /// Unique name.
    pub name: String,
    /// Name of its environment template.
    pub env: String,
    /// The label of its template's `python` matrix entry (`py3.11`) when it has one; the
    /// suite is then `NAME[LABEL]`, one of the entries of suite `NAME`.
    pub matrix: Option<String>,
    /// The test command.
    pub run: Command,
    /// Runs before `run`.
    pub setup: Option<Command>,
    /// Runs after `run`.
    pub teardown: Option<Command>,
    /// Timeout of each command.
    #[serde(with = "ptest_core::duration::option")]
    pub timeout: Option<Duration>,
    /// Retries after a failure.
    pub retries: u32,
    /// Tags.
    pub tags: Vec<String>,
    /// Number of shards (1 when not sharded).
    pub shards: u32,
    /// Whether `shards` came from `parallel = "auto"` (the cores, until
    /// [`crate::split::resolve_auto_shards`] weighs the suite's history).
    pub auto_shards: bool,
    /// How the shards share the tests, when they do.
    pub split: Option<Split>,
    /// JUnit XML file written by `run`, relative to its working directory.
    pub junit: Option<PathBuf>,
    /// Suites that must pass first.
    pub depends_on: Vec<String>,
    /// Extra variables.
    pub env_vars: BTreeMap<String, String>,
    /// Background services.
    pub services: Vec<Service>,
}

impl Suite {
    /// The name as written in `ptest.toml`: `unit` for the matrix entry `unit[py3.11]`.
    pub fn base_name(&self) -> &str {
        match &self.matrix {
            Some(_) => self.name.split('[').next().unwrap_or(&self.name),
            None => &self.name,
        }
    }

    /// The suite's part of its environments' names: `unit-py3.11` for `unit[py3.11]`.
    pub fn env_stem(&self) -> String {
        match &self.matrix {
            Some(label) => format!("{}-{label}", self.base_name()),
            None => self.name.clone(),
        }
    }
}

/// Longest suite name: `run-<12 hex>-<name>-<shard>` must fit the 63 characters of an
/// environment name.
pub const MAX_SUITE_NAME: usize = 40;

/// Why `name` cannot name a suite, if it cannot.
pub(crate) fn check_name(name: &str) -> Option<String> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = bytes
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok {
        Some(format!(
            "suite name {name:?} must match [a-z0-9][a-z0-9_.-]* (it becomes part of an \
             environment name)"
        ))
    } else if name.len() > MAX_SUITE_NAME {
        Some(format!(
            "suite name {name:?} is longer than {MAX_SUITE_NAME} characters"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_environment_name_rule() {
        assert!(check_name("unit-1.x_y").is_none());
        assert!(check_name("Unit").is_some());
        assert!(check_name("").is_some());
        assert!(check_name(&"a".repeat(41)).is_some());
    }
}
