//! `ptest.ProcessResult` (a finished command) and `ptest.Process` (a supervised background
//! process).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ptest_core::{ProcessStatus, ServiceInfo};
use ptest_supervisor::Signal;
use pyo3::prelude::*;

use crate::block;
use crate::convert;
use crate::errors::{TimeoutError, ToPyResult};
use crate::manager::Shared;

/// How a command ended, with its captured output (`ptest env exec --json`).
#[pyclass(module = "ptest", frozen, get_all)]
pub struct ProcessResult {
    /// The command line that ran.
    pub args: Vec<String>,
    /// Its exit code, or `-N` when signal N ended it (as `subprocess`).
    pub returncode: i32,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Its standard output (the first 8 MiB; see `stdout_file`).
    pub stdout: String,
    /// Its standard error (the first 8 MiB; see `stderr_file`).
    pub stderr: String,
    /// The file in the root's `logs/` holding all of a longer stdout, if it was longer.
    pub stdout_file: Option<std::path::PathBuf>,
    /// The same for stderr.
    pub stderr_file: Option<std::path::PathBuf>,
    /// Seconds it ran.
    pub duration: f64,
    /// Whether its timeout killed it (its whole process tree).
    pub timed_out: bool,
    /// Whether the environment's memory limit killed it.
    pub oom_killed: bool,
    /// Its host pid.
    pub pid: Option<u32>,
}

impl From<ptest_core::ProcessResult> for ProcessResult {
    fn from(r: ptest_core::ProcessResult) -> Self {
        Self {
            returncode: match (r.exit_code, r.signal) {
                (Some(code), _) => code,
                (None, Some(sig)) => -sig,
                (None, None) => -1,
            },
            args: r.command,
            signal: r.signal,
            stdout: r.stdout,
            stderr: r.stderr,
            stdout_file: r.stdout_file,
            stderr_file: r.stderr_file,
            duration: r.duration.as_secs_f64(),
            timed_out: r.timed_out,
            oom_killed: r.oom_killed,
            pid: r.pid,
        }
    }
}

