//! The `ptest.toml` model, one file per config element as nextest does: [`EnvTemplate`]
//! (`[env.NAME]`), [`Suite`] (`[[suite]]`), [`Command`]. `[defaults]` is ptest-core's
//! configuration and is accepted and ignored here. [`Project::load`] checks everything that
//! can be checked without running (unknown keys, durations, names, references, dependency
//! cycles, features not available yet) and points at file, line and column.

mod command;
mod service;
mod suite;
mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ptest_core::CleanupPolicy;
use serde::Deserialize;
use toml::Spanned;

pub use command::Command;
pub(crate) use command::quote;
pub use service::{Service, ServiceConfig, ServiceContainer};
pub use suite::{MAX_SUITE_NAME, Parallel, Split, Suite, SuiteConfig};
use template::python_label;
pub use template::{Disposal, EnvTemplate, EnvTemplateConfig, ProjectMode, PythonKey};

use crate::error::{ProjectError, ProjectFileError};

/// The name of the project file.
pub const PROJECT_FILE: &str = "ptest.toml";

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    /// ptest-core's configuration layer; checked by `ptest config`, ignored here.
    #[serde(default, rename = "defaults")]
    _defaults: Option<toml::Value>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, EnvTemplateConfig>,
    #[serde(default)]
    suite: Vec<SuiteConfig>,
}

/// A loaded and checked `ptest.toml`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Project {
    /// The project directory (where `ptest.toml` lives), absolute.
    pub dir: PathBuf,
    /// The `ptest.toml` file.
    pub file: PathBuf,
    /// Environment templates by name, including `basic` for suites that name none.
    pub templates: BTreeMap<String, EnvTemplate>,
    /// Suites in file order.
    pub suites: Vec<Suite>,
    /// Where what the engines judge was written, for [`Project::check_engines`].
    #[serde(skip)]
    written: std::sync::Arc<Written>,
}

/// The file's text and where each part that only an engine can judge stands in it.
#[derive(Debug, Default, PartialEq)]
struct Written {
    text: String,
    /// Per template (a matrix's entries each): its `[env.NAME]` key and its `project` key.
    templates: BTreeMap<String, (Span, Option<Span>)>,
    /// Per `split` key: the template its suite runs in, and the key.
    splits: Vec<(String, Span)>,
    /// Per container service: its container and where its image is named.
    containers: Vec<(ServiceContainer, Span)>,
}

type Span = std::ops::Range<usize>;

impl Project {
    /// Finds `ptest.toml` in `start` or the nearest parent that has one, and loads it.
    pub fn discover(start: &Path) -> Result<Self, ProjectError> {
        let start = std::path::absolute(start).unwrap_or_else(|_| start.to_owned());
        match start
            .ancestors()
            .map(|d| d.join(PROJECT_FILE))
            .find(|f| f.is_file())
        {
            Some(file) => Self::load(&file),
            None => Err(ProjectError::NotFound { start }),
        }
    }

    /// Loads `path`: a `ptest.toml` file, or a directory holding one.
    pub fn load(path: &Path) -> Result<Self, ProjectError> {
        let file = if path.is_dir() {
            path.join(PROJECT_FILE)
        } else {
            path.to_owned()
        };
        let file = std::path::absolute(&file).map_err(|source| ProjectError::Read {
            path: file.clone(),
            source,
        })?;
        let text = std::fs::read_to_string(&file).map_err(|source| ProjectError::Read {
            path: file.clone(),
            source,
        })?;
        let dir = file.parent().expect("an absolute file path has a parent");
        // Without `..` or symlinks: an overlay's lower directory must be a plain path.
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        Self::parse(&file, &dir, &text)
    }

