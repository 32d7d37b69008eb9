//! Loading the configuration layers and remembering where each value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use miette::{Diagnostic, NamedSource, SourceSpan};
use serde::{Deserialize, Serialize};

use super::Config;
use crate::model::IsolationLevel;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// ptest's built-in default.
    Default,
    /// The user's config file.
    UserFile {
        /// Its path.
        path: PathBuf,
    },
    /// The `[defaults]` table of a project's `ptest.toml`.
    ProjectFile {
        /// Its path.
        path: PathBuf,
    },
    /// A `PTEST_*` environment variable.
    Env {
        /// The variable.
        var: String,
    },
    /// A `--config KEY=VALUE` flag.
    Flag,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::UserFile { path } | Origin::ProjectFile { path } => {
                write!(f, "{}", path.display())
            }
            Origin::Env { var } => write!(f, "env {var}"),
            Origin::Flag => f.write_str("--config"),
        }
    }
}

/// A configuration that cannot be used: what is wrong and exactly where.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ConfigError {
    /// A file has a syntax error, an unknown key or a value of the wrong type.
    #[error(transparent)]
    #[diagnostic(transparent)]
    File(Box<FileError>),
    /// A `PTEST_*` variable or `--config` flag has a bad value.
    #[error("{setting}: {message}")]
    #[diagnostic(code(ptest::config::value))]
    Value {
        /// The variable (`PTEST_MAX_ENVIRONMENTS=abc`) or flag.
        setting: String,
        /// What is wrong.
        message: String,
    },
    /// A file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    #[diagnostic(code(ptest::config::read))]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A mistake in a config file, with the file's text so the report can point at it.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{path}:{line}:{column}: {message}")]
#[diagnostic(code(ptest::config::file))]
pub struct FileError {
    /// The file.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// The file's text, for the pointer.
    #[source_code]
    src: NamedSource<String>,
    /// Where in it.
    #[label("here")]
    span: Option<SourceSpan>,
    /// What to do.
    #[help]
    pub help: Option<String>,
}

/// The inputs of one load: which files, variables and flags to read.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// The user's config file, if it exists.
    pub user_file: Option<PathBuf>,
    /// The project's `ptest.toml`, if it exists.
    pub project_file: Option<PathBuf>,
    /// Environment variables to consider (only `PTEST_<KEY>` for known keys are used).
    pub env: Vec<(String, String)>,
    /// `KEY=VALUE` flags.
    pub flags: Vec<String>,
}

impl ConfigSources {
    /// The standard places: `$XDG_CONFIG_HOME/ptest/config.toml` (or `~/.config/...`),
    /// `<cwd>/ptest.toml`, and this process's environment.
    pub fn discover(cwd: &Path) -> Self {
        let config_dir = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        Self {
            user_file: config_dir
                .map(|d| d.join("ptest/config.toml"))
                .filter(|p| p.is_file()),
            project_file: Some(cwd.join("ptest.toml")).filter(|p| p.is_file()),
            env: std::env::vars().collect(),
            flags: Vec::new(),
        }
    }
}

/// One effective setting.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Dotted key, e.g. `level.basic.cleanup`.
    pub key: String,
    /// Its value.
    pub value: toml::Value,
    /// Where it came from.
    pub origin: Origin,
}

/// The effective configuration and the origin of each value.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The typed configuration.
    pub config: Config,
    /// Every key, its value and origin, sorted by key.
    pub entries: Vec<Entry>,
}

/// The shape of a project's `ptest.toml`: `[defaults]` is configuration; `[env.*]` and
/// `[[suite]]` belong to `ptest run` and are checked there.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    #[serde(default, rename = "defaults")]
    _defaults: Option<Config>,
    #[serde(default, rename = "env")]
    _env: Option<toml::Table>,
    #[serde(default, rename = "suite")]
    _suite: Option<Vec<toml::Table>>,
}

