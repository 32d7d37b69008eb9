//! `[env.NAME]`: the environment template a suite runs in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ptest_core::{
    AllowRule, CleanupPolicy, EnvName, EnvironmentSpec, ExposedSocket, IsolationLevel, Labels,
    Limits, NetworkMode, PortName, SecurityLevel, VirtualenvSpec,
};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// How a suite sees the project. Without a `project` key, a suite gets `overlay` where its
/// environment is sandboxed (a `basic` or `virtualenv` environment at security `medium` and
/// above) and `copy` elsewhere (security `low`, a host without namespaces, `docker`); when
/// the overlay cannot be had there, the project is copied and the suite's report says why.
/// Both leave out what a copy leaves out (`.git`, `target/`, `.ptestignore`, see
/// [`crate::copy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProjectMode {
    /// A private copy of the project tree in the environment's `workspace/`: suites never
    /// see each other's writes and the project is left as it was. Costs a walk and a copy
    /// (reflinks where the filesystem can) of the tree per suite and per retry.
    Copy,
    /// The real project directory: writes go to the user's tree. At security level
    /// `medium` and above the sandbox shows the host read-only, the project included; use
    /// `security = "low"` for a suite that must write to it.
    Bind,
    /// The project seen through a copy-on-write layer (overlayfs) mounted on the
    /// environment's `workspace/` inside its sandbox: nothing is copied, writes land in the
    /// environment's `overlay/upper/` and never in the project, and each retry starts from
    /// an empty layer. Needs a sandboxed `basic` or `virtualenv` environment; asked for where
    /// there is none, the suite is refused.
    Overlay,
}

/// An `[env.NAME]` table as written in `ptest.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
// Every key may be left out: a missing one is `Default`'s.
#[serde(default, deny_unknown_fields)]
pub struct EnvTemplateConfig {
    /// Isolation level; `virtualenv` when any Python key is set, else `basic`.
    pub level: Option<IsolationLevel>,
    /// Interpreter of a virtualenv (`3.11`, a path or a command), or a list of them: each
    /// suite of the template then runs once per entry, as `NAME[py3.11]`.
    pub python: Option<Spanned<PythonKey>>,
    /// Requirements to install (`requests==2.31`, `.`, `-e ./sub`).
    pub packages: Vec<String>,
    /// Requirements files, relative to the project directory.
    pub requirements: Vec<PathBuf>,
    /// Constraints files, relative to the project directory.
    pub constraints: Vec<PathBuf>,
    /// Directories of wheels (relative to the project directory) or URLs.
    pub find_links: Vec<String>,
    /// Install from `find_links` only.
    pub no_index: bool,
    /// The package index to use instead of PyPI (as `env create --index-url`).
    pub index_url: Option<String>,
    /// More package indexes (as `--extra-index-url`).
    pub extra_index_urls: Vec<String>,
    /// Use nothing from the network (as `--offline`).
    pub offline: bool,
    /// Resource limits, passed to the engine (which refuses what it cannot apply).
    pub limits: Limits,
    /// Network mode, passed to the engine.
    pub network: Option<NetworkMode>,
    /// Where a `bridge` environment may send (`HOST[:PORT]`, as `env create --allow`).
    pub allow: Vec<AllowRule>,
    /// Host Unix sockets shown inside at their own paths (`env create --expose-socket`).
    pub expose_sockets: Vec<ExposedSocket>,
    /// Security level, passed to the engine.
    pub security: Option<SecurityLevel>,
    /// When a suite's environment goes: `immediate` (the default) when the suite ends,
    /// `on_shutdown` when the run ends, `on_request` kept until `ptest env rm`, `scheduled`
    /// kept until `ptest gc` after `ttl`, `never` kept until `ptest env rm --force`.
    pub cleanup: Option<Spanned<CleanupPolicy>>,
    /// Time to live of a kept environment under the `scheduled` policy.
    #[serde(with = "ptest_core::duration::option")]
    pub ttl: Option<Duration>,
    /// Keep the environments after the run (as `cleanup = "on_request"`, or under the
    /// `scheduled` or `never` policy when one is given).
    pub keep: bool,
    /// How suites see the project: `overlay`, `copy` or `bind` (see [`ProjectMode`]); by
    /// default `overlay` where the environment is sandboxed, else `copy`.
    pub project: Option<Spanned<ProjectMode>>,
    /// Named host ports leased to each environment (`PTEST_PORT_<NAME>` in its commands).
    pub ports: Vec<PortName>,
    /// Variables for every command of its suites (tox's `setenv`); a suite's own `env_vars`
    /// win.
    pub env_vars: BTreeMap<String, String>,
    /// Install the project under test (as `packages = ["."]`): built once per run into a
    /// wheel, its dependencies installed with the other packages, the wheel into each suite's
    /// environment.
    pub install_project: bool,
    /// Image of a `docker` environment (as `env create --image`); implies `level = "docker"`.
    pub image: Option<Spanned<String>>,
    /// Directory with a Dockerfile, relative to the project, built into the image of a
    /// `docker` environment (as `env create --build`); implies `level = "docker"`.
    pub build: Option<Spanned<PathBuf>>,
    /// Put pip into the venv (uv makes venvs without it), for suites that run
    /// `python -m pip`: installed like any other package, so part of the template's hash.
    pub pip: bool,
}

