//! `ptest.Environment`: one environment of the store, and what can be done in it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ptest_core::{EnvironmentStatus, ExecRequest, PortName, RemoveOptions, ServiceSpec};
use ptest_supervisor::StartFailure;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::convert;
use crate::errors::{ConfigError, EngineError, NotReadyError, ProcessError, ToPyResult, to_py};
use crate::manager::Shared;
use crate::process::{Process, ProcessResult};
use crate::{block, block_raw};

/// An environment: a root with its own processes, ports, packages and limits.
///
/// Use it as a context manager to remove it on exit:
/// `with manager.environment() as env: env.exec(["true"])`.
#[pyclass(module = "ptest", frozen)]
pub struct Environment {
    pub(crate) shared: Arc<Shared>,
    /// The record as last read (status and ports change; the rest does not).
    pub(crate) env: Mutex<ptest_core::Environment>,
}

impl Environment {
    pub(crate) fn new(shared: Arc<Shared>, env: ptest_core::Environment) -> Self {
        Self {
            shared,
            env: Mutex::new(env),
        }
    }

    pub(crate) fn record(&self) -> ptest_core::Environment {
        self.env.lock().expect("not poisoned").clone()
    }

    pub(crate) fn id(&self) -> String {
        self.record().id.to_string()
    }

    /// Reads the record again; `None` once it is gone (removed).
    fn refresh(&self) -> PyResult<Option<ptest_core::Environment>> {
        let id = self.id();
        match crate::unlocked(|| self.shared.manager.get_environment(&id)) {
            Ok(env) => {
                *self.env.lock().expect("not poisoned") = env.clone();
                Ok(Some(env))
            }
            Err(ptest_core::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(to_py(e)),
        }
    }

    fn current(&self) -> PyResult<ptest_core::Environment> {
        self.refresh()?
            .ok_or_else(|| to_py(ptest_core::Error::NotFound(self.record().name.to_string())))
    }
}

#[pymethods]
impl Environment {
    /// Its unique name.
    #[getter]
    fn name(&self) -> String {
        self.record().name.to_string()
    }

    /// Its short unique id.
    #[getter(id)]
    fn get_id(&self) -> String {
        self.id()
    }

    /// Host path of its root (`workspace/`, `home/`, `tmp/`, `logs/`, `run/`).
    #[getter]
    fn root(&self) -> PathBuf {
        self.record().root
    }

    /// Its `workspace/`: the working directory of its commands.
    #[getter]
    fn workspace(&self) -> PathBuf {
        self.record().workspace()
    }

    /// `basic`, `virtualenv` or `docker`.
    #[getter]
    fn level(&self) -> String {
        self.record().level.to_string()
    }

    /// Where it is in its lifecycle, read from the store now (`cleanup_complete` once removed).
    #[getter]
    fn status(&self) -> PyResult<String> {
        Ok(match self.refresh()? {
            Some(env) => env.status.to_string(),
            None => EnvironmentStatus::CleanupComplete.to_string(),
        })
    }

    /// Its labels.
    #[getter]
    fn labels(&self) -> BTreeMap<String, String> {
        self.record().spec.labels.into_iter().collect()
    }

    /// The host ports it holds, by name.
    #[getter]
    fn ports(&self) -> PyResult<BTreeMap<String, u16>> {
        Ok(self
            .current()?
            .ports
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect())
    }

    /// Everything ptest records about it, as `ptest env show --json` prints it.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let env = self.current()?;
        let processes = crate::unlocked(|| self.shared.manager.processes(&env)).py_err()?;
        let value = serde_json::json!({ "environment": env, "processes": processes });
        convert::to_python(py, &value)
    }

