//! `ptest.Manager`: a home with every engine of this build, as the CLI opens it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ptest_core::config::{ConfigSources, LoadedConfig};
use ptest_core::{EngineRegistry, EnvFilter, EventQuery, GcOptions, Home};
use pyo3::prelude::*;

use crate::block;
use crate::convert::{self, SpecArgs};
use crate::environment::Environment;
use crate::errors::{ConfigError, ToPyResult};

/// What every object of one manager shares: the Rust manager and the `ptest` binary its
/// supervisors run as.
pub(crate) struct Shared {
    pub manager: ptest_core::Manager,
    pub exe: Option<PathBuf>,
}

/// Opens `$PTEST_HOME` (or `home`) and creates, finds and lists environments there.
///
/// The same store the `ptest` command uses: what this manager creates, `ptest env list`
/// shows, and the reverse. `exe` is the `ptest` binary that background processes are
/// supervised by; the `ptest` package passes the one its wheel installed.
#[pyclass(module = "ptest", frozen, subclass)]
pub struct Manager {
    pub(crate) shared: Arc<Shared>,
}

#[pymethods]
impl Manager {
    #[new]
    #[pyo3(signature = (home=None, exe=None))]
    fn new(home: Option<PathBuf>, exe: Option<PathBuf>) -> PyResult<Self> {
        let home = match home {
            Some(path) => Home::at(path),
            None => Home::from_env().py_err()?,
        };
        let cwd = std::env::current_dir().unwrap_or_default();
        let config = LoadedConfig::load(&ConfigSources::discover(&cwd))
            .map_err(|e| ConfigError::new_err(e.to_string()))?
            .config;
        let mut engines = EngineRegistry::new();
        engines.register(Arc::new(ptest_local::DirectoryEngine::new()));
        engines.register(Arc::new(ptest_local::VirtualenvEngine::new(&home)));
        engines.register(Arc::new(ptest_docker::DockerEngine::new(home.path())));
        engines.register(Arc::new(ptest_kube::KubernetesEngine::new(home.path())));
        let manager =
            crate::unlocked(|| ptest_core::Manager::open(home, config, engines)).py_err()?;
        let exe = exe.or_else(|| std::env::var_os("PTEST_EXE").map(PathBuf::from));
        Ok(Self {
            shared: Arc::new(Shared { manager, exe }),
        })
    }

    /// The home directory (`$PTEST_HOME`).
    #[getter]
    fn home(&self) -> PathBuf {
        self.shared.manager.home().path().to_owned()
    }

    /// The `ptest` binary background processes are supervised by, if known.
    #[getter]
    fn exe(&self) -> Option<PathBuf> {
        self.shared.exe.clone()
    }

