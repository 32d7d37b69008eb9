//! `[[suite.services]]`: what a suite needs running beside it (a server, a database), started
//! before `setup` and stopped after `teardown`: a background process in the suite's own
//! environment (`run`), or a container of its own (`image` or `build`, as testcontainers
//! starts one), reached from the suite at `NAME:$PTEST_PORT_<NAME>`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Command;

/// One `[[suite.services]]` table as written in `ptest.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Name, unique within the suite; a container service's `[a-z][a-z0-9_-]*`, at most 26
    /// characters (the suite reaches it at this host name, on `PTEST_PORT_<NAME>`).
    pub name: Spanned<String>,
    /// The command: a process service's (run in the suite's working directory), or what a
    /// container service's container runs (its image's own entrypoint and command when
    /// absent).
    #[serde(default)]
    pub run: Option<Spanned<Command>>,
    /// A container service: the image its container runs (it must exist locally or be
    /// pullable).
    #[serde(default)]
    pub image: Option<Spanned<String>>,
    /// A container service: a directory with a Dockerfile, relative to the project, built
    /// into its image.
    #[serde(default)]
    pub build: Option<Spanned<PathBuf>>,
    /// A container service: the container's TCP ports the suite reaches, each at
    /// `NAME:$PTEST_PORT_<NAME>` (the first) or `NAME:$PTEST_PORT_<NAME>_<PORT>` (every one).
    #[serde(default)]
    pub ports: Option<Spanned<Vec<u16>>>,
    /// Extra variables.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// Ready when this port (a number or the name of a port lease) accepts connections; in a
    /// container, its own port.
    #[serde(default)]
    pub ready_port: Option<String>,
    /// Ready when a line of its output matches this regular expression.
    #[serde(default)]
    pub ready_log: Option<String>,
    /// Ready when `URL[=STATUS]` answers (any 2xx by default); in a container, from inside it.
    #[serde(default)]
    pub ready_http: Option<String>,
    /// Ready when this command exits 0; in a container, run there.
    #[serde(default)]
    pub ready_cmd: Option<String>,
    /// How long to wait for readiness (default 60s).
    #[serde(default, with = "ptest_core::duration::option")]
    pub ready_timeout: Option<Duration>,
}

/// One checked service of a suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// Name, unique within the suite (`ptest proc list` shows it).
    pub name: String,
    /// The command; for a container service, none means its image's own.
    pub run: Option<Command>,
    /// Where it runs: a container of its own, or (none) the suite's environment.
    pub container: Option<ServiceContainer>,
    /// Extra variables.
    pub env_vars: BTreeMap<String, String>,
    /// When it counts as ready (`ready_timeout`: 60 s unless given).
    pub ready: ptest_core::Readiness,
}

/// The container of a container service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceContainer {
    /// Its image.
    pub image: Option<String>,
    /// Or the directory (absolute) its image is built from.
    pub build: Option<PathBuf>,
    /// The container ports the suite reaches.
    pub ports: Vec<u16>,
}

impl ServiceContainer {
    /// The spec of its environment: of the level its image asks for (see
    /// [`ptest_core::ContainerArgs`]), named `name` when given.
    pub fn spec(&self, name: Option<ptest_core::EnvName>) -> ptest_core::EnvironmentSpec {
        let containers = ptest_core::ContainerArgs {
            image: self.image.clone(),
            build: self.build.clone(),
            ..Default::default()
        };
        let level = ptest_core::IsolationLevel::implied(
            &containers,
            false,
            ptest_core::IsolationLevel::default(),
        );
        let mut spec = ptest_core::EnvironmentSpec::new(level);
        spec.name = name;
        (spec.docker, spec.kubernetes) = containers.into_sections(level);
        spec
    }

    /// The variable the suite finds container port `port` in: `PTEST_PORT_<NAME>_<PORT>`
    /// (the first port is also `PTEST_PORT_<NAME>`).
    pub fn port_var(name: &str, port: Option<u16>) -> String {
        let base = format!("PTEST_PORT_{}", name.to_ascii_uppercase().replace('-', "_"));
        match port {
            Some(p) => format!("{base}_{p}"),
            None => base,
        }
    }
}