    /// Parses and checks `text`, the contents of `file` in project directory `dir`.
    pub fn parse(file: &Path, dir: &Path, text: &str) -> Result<Self, ProjectError> {
        let err = |span: Option<std::ops::Range<usize>>, message: String, help: Option<&str>| {
            ProjectError::File(Box::new(ProjectFileError::at(
                file,
                text.to_owned(),
                span,
                message,
                help.map(str::to_owned),
            )))
        };
        let parsed: ProjectFile = toml::from_str(text).map_err(|e| {
            let help = e.message().contains("unknown field").then_some(
                "remove the key or fix its spelling; see examples/project/ptest.toml for every key",
            );
            err(e.span(), e.message().trim().to_owned(), help)
        })?;

        let mut templates = BTreeMap::new();
        let mut written = Written {
            text: text.to_owned(),
            ..Written::default()
        };
        let default = EnvTemplate::default_template();
        let default_name = default.name.clone();
        templates.insert(default_name.clone(), default);
        // Templates with a `python` list: their entries, each a template `NAME[LABEL]`.
        let mut matrices: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, config) in parsed.env {
            if let Some(image) = &config.image
                && let Err(why) = ptest_core::model::image_ref::check(image.get_ref())
            {
                return Err(err(Some(image.span()), why, None));
            }
            let spans = (
                name.span(),
                config
                    .project
                    .as_ref()
                    .filter(|m| *m.get_ref() == ProjectMode::Overlay)
                    .map(Spanned::span),
            );
            if let Some(policy) = &config.cleanup
                && config.keep
                && matches!(
                    policy.get_ref(),
                    CleanupPolicy::Immediate | CleanupPolicy::OnShutdown
                )
            {
                return Err(err(
                    Some(policy.span()),
                    format!(
                        "keep = true contradicts cleanup = \"{}\", which removes the \
                         environment during the run",
                        policy.get_ref()
                    ),
                    Some("drop one: keep = true keeps environments under `on_request`"),
                ));
            }
            let python = config.python.clone();
            match python.as_ref().map(|p| (p.span(), p.get_ref())) {
                Some((span, PythonKey::Many(versions))) => {
                    if let Some(problem) = matrix_problem(versions) {
                        return Err(err(
                            Some(span),
                            problem,
                            Some("list interpreters as python = [\"3.11\", \"3.12\"]"),
                        ));
                    }
                    for python in versions {
                        let variant = format!("{}[{}]", name.get_ref(), python_label(python));
                        let template = EnvTemplate::from_config(
                            &variant,
                            config.clone(),
                            Some(python.clone()),
                            dir,
                        );
                        written.templates.insert(variant.clone(), spans.clone());
                        templates.insert(variant, template);
                    }
                    matrices.insert(name.into_inner(), versions.clone());
                }
                Some((_, PythonKey::One(python))) => {
                    let template =
                        EnvTemplate::from_config(name.get_ref(), config, Some(python.clone()), dir);
                    written.templates.insert(name.get_ref().clone(), spans);
                    templates.insert(name.into_inner(), template);
                }
                None => {
                    let template = EnvTemplate::from_config(name.get_ref(), config, None, dir);
                    written.templates.insert(name.get_ref().clone(), spans);
                    templates.insert(name.into_inner(), template);
                }
            }
        }