/// A template's `python`: one interpreter, or a matrix of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PythonKey {
    /// `python = "3.11"`.
    One(String),
    /// `python = ["3.11", "3.12"]`: one template per entry, named `NAME[py3.11]`.
    Many(Vec<String>),
}

/// The label of matrix entry `python` in suite and template names: `py3.11` for a version,
/// the entry itself otherwise (`pypy3.10`).
pub(crate) fn python_label(python: &str) -> String {
    if python.starts_with(|c: char| c.is_ascii_digit()) {
        format!("py{python}")
    } else {
        python.to_owned()
    }
}

/// A checked environment template, its relative paths resolved against the project directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvTemplate {
    /// The template's name (`[env.NAME]`), or `basic` for suites that name none.
    pub name: String,
    /// Isolation level.
    pub level: IsolationLevel,
    /// Python settings of a `virtualenv` environment.
    pub virtualenv: Option<VirtualenvSpec>,
    /// The container of a `docker` environment.
    pub docker: Option<ptest_core::DockerSpec>,
    /// The pod of a `kubernetes` environment.
    pub kubernetes: Option<ptest_core::KubernetesSpec>,
    /// Resource limits.
    pub limits: Limits,
    /// Network mode.
    pub network: Option<NetworkMode>,
    /// Where a `bridge` environment may send.
    pub allow: Vec<AllowRule>,
    /// Host Unix sockets shown inside.
    pub expose_sockets: Vec<ExposedSocket>,
    /// Security level.
    pub security: Option<SecurityLevel>,
    /// When its environments go (see [`EnvTemplate::disposal`]).
    pub cleanup: CleanupPolicy,
    /// Time to live under `scheduled`.
    #[serde(with = "ptest_core::duration::option")]
    pub ttl: Option<Duration>,
    /// Whether environments are kept after the run.
    pub keep: bool,
    /// How suites see the project; `None`: overlay where the environment is sandboxed, else
    /// copy (see [`ProjectMode`]).
    pub project: Option<ProjectMode>,
    /// Named host ports leased to each environment.
    pub ports: Vec<PortName>,
    /// Variables for every command of its suites.
    pub env_vars: BTreeMap<String, String>,
    /// Whether suites get the project installed (built once per run into a wheel), and with
    /// which extras (`.[test]`).
    pub install_project: Option<Vec<String>>,
}

impl EnvTemplate {
    /// The template of suites that name no `env`: an environment of the default level,
    /// named after it, the project seen as the default [`ProjectMode`] says.
    pub fn default_template() -> Self {
        Self {
            name: IsolationLevel::default().to_string(),
            level: IsolationLevel::default(),
            virtualenv: None,
            docker: None,
            kubernetes: None,
            limits: Limits::default(),
            network: None,
            allow: Vec::new(),
            expose_sockets: Vec::new(),
            security: None,
            cleanup: CleanupPolicy::Immediate,
            ttl: None,
            keep: false,
            project: None,
            ports: Vec::new(),
            env_vars: BTreeMap::new(),
            install_project: None,
        }
    }

