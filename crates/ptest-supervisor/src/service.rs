//! A background process supervised by a task of the calling program instead of a `ptest
//! __supervise` process: for callers that live on (a test harness written in Rust), it saves a
//! process per service and ties the service's life to the caller's.

use std::sync::Arc;
use std::time::Duration;

use ptest_core::services::kill_marked;
use ptest_core::{Environment, Manager, ProcessStatus, Result, ServiceInfo, ServiceSpec};
use tokio::task::JoinHandle;

use super::{Signal, StartFailure, fresh, record, remove_pid_file, run, until_ready};

/// A running background process whose supervisor is a task of this program.
///
/// It is recorded like one started by `ptest proc start` (logs in the environment's `logs/`,
/// `run/<name>.pid`, events, restarts), so `ptest proc list`, `logs`, `stop` and `env rm` in
/// any other process see and handle it. Dropping the handle kills the process's whole tree
/// and records that; if the program dies without dropping it, the command dies with the
/// supervisor's thread (`PR_SET_PDEATHSIG`) and the next `proc list` or `gc` kills whatever it
/// left and marks the record `error`, as for a killed `ptest __supervise`.
pub struct Service {
    manager: Arc<Manager>,
    env: Environment,
    id: i64,
    name: String,
    task: Option<JoinHandle<Result<()>>>,
}

impl Service {
    /// Starts `spec` in `env` with its supervisor on a task of the current tokio runtime, and
    /// returns once every readiness check passes; otherwise it is stopped and the failure
    /// carries the tail of its output.
    pub async fn start(
        manager: Arc<Manager>,
        env: &Environment,
        spec: ServiceSpec,
    ) -> std::result::Result<Service, StartFailure> {
        let (checks, id) = record(&manager, env, &spec)?;
        manager.set_supervisor(id, true)?;
        let task = {
            let (manager, env) = (manager.clone(), env.clone());
            tokio::spawn(async move {
                let service = fresh(&manager, id)?;
                run(&manager, &env, &service).await
            })
        };
        let service = Service {
            manager,
            env: env.clone(),
            id,
            name: spec.name.clone(),
            task: Some(task),
        };
        until_ready(&service.manager, env, spec, id, &checks).await?;
        Ok(service)
    }

    /// Its name in the environment.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its record as the store has it now, with what its tree uses while it runs.
    pub fn info(&self) -> Result<ServiceInfo> {
        let mut s = fresh(&self.manager, self.id)?;
        if s.process.status.is_live() {
            s.stats = super::read_stats(&s);
        }
        Ok(s)
    }

    /// Its output so far: the last `n` lines (all when `None`) of its stdout and stderr logs;
    /// an error when one was replaced by something ptest does not read (a planted link).
    pub fn logs(&self, n: Option<usize>) -> Result<(String, String)> {
        let s = fresh(&self.manager, self.id)?;
        let root = &self.env.root;
        Ok((
            super::tail(root, &s.stdout_log, n)?,
            super::tail(root, &s.stderr_log, n)?,
        ))
    }

    /// Waits up to `timeout` for it to end for good (restarts included); its final record, or
    /// `None` when it still runs.
    pub async fn wait(&self, timeout: Duration) -> Result<Option<ServiceInfo>> {
        super::wait_end(&self.manager, self.id, timeout).await
    }

    /// Asks it to stop with `signal`, waits up to `timeout`, then kills its whole tree; returns
    /// its final record once its output is all in the logs.
    pub async fn stop(mut self, signal: Signal, timeout: Duration) -> Result<ServiceInfo> {
        let s = fresh(&self.manager, self.id)?;
        let s = super::stop_record(&self.manager, &self.env, s, signal, timeout).await?;
        if let Some(task) = self.task.take() {
            // Its supervisor has recorded the end; it finishes copying the output.
            let _ = task.await;
        }
        Ok(s)
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("env", &self.env.name)
            .field("name", &self.name)
            .field("record", &self.id)
            .finish()
    }
}

impl Drop for Service {
    /// Kills the process's tree now (no grace: a drop cannot wait) and records the end; the
    /// supervisor task sees it end and finishes on its own.
    fn drop(&mut self) {
        let Ok(s) = fresh(&self.manager, self.id) else {
            return;
        };
        if !s.process.status.is_live() {
            return;
        }
        let _ = self.manager.service_stopping(self.id);
        kill_marked(&self.env.id, self.id);
        remove_pid_file(&self.env, &self.name);
        let _ = self.manager.finish_service(
            &self.env.id,
            self.id,
            ProcessStatus::Stopped,
            None,
            Some(9),
            Some("killed: its handle was dropped"),
            serde_json::json!({ "name": self.name, "reason": "handle dropped" }),
        );
    }
}