impl ProcessResult {
    /// What `check=True` says: how it ended and the last lines of its output.
    pub(crate) fn failure_message(&self) -> String {
        let how = if self.timed_out {
            "timed out".to_owned()
        } else if self.oom_killed {
            "was killed by the memory limit".to_owned()
        } else if let Some(sig) = self.signal {
            format!("was killed by signal {sig}")
        } else {
            format!("exited with {}", self.returncode)
        };
        let tail = |text: &str| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        };
        format!(
            "command {:?} {how}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            self.args,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

#[pymethods]
impl ProcessResult {
    /// Raises `ProcessError` if it did not exit 0.
    fn check_returncode(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        if this.returncode == 0 {
            return Ok(());
        }
        let err = crate::errors::ProcessError::new_err(this.failure_message());
        err.value(slf.py()).setattr("result", slf)?;
        Err(err)
    }

    fn __repr__(&self) -> String {
        format!(
            "ProcessResult(args={:?}, returncode={}, duration={:.3}, timed_out={})",
            self.args,
            self.returncode,
            self.duration,
            if self.timed_out { "True" } else { "False" }
        )
    }
}

/// A background process of an environment under its `ptest __supervise` supervisor: it
/// outlives the Python object; `ptest proc list` shows it and `env.remove()` ends it.
#[pyclass(module = "ptest", frozen)]
pub struct Process {
    shared: Arc<Shared>,
    env: ptest_core::Environment,
    info: Mutex<ServiceInfo>,
}

impl Process {
    pub(crate) fn new(
        shared: Arc<Shared>,
        env: ptest_core::Environment,
        info: ServiceInfo,
    ) -> Self {
        Self {
            shared,
            env,
            info: Mutex::new(info),
        }
    }

    fn info(&self) -> ServiceInfo {
        self.info.lock().expect("not poisoned").clone()
    }

    fn refresh(&self) -> PyResult<ServiceInfo> {
        let name = self.info().name;
        let info = crate::unlocked(|| self.shared.manager.service(&self.env, &name)).py_err()?;
        *self.info.lock().expect("not poisoned") = info.clone();
        Ok(info)
    }
}

fn returncode(info: &ServiceInfo) -> Option<i32> {
    match (info.process.exit_code, info.process.signal) {
        (Some(code), _) => Some(code),
        (None, Some(sig)) => Some(-sig),
        _ => None,
    }
}

#[pymethods]
impl Process {
    /// Its name in the environment.
    #[getter]
    fn name(&self) -> String {
        self.info().name
    }

    /// Host pid of its current run.
    #[getter]
    fn pid(&self) -> u32 {
        self.info().process.pid
    }

    /// `starting`, `running`, `stopping`, `stopped`, `error` or `timeout`, read now.
    #[getter]
    fn status(&self) -> PyResult<String> {
        Ok(self.refresh()?.process.status.to_string())
    }

    /// Its exit code (`-N` for signal N) once it ended, else `None`.
    #[getter]
    fn returncode(&self) -> PyResult<Option<i32>> {
        Ok(returncode(&self.refresh()?))
    }

    /// Whether it runs now: recorded as running and that very process (pid and start
    /// time) still alive.
    fn is_alive(&self) -> PyResult<bool> {
        let info = self.refresh()?;
        Ok(info.process.status == ProcessStatus::Running
            && ptest_core::liveness::is_alive(info.process.pid, info.process.start_ticks))
    }

    /// Asks it to end (SIGTERM), waits up to `timeout` seconds (10 by default), then kills
    /// its whole tree;
    /// returns its exit code (`-N` for signal N).
    #[pyo3(signature = (timeout=None))]
    fn stop(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i32>> {
        let timeout = convert::duration(timeout)?.unwrap_or(Duration::from_secs(10));
        let (shared, env, name) = (self.shared.clone(), self.env.clone(), self.info().name);
        let info = block(py, async move {
            ptest_supervisor::stop(&shared.manager, &env, &name, Signal::TERM, timeout).await
        })?;
        let code = returncode(&info);
        *self.info.lock().expect("not poisoned") = info;
        Ok(code)
    }

    /// Waits until it ends and returns its exit code (`-N` for signal N); raises
    /// `ptest.TimeoutError` if it still runs after `timeout` seconds.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i32>> {
        let limit = convert::duration(timeout)?.unwrap_or(Duration::from_secs(u64::MAX / 4));
        let (shared, id) = (self.shared.clone(), self.info().process.id);
        let ended = block(py, async move {
            ptest_supervisor::wait_end(&shared.manager, id, limit).await
        })?;
        match ended {
            Some(info) => {
                let code = returncode(&info);
                *self.info.lock().expect("not poisoned") = info;
                Ok(code)
            }
            None => Err(TimeoutError::new_err(format!(
                "process {:?} still runs after {:?}",
                self.info().name,
                limit
            ))),
        }
    }

    /// `(stdout, stderr)`: the last `lines` lines of its logs (all kept, up to 10 MiB, when
    /// `None`).
    #[pyo3(signature = (lines=None))]
    fn logs(&self, lines: Option<usize>) -> PyResult<(String, String)> {
        let info = self.info();
        let read = |path: &std::path::Path| {
            ptest_supervisor::tail(&self.env.root, path, lines)
                .map_err(|e| crate::errors::EngineError::new_err(e.to_string()))
        };
        Ok((read(&info.stdout_log)?, read(&info.stderr_log)?))
    }

    fn __repr__(&self) -> String {
        let info = self.info();
        format!(
            "Process(name={:?}, env={:?}, pid={}, status={:?})",
            info.name,
            self.env.name.to_string(),
            info.process.pid,
            info.process.status.to_string()
        )
    }
}
