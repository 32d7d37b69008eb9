//! Package operations on a `virtualenv` environment (`ptest pkg ...`): installs and
//! uninstalls run inside the environment, with events; reads come straight from
//! `*.dist-info` metadata.

use std::path::{Path, PathBuf};

use ptest_core::beneath::Beneath;
use ptest_core::{EnvPackages, Environment, Error, ExecRequest, IsolationEvent, Manager, Result};
use ptest_python::{
    Conflict, Distribution, Fetched, InstallOutcome, InstallRequest, Installer, Interpreter,
    PackageName, PythonRequest, TreeNode, Venv,
};
use serde_json::json;

use crate::virtualenv::{installed_event, installer_for, probes_for, python_error, venv_path};
use ptest_core::blocking;

/// Numbers the installs of this process, for the names of their directories in `run/`.
static BATCHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What runs inside the environment around an install (`$1` the venv, `$2` where to save
/// it, then the installer's command line): the venv is saved as a hard-linked copy (installers
/// replace files, never write into them), and put back if the installer fails.
const SAVED_INSTALL: &str = r#"venv=$1 saved=$2; shift 2
cp -al -- "$venv" "$saved" || exit 70
"$@"; status=$?
if [ "$status" -ne 0 ]; then rm -rf -- "$venv" && mv -- "$saved" "$venv"; else rm -rf -- "$saved"; fi
exit "$status""#;

/// A virtualenv environment's packages ([`VirtualenvEngine`](crate::VirtualenvEngine)'s
/// [`EnvPackages`]).
pub struct Packages<'a> {
    manager: &'a Manager,
    env: Environment,
    venv: Venv,
    installer: Installer,
}

impl<'a> Packages<'a> {
    /// Opens the packages of `env`, a virtualenv environment.
    pub fn open(manager: &'a Manager, env: Environment) -> Result<Self> {
        let venv = Venv::open(&venv_path(&env)).map_err(|e| python_error("open the venv", e))?;
        Ok(Self {
            installer: installer_for(&manager.home().cache_dir()),
            manager,
            env,
            venv,
        })
    }

    /// Copies what [`Installer::fetch`] got into the root at `house` and installs it from
    /// inside the environment.
    async fn install_fetched(
        &self,
        request: &InstallRequest,
        fetched: &Fetched,
        staging: &Path,
        house: &Path,
        base: &Path,
    ) -> Result<InstallOutcome> {
        let root = Beneath::open(&self.env.root)?;
        let dir = root.make_dir(house, 0o755)?;
        for wheel in &fetched.wheels {
            dir.copy_in(
                wheel,
                Path::new(wheel.file_name().unwrap_or_default()),
                0o644,
            )?;
        }
        if !fetched.top_level.is_empty() {
            let local = dir.make_dir(Path::new("local"), 0o755)?;
            for name in &fetched.top_level {
                local.copy_in(&staging.join("local").join(name), Path::new(name), 0o644)?;
            }
        }
        let inside = self.env.root.join(house);
        let mut files = Vec::new();
        let given = [
            ("-r", &request.requirement_files),
            ("-c", &request.constraint_files),
        ];
        for (flag, paths) in given {
            for path in paths {
                let name = format!("{}-{}.txt", &flag[1..], files.len());
                dir.copy_in(path, Path::new(&name), 0o644)?;
                files.push((flag, inside.join(name)));
            }
        }
        let tool = self.installer.offline_command(
            &self.venv.python(),
            base,
            request,
            &inside,
            fetched,
            &files,
        );
        // Beside the venv, on its filesystem (hard links), where the command may write: the
        // sandbox shows `run/` read-only.
        let backup = PathBuf::from(format!(
            ".venv-saved-{}",
            house
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
        ));
        self.run_inside(tool, Some(&backup), "installing packages")
            .await
    }

    /// Runs the installer's command line `tool` inside the environment (a command of its
    /// own, with its privileges and limits) and says what changed in `site-packages`. With
    /// `backup` (a path in the root), the venv is saved there first and put back if the tool
    /// fails.
    async fn run_inside(
        &self,
        tool: Vec<std::ffi::OsString>,
        backup: Option<&Path>,
        what: &str,
    ) -> Result<InstallOutcome> {
        let shown = tool
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let mut argv: Vec<String> = match backup {
            Some(backup) => vec![
                "sh".into(),
                "-c".into(),
                SAVED_INSTALL.into(),
                "ptest-install".into(),
                self.venv.root().display().to_string(),
                self.env.root.join(backup).display().to_string(),
            ],
            None => Vec::new(),
        };
        argv.extend(tool.iter().map(|a| a.to_string_lossy().into_owned()));
        let before = self.list()?;
        let started = std::time::Instant::now();
        let result = self
            .manager
            .execute_command(&self.env, ExecRequest::new(argv))
            .await?;
        let duration = started.elapsed();
        if result.exit_code != Some(0) {
            let output = if result.stderr.trim().is_empty() {
                &result.stdout
            } else {
                &result.stderr
            };
            let tail: Vec<&str> = output.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(Error::Usage(format!(
                "{what} in {} failed ({}): `{shown}`\n{}",
                self.env.name,
                match (result.exit_code, result.signal) {
                    (Some(code), _) => format!("exit code {code}"),
                    (None, Some(signal)) => format!("killed by signal {signal}"),
                    _ => "no exit status".to_owned(),
                },
                tail.join("\n")
            )));
        }
        let after = self.list()?;
        Ok(InstallOutcome {
            tool: self.installer.kind().name(),
            command: shown,
            changes: ptest_python::installer::changes(&before, &after),
            duration,
        })
    }