    /// Builds the template from its table with interpreter `python` (the table's, or one
    /// entry of its matrix); `dir` is the project directory. The checks that need spans
    /// (project mode, cleanup, the matrix) are done by the caller before this.
    pub(crate) fn from_config(
        name: &str,
        c: EnvTemplateConfig,
        python: Option<String>,
        dir: &Path,
    ) -> Self {
        let (project_entries, packages): (Vec<&String>, Vec<&String>) =
            c.packages.iter().partition(|p| project_extras(p).is_some());
        let install_project = (c.install_project || !project_entries.is_empty()).then(|| {
            let mut extras: Vec<String> = project_entries
                .iter()
                .filter_map(|p| project_extras(p))
                .flatten()
                .collect();
            extras.sort();
            extras.dedup();
            extras
        });
        let python_keys = python.is_some()
            || install_project.is_some()
            || c.pip
            || !c.packages.is_empty()
            || !c.requirements.is_empty()
            || !c.constraints.is_empty()
            || !c.find_links.is_empty()
            || c.no_index
            || c.index_url.is_some()
            || !c.extra_index_urls.is_empty()
            || c.offline;
        let containers = ptest_core::ContainerArgs {
            image: c.image.as_ref().map(|i| i.get_ref().clone()),
            build: c.build.as_ref().map(|b| dir.join(b.get_ref())),
            ..Default::default()
        };
        let level = c.level.unwrap_or_else(|| {
            IsolationLevel::implied(&containers, python_keys, IsolationLevel::default())
        });
        let (docker, kubernetes) = containers.into_sections(level);
        let virtualenv = python_keys.then(|| VirtualenvSpec {
            python,
            packages: packages
                .iter()
                .map(|p| resolve_requirement(p, dir))
                .chain(c.pip.then(|| "pip".to_owned()))
                .collect(),
            requirements: c.requirements.iter().map(|p| dir.join(p)).collect(),
            constraints: c.constraints.iter().map(|p| dir.join(p)).collect(),
            find_links: c
                .find_links
                .iter()
                .map(|l| {
                    if l.contains("://") {
                        l.clone()
                    } else {
                        dir.join(l).display().to_string()
                    }
                })
                .collect(),
            no_index: c.no_index,
            index_url: c.index_url.clone(),
            extra_index_urls: c.extra_index_urls.clone(),
            offline: c.offline,
            // Set per run, from the project's wheel (`install_project`).
            project: None,
        });
        Self {
            name: name.to_owned(),
            level,
            virtualenv,
            docker,
            kubernetes,
            limits: c.limits,
            network: c.network,
            allow: c.allow,
            expose_sockets: c.expose_sockets,
            security: c.security,
            cleanup: c
                .cleanup
                .map_or(CleanupPolicy::Immediate, Spanned::into_inner),
            ttl: c.ttl,
            keep: c.keep,
            project: c.project.map(Spanned::into_inner),
            ports: c.ports,
            env_vars: c.env_vars,
            install_project,
        }
    }

    /// The spec of one environment made from this template.
    pub fn spec(&self, name: EnvName, labels: Labels) -> EnvironmentSpec {
        let mut spec = EnvironmentSpec::new(self.level).name(name);
        spec.labels = labels;
        spec.cleanup = self.cleanup;
        spec.ttl = self.ttl;
        spec.limits = self.limits.clone();
        spec.network = self.network;
        spec.allow = self.allow.clone();
        spec.expose_sockets = self.expose_sockets.clone();
        spec.security = self.security;
        spec.virtualenv = self.virtualenv.clone();
        spec.docker = self.docker.clone();
        spec.kubernetes = self.kubernetes.clone();
        spec.ports = self.ports.clone();
        spec
    }

    /// What becomes of an environment of this template when its suite ends; `keep_all` is
    /// `ptest run --keep`.
    pub fn disposal(&self, keep_all: bool) -> Disposal {
        let keeping = |p| match p {
            CleanupPolicy::Scheduled | CleanupPolicy::Never => p,
            _ => CleanupPolicy::OnRequest,
        };
        match self.cleanup {
            p if keep_all || self.keep => Disposal::Keep(keeping(p)),
            CleanupPolicy::Immediate => Disposal::EndOfSuite,
            CleanupPolicy::OnShutdown => Disposal::EndOfRun,
            p => Disposal::Keep(p),
        }
    }
}

/// What becomes of a suite's environment, from its template's `cleanup` and `keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposal {
    /// Removed as soon as the suite ends (`immediate`, the default).
    EndOfSuite,
    /// Removed when the run ends (`on_shutdown`).
    EndOfRun,
    /// Outlives the run and carries this policy afterwards: `on_request` (removed by
    /// `ptest env rm`), `scheduled` (by `ptest gc` once its `ttl` passed) or `never`.
    Keep(CleanupPolicy),
}

/// Makes a requirement naming a relative path (`.`, `./sub`, `-e .`, `../lib`) absolute
/// against `dir`, since installs run elsewhere; any other requirement is returned as is.
/// The extras of a `packages` entry naming the project itself (`.`, `./`, `-e .`,
/// `.[test,docs]`), or `None` for any other entry. An editable install (`-e .`) is made as a
/// wheel too: one editable tree would be shared by every suite, and would be the user's.
fn project_extras(entry: &str) -> Option<Vec<String>> {
    let entry = entry.trim();
    let entry = match entry.strip_prefix("-e") {
        Some(rest) if rest.starts_with(char::is_whitespace) => rest.trim(),
        _ => entry,
    };
    let rest = match entry.strip_prefix("./") {
        Some(rest) => rest,
        None => entry
            .strip_prefix('.')
            .filter(|r| !r.starts_with(['.', '/']))?,
    };
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let extras = rest.strip_prefix('[')?.strip_suffix(']')?;
    Some(
        extras
            .split(',')
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect(),
    )
}

