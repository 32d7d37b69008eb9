//! The `virtualenv` level: a directory environment plus a Python virtual environment at
//! `<root>/venv`, whose `bin/` comes first on `PATH` for every command.
//!
//! A new environment whose spec hashes like an earlier one is cloned by hard links from a
//! template under `$PTEST_HOME/cache/templates/<hash>/` instead of being installed again.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ptest_core::{
    Engine, EngineContext, Environment, EnvironmentSpec, Error, ExecRequest, Finding, Home,
    IsolationEvent, IsolationLevel, ProcessInfo, ProjectWheel, ResourceUsage, Result,
    RunningProcess,
};
use ptest_python::{
    InstallOutcome, InstallRequest, Installer, InstallerKind, Interpreter, ProbeCache,
    PythonRequest, Requirement, SpecHash, Venv,
};
use serde_json::json;

use crate::DirectoryEngine;
use ptest_core::blocking;

/// Where an environment's venv lives inside its root.
pub fn venv_path(env: &Environment) -> PathBuf {
    env.root.join("venv")
}

/// Python environments: a directory environment with a venv inside.
#[derive(Debug)]
pub struct VirtualenvEngine {
    dir: DirectoryEngine,
    cache: PathBuf,
}

impl VirtualenvEngine {
    /// The finished template `env`'s venv was made from or saved as, and the base
    /// interpreter ptest found for it, from what `create` noted.
    fn template_of(&self, env: &Environment) -> Option<(PathBuf, PathBuf)> {
        let digest = env.details.get("spec_hash")?.get("digest")?.as_str()?;
        let python = env.details.get("python")?.get("path")?.as_str()?;
        let template = self.cache.join("templates").join(digest.get(..16)?);
        template
            .join("complete")
            .is_file()
            .then(|| (template.join("venv"), PathBuf::from(python)))
    }

    /// The engine, caching downloads and templates under `home`'s `cache/`.
    pub fn new(home: &Home) -> Self {
        Self {
            dir: DirectoryEngine::new(),
            cache: home.cache_dir(),
        }
    }

    /// The installer (uv when on `PATH`, else pip), sharing one cache across environments.
    pub fn installer(&self) -> Installer {
        installer_for(&self.cache)
    }
}

/// The installer for a home's cache directory; uv reaches each venv through a link at a
/// stable path under `venv-links/`, so it knows the interpreter without starting it.
pub(crate) fn installer_for(cache: &Path) -> Installer {
    Installer::detect_cached(&cache.join("python"), &probes_for(cache))
        .with_venv_links(&cache.join("venv-links"))
}

/// Where a home keeps what interpreters and uv said about themselves, so that creating an
/// environment starts no subprocess to ask them again.
pub(crate) fn probes_for(cache: &Path) -> ProbeCache {
    ProbeCache::new(&cache.join("probes"))
}

/// Turns the Python crate's errors into ptest's: what the user asked for is a usage error,
/// the rest is the engine's.
pub(crate) fn python_error(action: &'static str, e: ptest_python::Error) -> Error {
    use ptest_python::Error as P;
    match e {
        P::InterpreterNotFound { .. }
        | P::Requirement(_)
        | P::ToolFailed { .. }
        | P::PipUnavailable { .. }
        | P::NotAVenv { .. } => Error::Usage(e.to_string()),
        other => Error::Engine {
            level: IsolationLevel::Virtualenv,
            action,
            source: other.into(),
        },
    }
}

/// The directory engine's error as this level's.
fn virtualenv(e: Error) -> Error {
    e.at_level(IsolationLevel::Virtualenv)
}