    /// The interpreter the venv was made from, as ptest recorded it then: what fetches
    /// packages on the host and what the sandbox runs pip from. The venv's `pyvenv.cfg` is
    /// not asked: its command can rewrite it.
    fn base_python(&self) -> Result<PathBuf> {
        self.env
            .details
            .get("python")
            .and_then(|p| p["path"].as_str())
            .map(PathBuf::from)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{} has no recorded interpreter (made by an older ptest); make it again",
                    self.env.name
                ))
            })
    }

    /// The marker values of the interpreter the venv was made from (recorded by ptest, not
    /// read from the venv), kept with what it said when the environment was made: no Python
    /// starts while it is unchanged, and never the venv's own.
    fn markers(&self) -> Result<ptest_python::MarkerEnvironment> {
        let probes = probes_for(&self.manager.home().cache_dir());
        let python = PythonRequest::Path(self.base_python()?);
        Ok(Interpreter::find_cached(&python, &probes)
            .map_err(|e| python_error("query the interpreter", e))?
            .markers)
    }
}

#[async_trait::async_trait]
impl EnvPackages for Packages<'_> {
    /// Installs `request`, logging `package_installing` and `package_installed`.
    ///
    /// Nothing of the environment's runs on the host: the packages are fetched first, as
    /// wheels, by the interpreter ptest recorded when it made the venv (never the venv's own,
    /// which the command can replace) into a directory of ptest's; the wheels are copied into
    /// the root's `run/` beneath its descriptor; then the installer runs inside the
    /// environment, as its commands do, offline from that copy. There, a failed install puts
    /// the venv back as it was: it is saved first (a hard-linked copy beside it) and moved
    /// back on failure.
    async fn install(&self, request: InstallRequest) -> Result<InstallOutcome> {
        let base = self.base_python()?;
        let n = BATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let batch = format!("{}-{n}", std::process::id());
        let staging = self
            .manager
            .home()
            .cache_dir()
            .join("fetch")
            .join(format!("{}-{batch}", self.env.id));
        self.manager.record_event(
            &self.env,
            IsolationEvent::PackageInstalling,
            json!({
                "requirements": request.requirements,
                "requirement_files": request.requirement_files,
                "constraint_files": request.constraint_files,
                "tool": self.installer.kind().name(),
            }),
        )?;
        let started = std::time::Instant::now();
        let fetched = {
            let (installer, request, staging, base) = (
                self.installer.clone(),
                request.clone(),
                staging.clone(),
                base.clone(),
            );
            blocking(move || {
                let _ = std::fs::remove_dir_all(&staging);
                std::fs::create_dir_all(&staging)
                    .map_err(|e| Error::io("creating", &staging, e))?;
                installer
                    .fetch(&base, &request, &staging)
                    .map_err(|e| python_error("fetch packages", e))
            })
            .await
        };
        let house = Path::new("run").join(format!("wheels-{batch}"));
        let outcome = match fetched {
            Ok(fetched) => {
                self.install_fetched(&request, &fetched, &staging, &house, &base)
                    .await
            }
            Err(e) => Err(e),
        };
        let root = Beneath::open(&self.env.root)?;
        if let Err(e) = root.remove_dir(&house) {
            tracing::warn!("could not remove {}: {e}", house.display());
        }
        let _ = std::fs::remove_dir_all(&staging);
        let mut outcome = outcome?;
        outcome.duration = started.elapsed();
        self.manager.record_event(
            &self.env,
            IsolationEvent::PackageInstalled,
            installed_event(&outcome),
        )?;
        Ok(outcome)
    }

    /// Uninstalls packages by name, from inside the environment; naming one that is not
    /// installed is an error and changes nothing.
    async fn uninstall(&self, names: &[String]) -> Result<InstallOutcome> {
        let names: Vec<PackageName> = names.iter().map(|n| PackageName::new(n)).collect();
        let installed = self.list()?;
        if let Some(missing) = names
            .iter()
            .find(|n| !installed.iter().any(|d| &&d.name == n))
        {
            return Err(Error::Missing(format!(
                "package {missing} is not installed in {}; see `ptest pkg list {}`",
                self.env.name, self.env.name
            )));
        }
        let tool =
            self.installer
                .uninstall_command(&self.venv.python(), &self.base_python()?, &names);
        let outcome = self.run_inside(tool, None, "uninstalling packages").await?;
        self.manager.record_event(
            &self.env,
            IsolationEvent::PackageInstalled,
            json!({ "tool": outcome.tool, "changes": outcome.changes }),
        )?;
        Ok(outcome)
    }

    /// Every installed distribution, sorted by name.
    fn list(&self) -> Result<Vec<Distribution>> {
        ptest_python::installed(&self.venv).map_err(|e| python_error("read metadata", e))
    }

    /// One distribution by name (any spelling, PEP 503).
    fn show(&self, name: &str) -> Result<Distribution> {
        ptest_python::show(&self.venv, name)
            .map_err(|e| python_error("read metadata", e))?
            .ok_or_else(|| {
                Error::Missing(format!(
                    "package {name} is not installed in {}; see `ptest pkg list {}`",
                    self.env.name, self.env.name
                ))
            })
    }

    /// `name==version` lines.
    fn freeze(&self) -> Result<Vec<String>> {
        ptest_python::freeze(&self.venv).map_err(|e| python_error("read metadata", e))
    }

    /// The dependency tree, from `root` (`name` or `name[extra]`) or from every top package.
    fn tree(&self, root: Option<&str>) -> Result<Vec<TreeNode>> {
        let markers = self.markers()?;
        ptest_python::tree(&self.list()?, &markers, root).map_err(|e| Error::Usage(e.to_string()))
    }

    /// Unmet requirements, as `pip check` finds them.
    fn check(&self) -> Result<Vec<Conflict>> {
        Ok(ptest_python::check(&self.list()?, &self.markers()?))
    }
}
