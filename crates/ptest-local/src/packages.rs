//! Package operations on a `virtualenv` environment (`ptest pkg ...`): installs go through the
//! environment's installer with events; reads come straight from `*.dist-info` metadata.

use ptest_core::{Environment, Error, IsolationEvent, IsolationLevel, Manager, Result};
use ptest_python::{
    Conflict, Distribution, InstallOutcome, InstallRequest, Installer, PackageName, TreeNode, Venv,
    VenvBackup,
};
use serde_json::json;

use crate::directory::blocking;
use crate::virtualenv::{install_with_events, installer_for, probes_for, python_error, venv_path};

/// A virtualenv environment's packages.
pub struct Packages<'a> {
    manager: &'a Manager,
    env: Environment,
    venv: Venv,
    installer: Installer,
}

impl<'a> Packages<'a> {
    /// Opens the packages of `env`; a usage error when it is not a virtualenv environment.
    pub fn open(manager: &'a Manager, env: Environment) -> Result<Self> {
        if env.level != IsolationLevel::Virtualenv {
            return Err(Error::Usage(format!(
                "{} is a {} environment; packages need --level virtualenv",
                env.name, env.level
            )));
        }
        let venv = Venv::open(&venv_path(&env)).map_err(|e| python_error("open the venv", e))?;
        Ok(Self {
            installer: installer_for(&manager.home().cache_dir()),
            manager,
            env,
            venv,
        })
    }

    /// Installs `request`, logging `package_installing` and `package_installed`. A failed
    /// install leaves the venv as it was: it is saved first ([`VenvBackup`]: a hard link per
    /// file) and put back on failure.
    pub async fn install(&self, request: InstallRequest) -> Result<InstallOutcome> {
        static BACKUPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let venv = self.venv.root().to_owned();
        let dir = self.env.run_dir().join(format!(
            "venv-backup-{}-{}",
            std::process::id(),
            BACKUPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let backup = blocking(move || {
            VenvBackup::take(&venv, &dir).map_err(|e| python_error("save the venv", e))
        })
        .await?;
        let ctx = EnvEvents(self.manager, &self.env);
        let outcome = install_with_events(&ctx, &self.installer, self.venv.clone(), request).await;
        let failed = outcome.is_err();
        blocking(move || {
            if failed {
                backup
                    .restore()
                    .map_err(|e| python_error("restore the venv", e))
            } else {
                backup
                    .discard()
                    .map_err(|e| python_error("remove the venv's backup", e))
            }
        })
        .await?;
        outcome
    }

    /// Uninstalls packages by name; naming one that is not installed is an error and changes
    /// nothing.
    pub async fn uninstall(&self, names: &[String]) -> Result<InstallOutcome> {
        let names: Vec<PackageName> = names.iter().map(|n| PackageName::new(n)).collect();
        let installed = self.list()?;
        if let Some(missing) = names
            .iter()
            .find(|n| !installed.iter().any(|d| &&d.name == n))
        {
            return Err(Error::NotFound(format!(
                "{missing} (package not installed in {}; see `ptest pkg list {}`)",
                self.env.name, self.env.name
            )));
        }
        let (installer, venv) = (self.installer.clone(), self.venv.clone());
        let outcome = blocking(move || {
            installer
                .uninstall(&venv, &names)
                .map_err(|e| python_error("uninstall packages", e))
        })
        .await?;
        self.manager.record_event(
            &self.env,
            IsolationEvent::PackageInstalled,
            json!({ "tool": outcome.tool, "changes": outcome.changes }),
        )?;
        Ok(outcome)
    }

    /// Every installed distribution, sorted by name.
    pub fn list(&self) -> Result<Vec<Distribution>> {
        ptest_python::installed(&self.venv).map_err(|e| python_error("read metadata", e))
    }

    /// One distribution by name (any spelling, PEP 503).
    pub fn show(&self, name: &str) -> Result<Distribution> {
        ptest_python::show(&self.venv, name)
            .map_err(|e| python_error("read metadata", e))?
            .ok_or_else(|| Error::NotFound(format!("{name} (package in {})", self.env.name)))
    }

    /// `name==version` lines.
    pub fn freeze(&self) -> Result<Vec<String>> {
        ptest_python::freeze(&self.venv).map_err(|e| python_error("read metadata", e))
    }

    /// The dependency tree, from `root` (`name` or `name[extra]`) or from every top package.
    pub fn tree(&self, root: Option<&str>) -> Result<Vec<TreeNode>> {
        let markers = self.markers()?;
        ptest_python::tree(&self.list()?, &markers, root).map_err(|e| Error::Usage(e.to_string()))
    }

    /// Unmet requirements, as `pip check` finds them.
    pub fn check(&self) -> Result<Vec<Conflict>> {
        Ok(ptest_python::check(&self.list()?, &self.markers()?))
    }

    /// The interpreter's marker values, kept with what it said when the environment was
    /// made (no Python starts while it is unchanged).
    fn markers(&self) -> Result<ptest_python::MarkerEnvironment> {
        let probes = probes_for(&self.manager.home().cache_dir());
        Ok(self
            .venv
            .interpreter_cached(&probes)
            .map_err(|e| python_error("query the interpreter", e))?
            .markers)
    }
}

/// Events about one environment, recorded through the manager.
struct EnvEvents<'a>(&'a Manager, &'a Environment);

impl ptest_core::EngineContext for EnvEvents<'_> {
    fn event(&self, event: IsolationEvent, details: serde_json::Value) -> Result<()> {
        self.0.record_event(self.1, event, details)
    }

    fn note(&self, _key: &str, _value: serde_json::Value) -> Result<()> {
        Ok(())
    }

    fn home(&self) -> &ptest_core::Home {
        self.0.home()
    }

    fn lease_address(
        &self,
        network: &str,
        candidates: &mut dyn Iterator<Item = std::net::Ipv4Addr>,
    ) -> Result<std::net::Ipv4Addr> {
        self.0.lease_address(self.1, network, candidates)
    }

    fn address_leases(&self, network: &str) -> Result<Vec<ptest_core::AddressLease>> {
        self.0.store().address_leases(Some(network), None)
    }
}