/// Requirements of a spec: its packages, then the lines of its requirements files.
fn requirements(spec: &ptest_core::VirtualenvSpec) -> Result<Vec<String>> {
    let mut out = spec.packages.clone();
    for file in &spec.requirements {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io("reading", file, e))?;
        out.extend(
            text.lines()
                .map(|l| l.split(" #").next().unwrap_or("").trim())
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    Ok(out)
}

/// A requirement naming a local path or a URL depends on files the hash cannot see, so an
/// environment holding one is never cloned from a template.
fn is_local(requirement: &str) -> bool {
    let r = requirement.trim_start_matches("-e").trim();
    r.starts_with('.') || r.starts_with('/') || r.starts_with('-') || r.contains("://")
}

#[async_trait]
impl Engine for VirtualenvEngine {
    fn level(&self) -> IsolationLevel {
        IsolationLevel::Virtualenv
    }

    fn traits(&self) -> ptest_core::EngineTraits {
        ptest_core::EngineTraits {
            packages: true,
            ..self.dir.traits()
        }
    }

    fn packages<'a>(
        &self,
        manager: &'a ptest_core::Manager,
        env: Environment,
    ) -> Option<Result<Box<dyn ptest_core::EnvPackages + 'a>>> {
        Some(crate::packages::Packages::open(manager, env).map(|p| Box::new(p) as _))
    }

    fn capabilities(&self) -> Vec<Finding> {
        let mut out = self.dir.capabilities();
        let python = Interpreter::find_cached(&PythonRequest::Default, &probes_for(&self.cache));
        out.push(Finding {
            check: "python".into(),
            ok: python.is_ok(),
            detail: match &python {
                Ok(i) => format!("{} {} at {}", i.implementation, i.version, i.path.display()),
                Err(e) => e.to_string(),
            },
        });
        out.push(Finding {
            check: "installer".into(),
            ok: true,
            detail: match self.installer().kind() {
                InstallerKind::Uv { binary, version } => {
                    format!("uv {version} at {} (fast path)", binary.display())
                }
                _ => "pip (uv not on PATH: `pip install uv` makes venvs ~5x faster)".into(),
            },
        });
        out
    }

    fn features(&self) -> Vec<Finding> {
        self.dir.features()
    }

    fn port_lease_changed(&self, env: &Environment, port: u16, leased: bool) -> Result<()> {
        self.dir.port_lease_changed(env, port, leased)
    }

    fn check(&self, spec: &EnvironmentSpec) -> Result<()> {
        self.dir.check(&EnvironmentSpec {
            virtualenv: None,
            ..spec.clone()
        })?;
        let Some(venv) = &spec.virtualenv else {
            return Ok(());
        };
        for package in &venv.packages {
            if !is_local(package) {
                Requirement::parse(package).map_err(|e| Error::Usage(e.to_string()))?;
            }
        }
        if let Some(project) = &venv.project
            && !project.wheel.is_file()
        {
            return Err(Error::Usage(format!(
                "the project's wheel {} does not exist",
                project.wheel.display()
            )));
        }
        for file in venv.requirements.iter().chain(&venv.constraints) {
            if !file.is_file() {
                return Err(Error::Usage(format!(
                    "requirements or constraints file {} does not exist",
                    file.display()
                )));
            }
        }
        Ok(())
    }

    async fn create(&self, env: &Environment, ctx: &dyn EngineContext) -> Result<()> {
        self.dir.create(env, ctx).await.map_err(virtualenv)?;
        let spec = env.spec.virtualenv.clone().unwrap_or_default();
        let request: PythonRequest = spec
            .python
            .as_deref()
            .unwrap_or("")
            .parse()
            .expect("every string is a python request");
        let probes = probes_for(&self.cache);
        let interpreter = blocking(move || {
            Interpreter::find_cached(&request, &probes).map_err(|e| python_error("find python", e))
        })
        .await?;
        ctx.note(
            "python",
            json!({
                "path": interpreter.path,
                "version": interpreter.version.to_string(),
                "base_prefix": interpreter.base_prefix,
            }),
        )?;
        let mut reqs = requirements(&spec)?;
        // The project's dependencies are requirements like the others: hashed, so that a
        // template holds them.
        let project_deps = match &spec.project {
            Some(project) => {
                let (wheel, markers, extras) = (
                    project.wheel.clone(),
                    interpreter.markers.clone(),
                    project.extras.clone(),
                );
                blocking(move || {
                    let requires = ptest_python::project::wheel_requires(&wheel)
                        .map_err(|e| python_error("read the project's wheel", e))?;
                    ptest_python::project::applicable(&requires, &markers, &extras)
                        .map_err(|e| python_error("read the project's wheel", e))
                })
                .await?
            }
            None => Vec::new(),
        };
        reqs.extend(project_deps.iter().cloned());
        let hash = {
            let (i, r, c) = (interpreter.clone(), reqs.clone(), spec.constraints.clone());
            blocking(move || SpecHash::compute(&i, &r, &c).map_err(|e| python_error("hash", e)))
                .await?
        };
        ctx.note(
            "spec_hash",
            serde_json::to_value(&hash).expect("hashes serialize"),
        )?;

        let installer = self.installer();
        ctx.note("installer", json!(installer.kind().name()))?;
        let venv_dir = venv_path(env);
        let template = self.cache.join("templates").join(hash.short());
        let reusable = !reqs.iter().any(|r| is_local(r));
        if reusable && template.join("complete").is_file() {
            ctx.event(
                IsolationEvent::PackageInstalling,
                json!({ "requirements": reqs, "from_template": hash.short() }),
            )?;
            let (src, dst) = (template.join("venv"), venv_dir.clone());
            let report = blocking(move || {
                ptest_python::clone_venv(&src, &dst).map_err(|e| python_error("clone the venv", e))
            })
            .await?
            .1;
            ctx.note(
                "reused_template",
                json!({ "hash": hash.short(), "copied": report.copied }),
            )?;
            ctx.event(
                IsolationEvent::PackageInstalled,
                json!({ "from_template": hash.short(), "copied": report.copied }),
            )?;
            return install_spec_project(ctx, &installer, &venv_dir, &spec).await;
        }

        // Any other spec starts from the interpreter's empty venv, kept as the template of the
        // spec with no requirements: a hard-link clone instead of `uv venv`, the same files.
        let empty =
            SpecHash::compute(&interpreter, &[], &[]).map_err(|e| python_error("hash", e))?;
        let start_from = (empty != hash).then(|| self.cache.join("templates").join(empty.short()));
        let (dir, interp, inst) = (venv_dir.clone(), interpreter.clone(), installer.clone());
        let (venv, cloned) = blocking(move || {
            if let Some(empty) = &start_from
                && empty.join("complete").is_file()
            {
                return ptest_python::clone_venv(&empty.join("venv"), &dir)
                    .map(|(venv, _)| (venv, true))
                    .map_err(|e| python_error("clone the venv", e));
            }
            let venv = Venv::create(&dir, &interp, &inst)
                .map_err(|e| python_error("create the venv", e))?;
            if let Some(empty) = &start_from
                && let Err(e) = save_template(&dir, empty)
            {
                tracing::warn!("could not save the empty venv as a template: {e}");
            }
            Ok((venv, false))
        })
        .await?;
        if cloned {
            ctx.note("venv_from_template", json!(empty.short()))?;
        }
        if !reqs.is_empty() {
            let request = InstallRequest {
                requirements: spec.packages.iter().chain(&project_deps).cloned().collect(),
                requirement_files: spec.requirements.clone(),
                constraint_files: spec.constraints.clone(),
                find_links: spec.find_links.clone(),
                no_index: spec.no_index,
                index_url: spec.index_url.clone(),
                extra_index_urls: spec.extra_index_urls.clone(),
                offline: spec.offline,
                ..InstallRequest::default()
            };
            install_with_events(ctx, &installer, venv, request).await?;
        }
        if reusable {
            let (src, template) = (venv_dir.clone(), template);
            // Saving the template is an optimisation: a failure is logged, not fatal.
            if let Err(e) = blocking(move || save_template(&src, &template)).await {
                tracing::warn!("could not save the venv template: {e}");
            }
        }
        install_spec_project(ctx, &installer, &venv_dir, &spec).await
    }

    async fn install_project(
        &self,
        env: &Environment,
        project: &ProjectWheel,
        ctx: &dyn EngineContext,
    ) -> Result<()> {
        install_project(ctx, &self.installer(), &venv_path(env), project).await
    }

    async fn activate(&self, env: &Environment, ctx: &dyn EngineContext) -> Result<()> {
        // The venv's base interpreter must be visible wherever it lives, even where the
        // sandbox shows only system directories.
        let base = env
            .details
            .get("python")
            .and_then(|p| p["base_prefix"].as_str())
            .map(PathBuf::from);
        // So is the installer's binary: `pkg install` runs it inside the environment.
        let installer = self
            .installer()
            .binary()
            .and_then(|b| std::fs::canonicalize(b).ok());
        self.dir
            .activate_with(env, ctx, base.into_iter().chain(installer).collect())
            .await
            .map_err(virtualenv)
    }

    async fn spawn(
        &self,
        env: &Environment,
        mut request: ExecRequest,
    ) -> Result<Box<dyn RunningProcess>> {
        let venv = venv_path(env);
        let path = std::env::var("PATH").unwrap_or_default();
        // Caller-given variables come after, so they still win.
        let mut vars = vec![
            (
                "PATH".to_owned(),
                format!("{}:{path}", venv.join("bin").display()),
            ),
            ("VIRTUAL_ENV".to_owned(), venv.display().to_string()),
        ];
        vars.append(&mut request.env);
        request.env = vars;
        self.dir.spawn(env, request).await.map_err(virtualenv)
    }

    async fn kill(&self, env: &Environment, process: &ProcessInfo) -> Result<()> {
        self.dir.kill(env, process).await.map_err(virtualenv)
    }

    async fn validate(&self, env: &Environment) -> Result<Vec<Finding>> {
        let mut findings = self.dir.validate(env).await.map_err(virtualenv)?;
        let venv = Venv::open(&venv_path(env));
        findings.push(Finding {
            check: "venv".into(),
            ok: venv.as_ref().is_ok_and(|v| v.python().exists()),
            detail: match &venv {
                Ok(v) => format!(
                    "{} (python {})",
                    v.root().display(),
                    v.python_version().unwrap_or("?")
                ),
                Err(e) => e.to_string(),
            },
        });
        if let Ok(v) = &venv {
            let base = v.base_python();
            findings.push(Finding {
                check: "base python".into(),
                ok: base.as_ref().is_some_and(|b| b.exists()),
                detail: match base {
                    Some(b) => b.display().to_string(),
                    None => "pyvenv.cfg names no base interpreter".into(),
                },
            });
        }
        Ok(findings)
    }

    async fn deactivate(&self, env: &Environment) -> Result<()> {
        self.dir.deactivate(env).await.map_err(virtualenv)
    }

    async fn pause(&self, env: &Environment) -> Result<()> {
        self.dir.pause(env).await.map_err(virtualenv)
    }

    fn overlay_refusal(&self, spec: &EnvironmentSpec) -> Option<ptest_core::OverlayRefusal> {
        self.dir.overlay_refusal(spec)
    }

    async fn renew_overlay(&self, env: &Environment) -> Result<()> {
        self.dir.renew_overlay(env).await.map_err(virtualenv)
    }

    async fn resume(&self, env: &Environment) -> Result<()> {
        self.dir.resume(env).await.map_err(virtualenv)
    }

    async fn cleanup(&self, env: &Environment) -> Result<()> {
        if let Some((template, python)) = self.template_of(env) {
            let used = venv_path(env);
            // An optimisation for the template's next clones: a failure is logged only.
            let compiled = blocking(move || {
                let template = Venv::open(&template).map_err(|e| python_error("open", e))?;
                ptest_python::bytecode::compile_imported(&template, &used, &python)
                    .map_err(|e| python_error("compile a template's modules", e))
            })
            .await;
            if let Err(e) = compiled {
                tracing::warn!(
                    "not compiling what {} imported in its template: {e}",
                    env.name
                );
            }
        }
        self.dir.cleanup(env).await.map_err(virtualenv)
    }

    async fn resource_usage(&self, env: &Environment) -> Result<ResourceUsage> {
        self.dir.resource_usage(env).await.map_err(virtualenv)
    }
}