pub(crate) fn resolve_requirement(requirement: &str, dir: &Path) -> String {
    let trimmed = requirement.trim();
    let (editable, rest) = match trimmed.strip_prefix("-e") {
        Some(rest) if rest.starts_with(char::is_whitespace) => (true, rest.trim()),
        _ => (false, trimmed),
    };
    let relative = rest == "." || rest == ".." || rest.starts_with("./") || rest.starts_with("../");
    let target = if relative {
        let rel = rest.strip_prefix("./").unwrap_or(rest);
        let joined = if rel == "." {
            dir.to_path_buf()
        } else {
            dir.join(rel)
        };
        joined.display().to_string()
    } else {
        rest.to_owned()
    };
    if editable {
        format!("-e {target}")
    } else {
        target
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;

    /// A template sets every package source the CLI can (they once drifted apart).
    #[test]
    fn a_template_takes_the_package_sources_env_create_takes() {
        let c: EnvTemplateConfig = toml::from_str(
            "packages = ['a']\nindex_url = 'https://i.example/simple'\n\
             extra_index_urls = ['https://j.example/simple']\noffline = true\n",
        )
        .expect("parses");
        let t = EnvTemplate::from_config("t", c, None, Path::new("/p"));
        let venv = t.virtualenv.expect("venv");
        assert_eq!(venv.index_url.as_deref(), Some("https://i.example/simple"));
        assert_eq!(venv.extra_index_urls, ["https://j.example/simple"]);
        assert!(venv.offline);
        // A package source alone, with nothing to install yet, makes a virtualenv too.
        let c: EnvTemplateConfig =
            toml::from_str("index_url = 'https://i.example/simple'").expect("parses");
        let t = EnvTemplate::from_config("t", c, None, Path::new("/p"));
        assert_eq!(t.level, IsolationLevel::Virtualenv);
        assert!(t.virtualenv.is_some_and(|v| v.index_url.is_some()));
    }
}

#[cfg(test)]
mod project_entry_tests {
    use super::project_extras;

    #[test]
    fn the_project_is_named_by_a_dot_with_or_without_e_and_extras() {
        let none: Vec<String> = Vec::new();
        for entry in [".", "./", "-e .", "-e  ./"] {
            assert_eq!(project_extras(entry), Some(none.clone()), "{entry}");
        }
        assert_eq!(
            project_extras("-e .[test, docs]"),
            Some(vec!["test".to_owned(), "docs".to_owned()])
        );
        for entry in ["./sub", "..", "../x", "requests", "-e ./sub", ".x"] {
            assert_eq!(project_extras(entry), None, "{entry}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_requirements_resolve_against_the_project() {
        let dir = Path::new("/p");
        assert_eq!(resolve_requirement(".", dir), "/p");
        assert_eq!(resolve_requirement("-e .", dir), "-e /p");
        assert_eq!(resolve_requirement("./sub", dir), "/p/sub");
        assert_eq!(resolve_requirement("requests==2.31", dir), "requests==2.31");
        assert_eq!(resolve_requirement("-e /abs", dir), "-e /abs");
    }

    #[test]
    fn cleanup_policies_say_when_environments_go() {
        let t = |toml: &str| {
            let c: EnvTemplateConfig = toml::from_str(toml).expect("parses");
            EnvTemplate::from_config("t", c, None, Path::new("/p"))
        };
        assert_eq!(t("").disposal(false), Disposal::EndOfSuite);
        assert_eq!(
            t("").disposal(true),
            Disposal::Keep(CleanupPolicy::OnRequest)
        );
        assert_eq!(
            t("cleanup = 'on_shutdown'").disposal(false),
            Disposal::EndOfRun
        );
        assert_eq!(
            t("cleanup = 'scheduled'\nttl = '1h'").disposal(false),
            Disposal::Keep(CleanupPolicy::Scheduled)
        );
        assert_eq!(
            t("keep = true").disposal(false),
            Disposal::Keep(CleanupPolicy::OnRequest)
        );
        assert_eq!(
            t("cleanup = 'never'").disposal(true),
            Disposal::Keep(CleanupPolicy::Never)
        );
    }

    #[test]
    fn python_keys_imply_virtualenv() {
        let c: EnvTemplateConfig = toml::from_str("packages = ['a']").expect("parses");
        let t = EnvTemplate::from_config("py", c, None, Path::new("/p"));
        assert_eq!(t.level, IsolationLevel::Virtualenv);
        assert_eq!(t.virtualenv.expect("venv").packages, ["a"]);
    }
}