impl LoadedConfig {
    /// Loads every layer of `sources`, checking each one on its own so errors point at it.
    pub fn load(sources: &ConfigSources) -> Result<Self, ConfigError> {
        let defaults = toml::Table::try_from(Config::default())
            .expect("the default config serializes to a table");
        let mut merged = defaults.clone();
        let mut origins: BTreeMap<String, Origin> = flatten(&defaults)
            .into_iter()
            .map(|(k, _)| (k, Origin::Default))
            .collect();
        let mut known: Vec<String> = origins.keys().cloned().collect();
        // Keys without a default value are known too (`--config quota.memory=8G`).
        known.extend(
            [
                "quota.memory",
                "quota.cpus",
                "quota.disk",
                "monitor.memory",
                "monitor.disk",
                "monitor.cpu",
            ]
            .map(String::from),
        );
        for level in IsolationLevel::ALL {
            for key in ["max_environments", "memory", "cpus", "disk"] {
                known.push(format!("level.{level}.{key}"));
            }
        }
        known.sort();

        if let Some(path) = &sources.user_file {
            let table = read_layer(path, false)?;
            overlay(
                &mut merged,
                &mut origins,
                &table,
                &Origin::UserFile { path: path.clone() },
            );
        }
        if let Some(path) = &sources.project_file {
            let table = read_layer(path, true)?;
            overlay(
                &mut merged,
                &mut origins,
                &table,
                &Origin::ProjectFile { path: path.clone() },
            );
        }
        for key in &known {
            let var = format!("PTEST_{}", key.replace('.', "_").to_uppercase());
            if let Some((_, raw)) = sources.env.iter().rev().find(|(k, _)| *k == var) {
                let table = single_setting(key, raw, &format!("{var}={raw}"))?;
                overlay(&mut merged, &mut origins, &table, &Origin::Env { var });
            }
        }
        for flag in &sources.flags {
            let Some((key, raw)) = flag.split_once('=') else {
                return Err(ConfigError::Value {
                    setting: format!("--config {flag}"),
                    message: "expected KEY=VALUE, e.g. --config max_environments=10".into(),
                });
            };
            let key = key.trim();
            if !known.iter().any(|k| k == key) {
                return Err(ConfigError::Value {
                    setting: format!("--config {flag}"),
                    message: format!("unknown key {key:?}; known keys: {}", known.join(", ")),
                });
            }
            let table = single_setting(key, raw.trim(), &format!("--config {flag}"))?;
            overlay(&mut merged, &mut origins, &table, &Origin::Flag);
        }

        let config: Config = toml::Value::Table(merged.clone())
            .try_into()
            .expect("every layer was checked on its own");
        let entries = flatten(&merged)
            .into_iter()
            .map(|(key, value)| Entry {
                origin: origins.get(&key).cloned().unwrap_or(Origin::Default),
                key,
                value,
            })
            .collect();
        Ok(Self { config, entries })
    }
}

/// Checks one config file: `ptest.toml` (by name) as a project file, anything else as a user
/// config file.
pub fn validate_file(path: &Path) -> Result<(), ConfigError> {
    let project = path.file_name().is_some_and(|n| n == "ptest.toml");
    read_layer(path, project).map(|_| ())
}

/// Reads and checks one file; returns the table of settings it makes.
fn read_layer(path: &Path, project: bool) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let checked = if project {
        toml::from_str::<ProjectFile>(&text).map(|_| ())
    } else {
        toml::from_str::<Config>(&text).map(|_| ())
    };
    if let Err(e) = checked {
        return Err(file_error(path, text, &e));
    }
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| file_error(path, text.clone(), &e))?;
    if project {
        table = match table.remove("defaults") {
            Some(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        };
    }
    Ok(table)
}

fn file_error(path: &Path, text: String, e: &toml::de::Error) -> ConfigError {
    let message = e.message().to_owned();
    let help = message
        .contains("unknown field")
        .then(|| "remove the key or fix its spelling; `ptest config show` lists every key".into());
    ConfigError::File(Box::new(FileError::at(path, text, e.span(), message, help)))
}

impl FileError {
    /// An error at byte range `span` of `text`, the contents of `path`: line and column are
    /// counted from the span, and the text is kept so the report can point into it. Other
    /// readers of ptest's files (`ptest.toml` suites) build their errors here too.
    pub fn at(
        path: &Path,
        text: String,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        let offset = span.as_ref().map_or(0, |s| s.start).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Self {
            path: path.display().to_string(),
            line,
            column,
            message: message.into(),
            src: NamedSource::new(path.display().to_string(), text),
            span: span.map(Into::into),
            help,
        }
    }
}