/// Installs the project's wheel, when the spec has one, without its dependencies (they came
/// with the other requirements).
async fn install_spec_project(
    ctx: &dyn EngineContext,
    installer: &Installer,
    venv_dir: &Path,
    spec: &ptest_core::VirtualenvSpec,
) -> Result<()> {
    match &spec.project {
        Some(project) => install_project(ctx, installer, venv_dir, project).await,
        None => Ok(()),
    }
}

/// Installs the project's wheel without its dependencies. On the host: the environment is
/// new, no command of it has run yet.
async fn install_project(
    ctx: &dyn EngineContext,
    installer: &Installer,
    venv_dir: &Path,
    project: &ProjectWheel,
) -> Result<()> {
    let venv = Venv::open(venv_dir).map_err(|e| python_error("open the venv", e))?;
    let request = InstallRequest {
        requirements: vec![project.wheel.display().to_string()],
        no_deps: true,
        ..InstallRequest::default()
    };
    install_with_events(ctx, installer, venv, request).await?;
    Ok(())
}

/// Installs with `package_installing` before and `package_installed` (names, versions, tool,
/// time) after.
pub(crate) async fn install_with_events(
    ctx: &dyn EngineContext,
    installer: &Installer,
    venv: Venv,
    request: InstallRequest,
) -> Result<InstallOutcome> {
    ctx.event(
        IsolationEvent::PackageInstalling,
        json!({
            "requirements": request.requirements,
            "requirement_files": request.requirement_files,
            "constraint_files": request.constraint_files,
            "tool": installer.kind().name(),
        }),
    )?;
    let installer = installer.clone();
    let outcome = blocking(move || {
        installer
            .install(&venv, &request)
            .map_err(|e| python_error("install packages", e))
    })
    .await?;
    ctx.event(IsolationEvent::PackageInstalled, installed_event(&outcome))?;
    Ok(outcome)
}