        let mut suites: Vec<Suite> = Vec::new();
        // Suites of matrix templates: their entries' names.
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut spans = BTreeMap::new();
        for config in &parsed.suite {
            let name = config.name.get_ref();
            if let Some(problem) = suite::check_name(name) {
                return Err(err(Some(config.name.span()), problem, None));
            }
            if spans.insert(name.clone(), config.name.span()).is_some() {
                return Err(err(
                    Some(config.name.span()),
                    format!("a suite named {name:?} is already defined"),
                    Some("suite names must be unique"),
                ));
            }
            let mut services = Vec::new();
            for service in &config.services {
                let checked = service
                    .check(name, dir)
                    .map_err(|(message, span, help)| err(Some(span), message, Some(help)))?;
                if services.iter().any(|s: &Service| s.name == checked.name) {
                    return Err(err(
                        Some(service.name.span()),
                        format!("suite {name:?} has two services named {:?}", checked.name),
                        Some("each service of a suite needs a name of its own"),
                    ));
                }
                if let (Some(container), Some(span)) = (&checked.container, service.image_span()) {
                    written.containers.push((container.clone(), span));
                }
                services.push(checked);
            }
            if config.run.get_ref().is_empty() {
                return Err(err(
                    Some(config.run.span()),
                    format!("suite {name:?} has an empty `run` command"),
                    None,
                ));
            }
            let env = match &config.env {
                Some(env)
                    if !templates.contains_key(env.get_ref())
                        && !matrices.contains_key(env.get_ref()) =>
                {
                    let known: Vec<&str> = templates.keys().map(String::as_str).collect();
                    return Err(err(
                        Some(env.span()),
                        format!("unknown environment template {:?}", env.get_ref()),
                        Some(&format!(
                            "define it as [env.{}], or use one of: {}",
                            env.get_ref(),
                            known.join(", ")
                        )),
                    ));
                }
                Some(env) => env.get_ref().clone(),
                None => default_name.clone(),
            };
            let (shards, auto_shards) = match config.parallel.as_ref().map(Spanned::get_ref) {
                Some(Parallel::Count(n)) => (n.get(), false),
                Some(Parallel::Word(word)) if word == "auto" => (cores(), true),
                Some(Parallel::Word(word)) => {
                    return Err(err(
                        config.parallel.as_ref().map(Spanned::span),
                        format!("parallel = {word:?} is neither a number of shards nor \"auto\""),
                        Some("use parallel = 4, or \"auto\" for one from the cores and history"),
                    ));
                }
                // A split suite without a count shards as "auto" does.
                None if config.split.is_some() => (cores(), true),
                None => (1, false),
            };
            if let Some(split) = &config.split {
                let entries = matrices.get(&env).map_or_else(
                    || vec![env.clone()],
                    |v| {
                        v.iter()
                            .map(|p| format!("{env}[{}]", python_label(p)))
                            .collect()
                    },
                );
                written
                    .splits
                    .extend(entries.into_iter().map(|t| (t, split.span())));
            }
            let suite = Suite {
                name: name.clone(),
                env: env.clone(),
                matrix: None,
                run: config.run.get_ref().clone(),
                setup: config.setup.clone(),
                teardown: config.teardown.clone(),
                timeout: config.timeout,
                retries: config.retries,
                tags: config.tags.clone(),
                shards,
                auto_shards,
                split: config.split.as_ref().map(|s| *s.get_ref()),
                junit: config.junit.clone(),
                depends_on: config
                    .depends_on
                    .iter()
                    .map(|d| d.get_ref().clone())
                    .collect(),
                env_vars: config.env_vars.clone(),
                services,
            };
            let Some(versions) = matrices.get(&env) else {
                suites.push(suite);
                continue;
            };
            // A suite of a matrix template runs once per entry, as `NAME[LABEL]`.
            let mut variants = Vec::new();
            for python in versions {
                let label = python_label(python);
                let variant = Suite {
                    name: format!("{name}[{label}]"),
                    env: format!("{env}[{label}]"),
                    matrix: Some(label),
                    ..suite.clone()
                };
                if let Some(problem) = suite::check_name(&variant.env_stem()) {
                    return Err(err(Some(config.name.span()), problem, None));
                }
                variants.push(variant.name.clone());
                suites.push(variant);
            }
            groups.insert(name.clone(), variants);
        }
        // A dependency on a matrix suite is one on each of its entries.
        for suite in &mut suites {
            suite.depends_on = std::mem::take(&mut suite.depends_on)
                .into_iter()
                .flat_map(|d| groups.get(&d).cloned().unwrap_or_else(|| vec![d]))
                .collect();
        }
        for config in &parsed.suite {
            for dep in &config.depends_on {
                if !spans.contains_key(dep.get_ref()) {
                    return Err(err(
                        Some(dep.span()),
                        format!(
                            "suite {:?} depends on {:?}, which is not a suite",
                            config.name.get_ref(),
                            dep.get_ref()
                        ),
                        None,
                    ));
                }
                if dep.get_ref() == config.name.get_ref() {
                    return Err(err(
                        Some(dep.span()),
                        format!("suite {:?} depends on itself", dep.get_ref()),
                        None,
                    ));
                }
            }
        }
        if let Some(cycle) = find_cycle(&suites) {
            let first = &cycle[0];
            let span = parsed
                .suite
                .iter()
                .find(|s| s.name.get_ref() == first)
                .and_then(|s| s.depends_on.iter().find(|d| *d.get_ref() == cycle[1]))
                .map(Spanned::span);
            return Err(err(
                span,
                format!("depends_on forms a cycle: {}", cycle.join(" -> ")),
                Some("remove one of these dependencies"),
            ));
        }
        Ok(Self {
            dir: dir.to_owned(),
            file: file.to_owned(),
            templates,
            suites,
            written: std::sync::Arc::new(written),
        })
    }

    /// Asks each template's engine what only it can judge, pointing at the key it refuses:
    /// whether its environments' workspace is on this host (where the project goes), whether
    /// it can make them at all (an image on a level that runs none, a requirements file
    /// missing), an asked-for `project = "overlay"` that it never mounts, and a
    /// `split = "pytest"` whose plugin its commands would not see. Called
    /// once the engines are known, before anything is made.
    pub fn check_engines(&self, engines: &ptest_core::EngineRegistry) -> Result<(), ProjectError> {
        let written = &self.written;
        let err = |span: Option<Span>, message: String, help: &str| {
            ProjectError::File(Box::new(ProjectFileError::at(
                &self.file,
                written.text.clone(),
                span,
                message,
                Some(help.to_owned()),
            )))
        };
        let engine = |name: &str| {
            let template = &self.templates[name];
            let span = written.templates.get(name).map(|s| s.0.clone());
            match engines.get(template.level) {
                Some(engine) => Ok((template, engine)),
                None => Err(err(
                    span,
                    format!("this ptest has no {} engine", template.level),
                    "choose another level for the template",
                )),
            }
        };
        for name in self.templates.keys() {
            let (template, engine) = engine(name)?;
            let (table, project) = written.templates.get(name).cloned().unzip();
            let traits = engine.traits();
            let local: Vec<&str> = engines
                .levels()
                .filter(|l| engines.get(*l).is_some_and(|e| e.traits().host_workspace))
                .map(|l| l.as_str())
                .collect();
            if !traits.host_workspace && !traits.copies_in {
                let placed: Vec<&str> = engines
                    .levels()
                    .filter(|l| {
                        engines
                            .get(*l)
                            .is_some_and(|e| e.traits().host_workspace || e.traits().copies_in)
                    })
                    .map(|l| l.as_str())
                    .collect();
                return Err(err(
                    table,
                    format!(
                        "environment template {name:?}: ptest run puts the project in an \
                         environment's workspace, and a {} environment's workspace is \
                         elsewhere, where ptest cannot copy it",
                        template.level
                    ),
                    &format!(
                        "run these suites at a level ptest can put the project in: {}",
                        placed.join(", ")
                    ),
                ));
            }
            if !traits.host_workspace {
                // The project is copied in (and a JUnit report out, where the engine can);
                // what reads or shares the workspace on this host cannot work there.
                let elsewhere = |what: String| {
                    err(
                        table.clone(),
                        format!(
                            "environment template {name:?}: {what}, and a {} environment's \
                             workspace is not on this host",
                            template.level
                        ),
                        &format!(
                            "run such suites at a level whose workspace is on this host: {}",
                            local.join(", ")
                        ),
                    )
                };
                if template.project == Some(ProjectMode::Bind) {
                    return Err(elsewhere(
                        "project = \"bind\" runs suites in the project's own directory".into(),
                    ));
                }
                for suite in self.suites.iter().filter(|s| s.env == *name) {
                    // Read on this host once copied out (`copies_out`).
                    if suite.junit.is_some() && !traits.copies_out {
                        return Err(elsewhere(format!(
                            "suite {:?} has junit, which ptest reads on this host, and it \
                             copies nothing out of such an environment",
                            suite.name
                        )));
                    }
                    if !suite.services.is_empty() {
                        return Err(elsewhere(format!(
                            "suite {:?} has services, which ptest run starts and reaches only \
                             in environments on this host",
                            suite.name
                        )));
                    }
                }
            }
            let spec = template.spec(
                ptest_core::EnvName::new("check").expect("valid"),
                Default::default(),
            );
            if let Err(e) = engine.check(&spec) {
                return Err(err(
                    table,
                    format!("environment template {name:?}: {e}"),
                    "change the template's keys to what its level takes",
                ));
            }
            let overlaid = ptest_core::EnvironmentSpec {
                overlay: Some(ptest_core::OverlaySpec {
                    lower: self.dir.clone(),
                    hide: Vec::new(),
                }),
                ..spec
            };
            if let Some(span) = project.flatten()
                && let Some(why) = engine.overlay_refusal(&overlaid).filter(|r| r.by_design)
            {
                return Err(err(
                    Some(span),
                    format!(
                        "project = \"overlay\" needs the environment's own mount namespace, \
                         and {}",
                        why.reason
                    ),
                    "use project = \"copy\" (a private copy per suite)",
                ));
            }
        }
        for (container, span) in &written.containers {
            let spec = container.spec(None);
            let refused = match engines.get(spec.level) {
                None => Some(format!("this ptest has no {} engine", spec.level)),
                Some(engine) => engine.check(&spec).err().map(|e| e.to_string()),
            };
            if let Some(why) = refused {
                return Err(err(
                    Some(span.clone()),
                    format!("a container service cannot run here: {why}"),
                    "run the service as a process (run = \"COMMAND\") or use a ptest with \
                     the docker level",
                ));
            }
        }
        for (name, span) in &written.splits {
            let (template, engine) = engine(name)?;
            if !engine.traits().root_at_host_path {
                return Err(err(
                    Some(span.clone()),
                    format!(
                        "split = \"pytest\" needs ptest's pytest plugin, placed in the root at \
                         its host path, and commands of a {} environment do not see it there",
                        template.level
                    ),
                    "use a template whose environments see their root at its own path, or \
                     parallel without split",
                ));
            }
        }
        Ok(())
    }

    /// The suite named `name`.
    pub fn suite(&self, name: &str) -> Option<&Suite> {
        self.suites.iter().find(|s| s.name == name)
    }

    /// The template a suite runs in.
    pub fn template(&self, suite: &Suite) -> &EnvTemplate {
        self.templates
            .get(&suite.env)
            .expect("load checked every suite's template")
    }
}