    /// Runs a command inside and waits for it (`ptest env exec`). A string runs through
    /// `sh -c`. `cwd` is relative to the workspace and must stay within the root. With
    /// `check=True` a non-zero exit raises `ProcessError` with the output's tail.
    #[pyo3(signature = (cmd, *, timeout=None, env=None, cwd=None, check=false))]
    fn exec(
        &self,
        py: Python<'_>,
        cmd: &Bound<'_, PyAny>,
        timeout: Option<&Bound<'_, PyAny>>,
        env: Option<HashMap<String, String>>,
        cwd: Option<PathBuf>,
        check: bool,
    ) -> PyResult<ProcessResult> {
        let record = self.record();
        let mut request = ExecRequest::new(convert::argv(cmd)?);
        // Checked by the manager as for `env exec --cwd`: out of the root is refused.
        request.cwd = cwd;
        request.env = env.unwrap_or_default().into_iter().collect();
        request.timeout = convert::duration(timeout)?;
        let shared = self.shared.clone();
        let result = block(py, async move {
            shared.manager.execute_command(&record, request).await
        })?;
        let result = ProcessResult::from(result);
        if check && result.returncode != 0 {
            let message = result.failure_message();
            let err = ProcessError::new_err(message);
            err.value(py).setattr("result", Py::new(py, result)?)?;
            return Err(err);
        }
        Ok(result)
    }