/// A refusal of a service table: the message, where (a span of the file) and what to do.
pub(crate) type Refusal = (String, std::ops::Range<usize>, &'static str);

impl ServiceConfig {
    /// Checks the table and gives the service, with paths resolved against `dir`.
    pub(crate) fn check(&self, suite: &str, dir: &std::path::Path) -> Result<Service, Refusal> {
        let name = self.name.get_ref();
        let container = self.image.is_some() || self.build.is_some();
        if container && let Some(why) = check_name(name) {
            return Err((why, self.name.span(), "rename the service"));
        }
        if let (Some(_), Some(build)) = (&self.image, &self.build) {
            return Err((
                format!("service {name:?} of suite {suite:?} has both `image` and `build`"),
                build.span(),
                "keep one: an image to run, or a directory to build one from",
            ));
        }
        if let Some(image) = &self.image
            && let Err(why) = ptest_core::model::image_ref::check(image.get_ref())
        {
            return Err((why, image.span(), "name an image as docker does (redis:7)"));
        }
        if let Some(run) = &self.run
            && run.get_ref().is_empty()
        {
            return Err((
                format!("service {name:?} of suite {suite:?} has an empty `run`"),
                run.span(),
                "give the command that runs the service",
            ));
        }
        if !container && self.run.is_none() {
            return Err((
                format!("service {name:?} of suite {suite:?} has no `run`, `image` or `build`"),
                self.name.span(),
                "a process service needs run = \"COMMAND\"; a container service image = \"IMAGE\" or build = \"DIR\"",
            ));
        }
        if let Some(ports) = &self.ports {
            if !container {
                return Err((
                    format!(
                        "service {name:?} of suite {suite:?}: `ports` are a container service's \
                         (this one runs in the suite's environment)"
                    ),
                    ports.span(),
                    "lease ports to the template with ports = [\"NAME\"] and listen on \
                     $PTEST_PORT_<NAME>, or give the service an image",
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            if let Some(bad) = ports
                .get_ref()
                .iter()
                .find(|p| **p == 0 || !seen.insert(**p))
            {
                return Err((
                    format!("service {name:?}: port {bad} is 0 or listed twice"),
                    ports.span(),
                    "list each container port once",
                ));
            }
        }
        Ok(Service {
            name: name.clone(),
            run: self.run.as_ref().map(|r| r.get_ref().clone()),
            container: container.then(|| ServiceContainer {
                image: self.image.as_ref().map(|i| i.get_ref().clone()),
                build: self.build.as_ref().map(|b| dir.join(b.get_ref())),
                ports: self
                    .ports
                    .as_ref()
                    .map(|p| p.get_ref().clone())
                    .unwrap_or_default(),
            }),
            env_vars: self.env_vars.clone(),
            ready: ptest_core::Readiness {
                port: self.ready_port.clone(),
                log: self.ready_log.clone(),
                http: self.ready_http.clone(),
                cmd: self.ready_cmd.clone(),
                timeout: self
                    .ready_timeout
                    .unwrap_or(ptest_core::Readiness::default().timeout),
            },
        })
    }

    /// Where its container's image is named (`image` or `build`), for an engine's refusal.
    pub(crate) fn image_span(&self) -> Option<std::ops::Range<usize>> {
        self.image
            .as_ref()
            .map(Spanned::span)
            .or_else(|| self.build.as_ref().map(Spanned::span))
    }
}

/// Longest name of a container service: its ports are leased as `NAME-PORT`, and a lease's name
/// has at most 32 characters.
pub const MAX_SERVICE_NAME: usize = 26;

/// Why `name` cannot name a container service, if it cannot: it becomes a host name and a
/// port lease's name (`PTEST_PORT_<NAME>`).
fn check_name(name: &str) -> Option<String> {
    let ok = name.len() <= MAX_SERVICE_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    (!ok).then(|| {
        format!(
            "service name {name:?} must match [a-z][a-z0-9_-]* and have at most \
             {MAX_SERVICE_NAME} characters (it becomes a host name and PTEST_PORT_<NAME>)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_host_and_port_names() {
        assert!(check_name("redis").is_none());
        assert!(check_name("db_2-x").is_none());
        assert!(check_name("Redis").is_some());
        assert!(check_name("2db").is_some());
        assert!(check_name("a.b").is_some());
        assert!(check_name(&"a".repeat(27)).is_some());
    }

    #[test]
    fn port_variables_name_the_service_and_the_port() {
        assert_eq!(
            ServiceContainer::port_var("my-db", None),
            "PTEST_PORT_MY_DB"
        );
        assert_eq!(
            ServiceContainer::port_var("my-db", Some(5432)),
            "PTEST_PORT_MY_DB_5432"
        );
    }
}