    /// The isolation levels this build has engines for.
    #[getter]
    fn levels(&self) -> Vec<String> {
        self.shared
            .manager
            .levels()
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    /// Creates an environment, makes it active and returns it (`ptest env create`).
    #[pyo3(signature = (
        name=None, *, level=None, packages=None, requirements=None, constraints=None,
        find_links=None, no_index=false, index_url=None, python=None, image=None, build=None,
        security=None, network=None, allow=None, ports=None, memory=None, cpus=None, pids=None,
        nofile=None, disk=None, files=None, cleanup=None, ttl=None, exec_timeout=None,
        labels=None, path=None, allow_degraded=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn create_environment(
        &self,
        py: Python<'_>,
        name: Option<String>,
        level: Option<String>,
        packages: Option<Vec<String>>,
        requirements: Option<Vec<PathBuf>>,
        constraints: Option<Vec<PathBuf>>,
        find_links: Option<Vec<String>>,
        no_index: bool,
        index_url: Option<String>,
        python: Option<String>,
        image: Option<String>,
        build: Option<PathBuf>,
        security: Option<String>,
        network: Option<String>,
        allow: Option<Vec<String>>,
        ports: Option<Vec<String>>,
        memory: Option<&Bound<'_, PyAny>>,
        cpus: Option<f64>,
        pids: Option<u64>,
        nofile: Option<u64>,
        disk: Option<&Bound<'_, PyAny>>,
        files: Option<u64>,
        cleanup: Option<String>,
        ttl: Option<&Bound<'_, PyAny>>,
        exec_timeout: Option<&Bound<'_, PyAny>>,
        labels: Option<HashMap<String, String>>,
        path: Option<PathBuf>,
        allow_degraded: bool,
    ) -> PyResult<Environment> {
        let args = SpecArgs {
            name,
            level,
            path,
            packages: packages.unwrap_or_default(),
            requirements: requirements.unwrap_or_default(),
            constraints: constraints.unwrap_or_default(),
            find_links: find_links.unwrap_or_default(),
            no_index,
            index_url,
            python,
            image,
            build,
            security,
            network,
            allow: allow.unwrap_or_default(),
            ports: ports.unwrap_or_default(),
            memory: convert::size(memory)?,
            cpus,
            pids,
            nofile,
            disk: convert::size(disk)?,
            files,
            cleanup,
            ttl: convert::duration(ttl)?,
            exec_timeout: convert::duration(exec_timeout)?,
            labels: labels.unwrap_or_default().into_iter().collect(),
            allow_degraded,
        };
        let spec = args.into_spec(self.shared.manager.config())?;
        let shared = self.shared.clone();
        let env = block(
            py,
            async move { shared.manager.create_environment(spec).await },
        )?;
        Ok(Environment::new(self.shared.clone(), env))
    }

    /// The environment with this name or id.
    fn get(&self, name: &str) -> PyResult<Environment> {
        let env = crate::unlocked(|| self.shared.manager.get_environment(name)).py_err()?;
        Ok(Environment::new(self.shared.clone(), env))
    }

    /// Environments, optionally only of one level, status or carrying every label given.
    #[pyo3(signature = (*, level=None, status=None, labels=None))]
    fn list(
        &self,
        level: Option<String>,
        status: Option<String>,
        labels: Option<HashMap<String, String>>,
    ) -> PyResult<Vec<Environment>> {
        let filter = EnvFilter {
            level: level.as_deref().map(convert::parse).transpose()?,
            status: status.as_deref().map(convert::parse).transpose()?,
            labels: labels.unwrap_or_default().into_iter().collect(),
        };
        let envs = crate::unlocked(|| self.shared.manager.list_environments(&filter)).py_err()?;
        Ok(envs
            .into_iter()
            .map(|e| Environment::new(self.shared.clone(), e))
            .collect())
    }

    /// The event log (`ptest events`): a list of dicts, or with `follow=True` an iterator
    /// that waits for new events until the loop is left.
    #[pyo3(signature = (env=None, *, follow=false, limit=None))]
    fn events<'py>(
        &self,
        py: Python<'py>,
        env: Option<&Bound<'py, PyAny>>,
        follow: bool,
        limit: Option<u32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let env = match env {
            None => None,
            Some(e) => match e.cast::<Environment>() {
                Ok(env) => Some(env.get().id()),
                Err(_) => Some(e.extract::<String>()?),
            },
        };
        let query = EventQuery {
            after: None,
            env: env.clone(),
            limit,
        };
        let events = crate::unlocked(|| self.shared.manager.events(&query)).py_err()?;
        if follow {
            let after = events.last().map(|e| e.id);
            let stream = EventStream {
                shared: self.shared.clone(),
                env,
                pending: std::sync::Mutex::new((events.into_iter().collect(), after)),
            };
            return Ok(Bound::new(py, stream)?.into_any());
        }
        convert::to_python(py, &events)
    }

    /// Removes what the cleanup policies say is due (`ptest gc`); returns what it did.
    #[pyo3(signature = (*, shutdown=false))]
    fn gc<'py>(&self, py: Python<'py>, shutdown: bool) -> PyResult<Bound<'py, PyAny>> {
        let shared = self.shared.clone();
        let removed = block(py, async move {
            shared.manager.gc(GcOptions { shutdown }).await
        })?;
        convert::to_python(py, &removed)
    }

    /// Removes the `on_shutdown` environments this manager created.
    fn shutdown<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let shared = self.shared.clone();
        let removed = block(py, async move { shared.manager.shutdown().await })?;
        convert::to_python(py, &removed)
    }

    fn __repr__(&self) -> String {
        format!(
            "Manager(home={:?})",
            self.shared.manager.home().path().display().to_string()
        )
    }
}

/// New events as they are recorded (`ptest events --follow`): each `next` waits, with the
/// GIL released, and lets Ctrl-C through between looks.
#[pyclass(module = "ptest", frozen)]
pub struct EventStream {
    shared: Arc<Shared>,
    env: Option<String>,
    pending: std::sync::Mutex<(std::collections::VecDeque<ptest_core::Event>, Option<i64>)>,
}

#[pymethods]
impl EventStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        loop {
            // The lock is taken only without the GIL: a thread waiting for it never holds
            // the GIL the holder needs back.
            let next = py
                .detach(|| -> ptest_core::Result<_> {
                    let mut pending = self.pending.lock().expect("not poisoned");
                    if pending.0.is_empty() {
                        let query = EventQuery {
                            after: Some(pending.1.unwrap_or(0)),
                            env: self.env.clone(),
                            limit: None,
                        };
                        let events = self.shared.manager.events(&query)?;
                        if let Some(last) = events.last() {
                            pending.1 = Some(last.id);
                        }
                        pending.0.extend(events);
                    }
                    Ok(pending.0.pop_front())
                })
                .py_err()?;
            if let Some(event) = next {
                return convert::to_python(py, &event);
            }
            py.detach(|| std::thread::sleep(Duration::from_millis(100)));
            py.check_signals()?;
        }
    }
}