/// The cores ptest may use: the shard count of `parallel = "auto"` without history.
fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

/// Why a template's `python` list cannot be a matrix, if it cannot: empty, an entry twice, or
/// one that cannot be part of a suite's name.
fn matrix_problem(versions: &[String]) -> Option<String> {
    if versions.is_empty() {
        return Some("python = [] lists no interpreter".into());
    }
    let mut seen = BTreeSet::new();
    for python in versions {
        let label = python_label(python);
        if !seen.insert(label.clone()) {
            return Some(format!("python {python:?} is listed twice"));
        }
        let ok = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !ok {
            return Some(format!(
                "python {python:?} cannot name a suite (`unit[{label}]`): use a version such as \
                 \"3.12\" or a command such as \"pypy3.10\""
            ));
        }
    }
    None
}

fn find_cycle(suites: &[Suite]) -> Option<Vec<String>> {
    let deps: BTreeMap<&str, &[String]> = suites
        .iter()
        .map(|s| (s.name.as_str(), s.depends_on.as_slice()))
        .collect();
    let mut done = BTreeSet::new();
    for start in deps.keys() {
        let mut path: Vec<&str> = Vec::new();
        if let Some(cycle) = visit(start, &deps, &mut path, &mut done) {
            return Some(cycle);
        }
    }
    None
}

fn visit<'a>(
    node: &'a str,
    deps: &BTreeMap<&'a str, &'a [String]>,
    path: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|n| *n == node) {
        let mut cycle: Vec<String> = path[at..].iter().map(|s| (*s).to_owned()).collect();
        cycle.push(node.to_owned());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node);
    for dep in deps.get(node).copied().unwrap_or_default() {
        if let Some(cycle) = visit(dep, deps, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(node);
    None
}