/// What `package_installed` says: the tool, what changed, how long it took.
pub(crate) fn installed_event(outcome: &InstallOutcome) -> serde_json::Value {
    json!({
        "tool": outcome.tool,
        "changes": outcome.changes,
        "seconds": outcome.duration.as_secs_f64(),
    })
}

/// Keeps a copy of a freshly built venv (hard links, so nearly free) for later environments
/// with the same hash. It is built in `.<hash>-<pid>-<n>/` and published by the symbolic link
/// `<hash>` to it, made atomically: a half-made template is never used and a concurrent
/// builder that linked first wins. The build directory is never moved, because the venv's
/// scripts name it (a clone replaces that path, the template's canonical one, with its own).
fn save_template(venv: &Path, template: &Path) -> Result<()> {
    let parent = template
        .parent()
        .expect("templates live under cache/templates");
    std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    // Unique per build, also between threads of one process (a run's shards build at once).
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let build = format!(
        ".{}-{}-{}",
        template.file_name().and_then(|n| n.to_str()).unwrap_or("t"),
        std::process::id(),
        BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let staging = parent.join(&build);
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(|e| Error::io("creating", &staging, e))?;
    ptest_python::clone_venv(venv, &staging.join("venv"))
        .map_err(|e| python_error("save a template", e))?;
    std::fs::write(staging.join("complete"), "").map_err(|e| Error::io("writing", &staging, e))?;
    if std::os::unix::fs::symlink(&build, template).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(())
}