    /// Starts a background process under a supervisor (`ptest proc start`) and returns once
    /// every readiness check given passed; raises `NotReadyError` with its output's tail
    /// otherwise. `ready_port` is a number or a port lease's name, `ready_log` a regular
    /// expression, `ready_http` `URL[=STATUS]`, `ready_cmd` a command that must exit 0;
    /// `restart` is `no`, `on-failure[:N]` or `always`.
    #[pyo3(signature = (
        argv, *, name=None, env=None, ready_port=None, ready_log=None, ready_http=None,
        ready_cmd=None, ready_timeout=None, restart="no"
    ))]
    #[allow(clippy::too_many_arguments)]
    fn start_process(
        &self,
        py: Python<'_>,
        argv: &Bound<'_, PyAny>,
        name: Option<String>,
        env: Option<HashMap<String, String>>,
        ready_port: Option<&Bound<'_, PyAny>>,
        ready_log: Option<String>,
        ready_http: Option<String>,
        ready_cmd: Option<String>,
        ready_timeout: Option<&Bound<'_, PyAny>>,
        restart: &str,
    ) -> PyResult<Process> {
        let argv = convert::argv(argv)?;
        let exe = self.shared.exe.clone().ok_or_else(|| {
            EngineError::new_err(
                "no ptest executable to supervise the process: install the ptest-env wheel \
                 (it carries one), set PTEST_EXE, or pass Manager(exe=...)",
            )
        })?;
        let name = match name {
            Some(n) => n,
            None => default_name(&argv)?,
        };
        let mut ready = ptest_core::Readiness {
            port: ready_port
                .map(|p| p.str().map(|s| s.to_string()))
                .transpose()?,
            log: ready_log,
            http: ready_http,
            cmd: ready_cmd,
            ..Default::default()
        };
        if let Some(t) = convert::duration(ready_timeout)? {
            ready.timeout = t;
        }
        let spec = ServiceSpec {
            name,
            argv,
            env: env.unwrap_or_default().into_iter().collect(),
            restart: convert::parse(restart)?,
            ready,
        };
        let record = self.record();
        let shared = self.shared.clone();
        let started = block_raw(py, async move {
            ptest_supervisor::start(&shared.manager, &record, spec, &exe).await
        })?;
        match started {
            Ok(info) => Ok(Process::new(self.shared.clone(), self.record(), info)),
            Err(StartFailure::Ptest(e)) => Err(to_py(e)),
            Err(StartFailure::NotReady { name, reason, tail }) => Err(NotReadyError::new_err(
                format!("process {name:?} {reason}\n{tail}"),
            )),
        }
    }

    /// The background processes started in it, as `Process` objects.
    fn processes(&self) -> PyResult<Vec<Process>> {
        let env = self.current()?;
        let services = crate::unlocked(|| self.shared.manager.services(Some(&env))).py_err()?;
        Ok(services
            .into_iter()
            .map(|s| Process::new(self.shared.clone(), env.clone(), s))
            .collect())
    }

    /// Leases a free host port under `name` (`PTEST_PORT_<NAME>` in later commands).
    fn allocate_port(&self, name: &str) -> PyResult<u16> {
        let env = self.current()?;
        let name: PortName = convert::parse(name)?;
        let port = crate::unlocked(|| self.shared.manager.allocate_port(&env, &name)).py_err()?;
        self.refresh()?;
        Ok(port)
    }

    /// Gives the port leased under `name` back; returns its number.
    fn release_port(&self, name: &str) -> PyResult<u16> {
        let env = self.current()?;
        let name: PortName = convert::parse(name)?;
        let port = crate::unlocked(|| self.shared.manager.release_port(&env, &name)).py_err()?;
        self.refresh()?;
        Ok(port)
    }

    /// Installs requirements into its venv (`ptest pkg install`); returns what changed.
    /// A failed install leaves the venv as it was.
    #[pyo3(signature = (requirements, *, requirement_files=None, constraints=None, upgrade=false))]
    fn install_packages<'py>(
        &self,
        py: Python<'py>,
        requirements: Vec<String>,
        requirement_files: Option<Vec<PathBuf>>,
        constraints: Option<Vec<PathBuf>>,
        upgrade: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let env = self.current()?;
        let request = ptest_python::InstallRequest {
            requirements,
            requirement_files: requirement_files.unwrap_or_default(),
            constraint_files: constraints.unwrap_or_default(),
            upgrade,
            ..Default::default()
        };
        let shared = self.shared.clone();
        let outcome = block(py, async move {
            shared.manager.packages(env)?.install(request).await
        })?;
        convert::to_python(py, &outcome)
    }

    /// Uninstalls packages by name (`ptest pkg uninstall`); returns what changed.
    fn uninstall_packages<'py>(
        &self,
        py: Python<'py>,
        names: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let env = self.current()?;
        let shared = self.shared.clone();
        let outcome = block(py, async move {
            shared.manager.packages(env)?.uninstall(&names).await
        })?;
        convert::to_python(py, &outcome)
    }

    /// `{name: version}` of every distribution in its venv, read from the metadata.
    fn installed_packages(&self, py: Python<'_>) -> PyResult<BTreeMap<String, String>> {
        let env = self.current()?;
        let shared = self.shared.clone();
        let list = py
            .detach(|| shared.manager.packages(env)?.list())
            .py_err()?;
        Ok(list
            .into_iter()
            .map(|d| (d.name.to_string(), d.version))
            .collect())
    }

    /// Unmet requirements, as `pip check` finds them: one dict per conflict (`kind`,
    /// `requirer`, `requirement`, …); empty when consistent.
    fn check_packages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let env = self.current()?;
        let shared = self.shared.clone();
        let conflicts = py
            .detach(|| shared.manager.packages(env)?.check())
            .py_err()?;
        convert::to_python(py, &conflicts)
    }

    /// What it uses now (`ptest env stats`): disk, files, memory, CPU seconds, processes.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let env = self.current()?;
        let shared = self.shared.clone();
        let usage = block(py, async move { shared.manager.resource_usage(&env).await })?;
        convert::to_python(py, &usage)
    }

    /// Checks that it is intact (`ptest env validate`): a list of `{check, ok, detail}`.
    fn validate<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let env = self.current()?;
        let shared = self.shared.clone();
        let findings = block(py, async move { shared.manager.validate(&env).await })?;
        convert::to_python(py, &findings)
    }

    /// Stops everything in it and deletes it (`ptest env rm`). Refused while a command
    /// still runs, unless `force`, which kills them first.
    #[pyo3(signature = (*, force=false))]
    fn remove(&self, py: Python<'_>, force: bool) -> PyResult<()> {
        let Some(env) = self.refresh()? else {
            return Ok(()); // Already gone.
        };
        let shared = self.shared.clone();
        block(py, async move {
            shared.manager.cleanup(&env, RemoveOptions { force }).await
        })
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Removes it, whatever still runs inside.
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.remove(py, true)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let env = self.record();
        format!(
            "Environment(name={:?}, id={:?}, level={:?}, status={:?})",
            env.name.to_string(),
            env.id.to_string(),
            env.level.to_string(),
            env.status.to_string()
        )
    }
}

/// A process named after its program, as `ptest proc start` names it.
fn default_name(argv: &[String]) -> PyResult<String> {
    let program = std::path::Path::new(&argv[0])
        .file_name()
        .map(|f| f.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    ptest_core::EnvName::new(&program)
        .map(|n| n.to_string())
        .map_err(|_| {
            ConfigError::new_err(format!(
                "cannot name a process after {program:?}; give name="
            ))
        })
}