/// A table holding one setting from a variable or flag, checked against the schema.
fn single_setting(key: &str, raw: &str, setting: &str) -> Result<toml::Table, ConfigError> {
    // A value that reads as TOML (10, true, "x") is taken as such; anything else is a string.
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let mut table = toml::Table::new();
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("keys are non-empty");
    let mut cursor = &mut table;
    for part in parts {
        cursor = cursor
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("just inserted a table");
    }
    cursor.insert(last.to_owned(), value);
    toml::Value::Table(table.clone())
        .try_into::<Config>()
        .map_err(|e| ConfigError::Value {
            setting: setting.to_owned(),
            message: e.message().to_owned(),
        })?;
    Ok(table)
}

/// Copies every leaf of `layer` into `merged`, recording `origin` for it.
fn overlay(
    merged: &mut toml::Table,
    origins: &mut BTreeMap<String, Origin>,
    layer: &toml::Table,
    origin: &Origin,
) {
    for (key, value) in flatten(layer) {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().expect("keys are non-empty");
        let mut cursor = &mut *merged;
        for part in parts {
            cursor = cursor
                .entry(part)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .expect("the schema has tables here");
        }
        cursor.insert(last.to_owned(), value);
        origins.insert(key, origin.clone());
    }
}

/// Every leaf of `table` as (dotted key, value), sorted.
fn flatten(table: &toml::Table) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &toml::Table)> = vec![(String::new(), table)];
    while let Some((prefix, t)) = stack.pop() {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(inner) => stack.push((key, inner)),
                leaf => out.push((key, leaf.clone())),
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn layers_override_in_order_and_remember_origin() {
        let tmp = tempfile::tempdir().unwrap();
        let user = write(
            tmp.path(),
            "config.toml",
            "max_environments = 50\n[level.basic]\nttl = \"2h\"\n",
        );
        let project = write(
            tmp.path(),
            "ptest.toml",
            "[defaults]\nmax_environments = 20\n",
        );
        let sources = ConfigSources {
            user_file: Some(user.clone()),
            project_file: Some(project),
            env: vec![("PTEST_LEVEL_BASIC_CLEANUP".into(), "never".into())],
            flags: vec![],
        };
        let loaded = LoadedConfig::load(&sources).unwrap();
        assert_eq!(loaded.config.max_environments, 20);
        assert_eq!(loaded.config.level.basic.ttl.as_secs(), 7200);
        assert_eq!(
            loaded.config.level.basic.cleanup,
            crate::model::CleanupPolicy::Never
        );
        let origin = |k: &str| {
            loaded
                .entries
                .iter()
                .find(|e| e.key == k)
                .unwrap()
                .origin
                .clone()
        };
        assert_eq!(origin("level.basic.ttl"), Origin::UserFile { path: user });
        assert!(matches!(
            origin("max_environments"),
            Origin::ProjectFile { .. }
        ));
        assert_eq!(origin("level.docker.ttl"), Origin::Default);

        let flagged = LoadedConfig::load(&ConfigSources {
            flags: vec!["max_environments=7".into()],
            ..sources
        })
        .unwrap();
        assert_eq!(flagged.config.max_environments, 7);
    }

    #[test]
    fn unknown_key_points_at_line_and_column() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(
            tmp.path(),
            "config.toml",
            "max_environments = 5\n  maxx = 3\n",
        );
        let err = validate_file(&path).unwrap_err();
        let ConfigError::File(e) = &err else {
            panic!("{err:?}")
        };
        assert_eq!((e.line, e.column), (2, 3), "{}", e.message);
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }

    #[test]
    fn wrong_type_in_env_var_names_the_variable() {
        let err = LoadedConfig::load(&ConfigSources {
            env: vec![("PTEST_MAX_ENVIRONMENTS".into(), "lots".into())],
            ..ConfigSources::default()
        })
        .unwrap_err();
        assert!(
            err.to_string().starts_with("PTEST_MAX_ENVIRONMENTS=lots:"),
            "{err}"
        );
    }
}
