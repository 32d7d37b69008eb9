//! Python values to ptest's types, checked where ptest checks them: a spec goes through the
//! same serde validation as a `ptest.toml` template (limits, names, ports, rules).

use std::path::PathBuf;
use std::time::Duration;

use ptest_core::{EnvironmentSpec, IsolationLevel};
use pyo3::prelude::*;
use serde_json::{Map, Value, json};

use crate::errors::ConfigError;

/// A duration given as seconds (`1.5`) or as ptest writes them (`"500ms"`, `"5m"`).
pub(crate) fn duration(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Duration>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if let Ok(text) = value.extract::<String>() {
        return ptest_core::duration::parse(&text)
            .map(Some)
            .map_err(ConfigError::new_err);
    }
    let secs: f64 = value.extract()?;
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|_| ConfigError::new_err(format!("{secs} is not a duration in seconds")))
}

/// A command: a list of arguments, or one string run by `sh -c` (as `ptest.toml`'s `run`).
pub(crate) fn argv(value: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(line) = value.extract::<String>() {
        return Ok(vec!["sh".into(), "-c".into(), line]);
    }
    let argv: Vec<String> = value.extract()?;
    if argv.is_empty() {
        return Err(ConfigError::new_err("no command given"));
    }
    Ok(argv)
}

/// What `create_environment` was given.
#[derive(Default)]
pub(crate) struct SpecArgs {
    pub name: Option<String>,
    pub level: Option<String>,
    pub path: Option<PathBuf>,
    pub packages: Vec<String>,
    pub requirements: Vec<PathBuf>,
    pub constraints: Vec<PathBuf>,
    pub find_links: Vec<String>,
    pub no_index: bool,
    pub index_url: Option<String>,
    pub python: Option<String>,
    pub image: Option<String>,
    pub build: Option<PathBuf>,
    pub security: Option<String>,
    pub network: Option<String>,
    pub allow: Vec<String>,
    pub ports: Vec<String>,
    pub memory: Option<Value>,
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
    pub nofile: Option<u64>,
    pub disk: Option<Value>,
    pub files: Option<u64>,
    pub cleanup: Option<String>,
    pub ttl: Option<Duration>,
    pub exec_timeout: Option<Duration>,
    pub labels: Vec<(String, String)>,
    pub allow_degraded: bool,
}

/// A size given as bytes (`1 << 30`) or as ptest writes them (`"512M"`).
pub(crate) fn size(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Value>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if let Ok(text) = value.extract::<String>() {
        return Ok(Some(Value::String(text)));
    }
    let bytes: u64 = value.extract()?;
    Ok(Some(json!(bytes)))
}

fn absolute(paths: Vec<PathBuf>) -> PyResult<Vec<PathBuf>> {
    paths
        .into_iter()
        .map(|p| std::path::absolute(&p).map_err(|e| ConfigError::new_err(e.to_string())))
        .collect()
}

impl SpecArgs {
    /// The spec, with the level inferred as `ptest env create` infers it (an image means
    /// docker, packages mean virtualenv) and the level's configured cleanup by default.
    pub(crate) fn into_spec(self, config: &ptest_core::Config) -> PyResult<EnvironmentSpec> {
        let containers = ptest_core::ContainerArgs {
            image: self.image,
            build: absolute(self.build.into_iter().collect())?.pop(),
            ..Default::default()
        };
        let wants_python = self.python.is_some()
            || !self.packages.is_empty()
            || !self.requirements.is_empty()
            || !self.constraints.is_empty()
            || !self.find_links.is_empty()
            || self.index_url.is_some();
        let level: IsolationLevel = match &self.level {
            Some(l) => parse(l)?,
            None => IsolationLevel::implied(&containers, wants_python, config.default_level),
        };
        let mut spec = Map::new();
        spec.insert("name".into(), json!(self.name));
        spec.insert("level".into(), json!(level));
        spec.insert("path".into(), json!(self.path));
        spec.insert(
            "labels".into(),
            Value::Object(
                self.labels
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ),
        );
        let cleanup = match self.cleanup {
            Some(c) => json!(c),
            None => json!(config.level(level).cleanup),
        };
        spec.insert("cleanup".into(), cleanup);
        let seconds = |d: Option<Duration>| d.map(|d| format!("{}ms", d.as_millis()));
        spec.insert("ttl".into(), json!(seconds(self.ttl)));
        spec.insert("exec_timeout".into(), json!(seconds(self.exec_timeout)));
        let mut limits = Map::new();
        let mut put = |key: &str, v: Option<Value>| {
            if let Some(v) = v {
                limits.insert(key.into(), v);
            }
        };
        put("memory", self.memory);
        put("cpus", self.cpus.map(|c| json!(c)));
        put("pids", self.pids.map(|c| json!(c)));
        put("nofile", self.nofile.map(|c| json!(c)));
        put("disk", self.disk);
        put("files", self.files.map(|c| json!(c)));
        spec.insert("limits".into(), Value::Object(limits));
        spec.insert("network".into(), json!(self.network));
        spec.insert("security".into(), json!(self.security));
        spec.insert("allow_degraded".into(), json!(self.allow_degraded));
        spec.insert("ports".into(), json!(self.ports));
        spec.insert("allow".into(), json!(self.allow));
        if wants_python {
            // Every field named (no `..Default::default()`): a new one cannot be missed here.
            let venv = ptest_core::VirtualenvSpec {
                python: self.python,
                packages: self.packages,
                requirements: absolute(self.requirements)?,
                constraints: absolute(self.constraints)?,
                find_links: self.find_links,
                no_index: self.no_index,
                index_url: self.index_url,
                extra_index_urls: Vec::new(),
                offline: false,
                project: None,
            };
            spec.insert("virtualenv".into(), json!(venv));
        }
        let (docker, kubernetes) = containers.into_sections(level);
        spec.insert("docker".into(), json!(docker));
        spec.insert("kubernetes".into(), json!(kubernetes));
        serde_json::from_value(Value::Object(spec))
            .map_err(|e| ConfigError::new_err(format!("bad environment settings: {e}")))
    }
}

/// Parses a ptest value (`"virtualenv"`, `"http"`, `"on-failure:3"`) as the CLI does.
pub(crate) fn parse<T>(text: &str) -> PyResult<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e: T::Err| ConfigError::new_err(e.to_string()))
}

/// A ptest value as Python dicts and lists, in the shape its `--json` output has.
pub(crate) fn to_python<'py, T: serde::Serialize>(
    py: Python<'py>,
    value: &T,
) -> PyResult<Bound<'py, PyAny>> {
    // Through JSON: the documented shapes, and numbers pythonize cannot take (u128).
    let json = serde_json::to_value(value)
        .map_err(|e| crate::errors::EngineError::new_err(e.to_string()))?;
    pythonize::pythonize(py, &json).map_err(|e| crate::errors::EngineError::new_err(e.to_string()))
}
