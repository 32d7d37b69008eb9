//! The manager's side of background processes (`proc start`): their records, the repair of
//! records whose supervisor died, and stopping them when their environment is removed. The
//! supervisor itself (the process that owns a service, its logs and restarts) lives in
//! `ptest-local`.
//!
//! Every process of a service carries `PTEST_PROC_ID=<record id>` next to `PTEST_ENV_ID`, and
//! children inherit both, so the whole tree is found from `/proc` wherever it double-forked.

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::manager::Manager;
use crate::model::Removal;
use crate::model::{
    Environment, IsolationEvent, IsolationLevel, ProcessStatus, ServiceInfo, ServiceSpec,
};
use crate::name::EnvId;

/// The variable naming a service's record in every process of its tree.
pub const PROC_ID_VAR: &str = "PTEST_PROC_ID";
const PROC_ID_PREFIX: &str = "PTEST_PROC_ID=";

/// A supervisor that has not recorded itself this long after `proc start` is taken as dead.
const SUPERVISOR_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Host pids of the processes carrying `PTEST_ENV_ID=<env>` and `PTEST_PROC_ID=<id>`.
pub fn marked_pids(env: &EnvId, id: i64) -> Vec<u32> {
    other_pids()
        .filter(|&pid| marker_of(pid).is_some_and(|(e, i)| e == env.as_str() && i == id))
        .collect()
}

/// Every process of every service, by (environment id, record id), from one pass over
/// `/proc` (what a listing of many services needs, rather than one pass each).
pub fn all_marked_pids() -> HashMap<(String, i64), Vec<u32>> {
    let mut out: HashMap<(String, i64), Vec<u32>> = HashMap::new();
    for pid in other_pids() {
        if let Some(marker) = marker_of(pid) {
            out.entry(marker).or_default().push(pid);
        }
    }
    out
}

/// The pids in `/proc`, but ours.
fn other_pids() -> impl Iterator<Item = u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(move |&pid| pid != me)
}

/// The service marker `pid` carries: its `PTEST_ENV_ID` and `PTEST_PROC_ID` (first values).
fn marker_of(pid: u32) -> Option<(String, i64)> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let (mut env, mut id) = (None, None);
    for var in environ.split(|b| *b == 0) {
        if let Some(v) = var.strip_prefix(b"PTEST_ENV_ID=") {
            env = env.or(Some(v));
        } else if let Some(v) = var.strip_prefix(PROC_ID_PREFIX.as_bytes()) {
            id = id.or(Some(v));
        }
    }
    let id = std::str::from_utf8(id?).ok()?.parse().ok()?;
    Some((String::from_utf8(env?.to_vec()).ok()?, id))
}

/// SIGKILLs every process of service record `id` of `env` (see [`marked_pids`]), until none
/// is left or a second has passed (a fork racing the scan is caught by the next round).
pub fn kill_marked(env: &EnvId, id: i64) {
    for _ in 0..20 {
        let pids = marked_pids(env, id);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// SIGKILLs the supervisor of `s` if it is a live `ptest __supervise` (an embedded one is the
/// program that started the process: it sees the process end and records nothing more).
pub fn kill_supervisor(s: &ServiceInfo) {
    if let (Some(pid), Some(ticks), false) =
        (s.supervisor_pid, s.supervisor_ticks, s.supervisor_embedded)
        && crate::liveness::is_alive(pid, ticks)
        && let Some(p) = rustix::process::Pid::from_raw(pid as i32)
    {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

fn supervisor_alive(s: &ServiceInfo) -> bool {
    match (s.supervisor_pid, s.supervisor_ticks) {
        (Some(pid), Some(ticks)) => crate::liveness::is_alive(pid, ticks),
        // Not recorded yet: the `proc start` that made it is still launching it.
        _ => {
            jiff::Timestamp::now()
                .duration_since(s.process.started_at)
                .unsigned_abs()
                < SUPERVISOR_GRACE
        }
    }
}

impl Manager {
    /// The engine of `level`, for tools that drive processes themselves (the supervisor).
    pub fn engine_for(&self, level: IsolationLevel) -> Result<Arc<dyn Engine>> {
        self.engine(level).cloned()
    }

    /// Records a background process about to start in `env`; logs `process_starting`.
    pub fn record_service(&self, env: &Environment, spec: &ServiceSpec) -> Result<ServiceInfo> {
        let logs = env.logs();
        let (id, event) = self.store().insert_service(
            env,
            spec,
            &logs.join(format!("{}.stdout.log", spec.name)),
            &logs.join(format!("{}.stderr.log", spec.name)),
        )?;
        self.emit(event);
        self.store()
            .service_by_id(id)?
            .ok_or_else(|| Error::NoProcess {
                env: env.name.to_string(),
                name: spec.name.clone(),
            })
    }

    /// Records the supervisor owning background process `id`: this process, as a `ptest
    /// __supervise` of its own, or (`embedded`) as the program that started it and runs its
    /// supervisor as a task.
    pub fn set_supervisor(&self, id: i64, embedded: bool) -> Result<()> {
        let me = std::process::id();
        let ticks = crate::liveness::start_ticks(me).unwrap_or(0);
        self.store().set_supervisor(id, me, ticks, embedded)
    }

    /// Records that background process `id` runs as `pid` (run `restarts + 1`); logs
    /// `process_started`. False when it was asked to stop meanwhile.
    pub fn service_running(
        &self,
        env: &Environment,
        id: i64,
        (pid, ticks): (u32, u64),
        restarts: u32,
    ) -> Result<bool> {
        let event = self
            .store()
            .service_running(env, id, pid, ticks, restarts)?;
        let running = event.is_some();
        event.into_iter().for_each(|e| self.emit(e));
        Ok(running)
    }

    /// Marks background process `id` as being stopped; false when it was not running.
    pub fn service_stopping(&self, id: i64) -> Result<bool> {
        self.store().service_stopping(id)
    }

    /// Records how background process `id` ended; logs `process_stopped` with the details.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_service(
        &self,
        env: &EnvId,
        id: i64,
        status: ProcessStatus,
        exit_code: Option<i32>,
        signal: Option<i32>,
        note: Option<&str>,
        mut details: serde_json::Value,
    ) -> Result<()> {
        details["record"] = id.into();
        details["status"] = status.as_str().into();
        details["exit_code"] = exit_code.into();
        details["signal"] = signal.into();
        if let Some(note) = note {
            details["note"] = note.into();
        }
        if let Some(e) = self
            .store()
            .finish_service(env, id, status, exit_code, signal, note, details)?
        {
            self.emit(e);
        }
        Ok(())
    }

    /// Background processes of `env` (or of every environment), with records whose
    /// supervisor died repaired first (see [`Manager::repair_services`]).
    pub fn services(&self, env: Option<&Environment>) -> Result<Vec<ServiceInfo>> {
        let all = self.store().services(env.map(|e| &e.id))?;
        if all
            .iter()
            .any(|s| s.process.status.is_live() && !supervisor_alive(s))
        {
            self.repair_services()?;
            return self.store().services(env.map(|e| &e.id));
        }
        Ok(all)
    }

    /// The background process `name` of `env`.
    pub fn service(&self, env: &Environment, name: &str) -> Result<ServiceInfo> {
        self.services(Some(env))?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::NoProcess {
                env: env.name.to_string(),
                name: name.to_owned(),
            })
    }

    /// Repairs the records of background processes whose supervisor died (killed, or the
    /// host rebooted): what is left of the process tree is killed and the record ends in
    /// `error` with the reason. Returns one entry per repaired record.
    pub fn repair_services(&self) -> Result<Vec<Removal>> {
        let mut out = Vec::new();
        for s in self.store().services(None)? {
            if !s.process.status.is_live() || supervisor_alive(&s) {
                continue;
            }
            kill_marked(&s.process.env_id, s.process.id);
            let note = match s.supervisor_pid {
                Some(pid) => format!("its supervisor (pid {pid}) died; the process was killed"),
                None => "its supervisor never started".to_owned(),
            };
            let error = self
                .finish_service(
                    &s.process.env_id,
                    s.process.id,
                    ProcessStatus::Error,
                    None,
                    None,
                    Some(&note),
                    serde_json::json!({ "name": s.name, "reason": "supervisor died" }),
                )
                .err()
                .map(|e| e.to_string());
            out.push(Removal {
                action: "repaired",
                name: s.env_name.clone(),
                id: s.process.env_id.to_string(),
                reason: format!("process {:?}: {note}; record repaired", s.name),
                error,
            });
        }
        Ok(out)
    }

    /// Stops every background process of `env` for its removal: supervisors first (so none
    /// restarts anything), then each process tree.
    pub(crate) async fn stop_services(
        &self,
        env: &Environment,
        engine: &Arc<dyn Engine>,
        reason: &str,
    ) -> Result<()> {
        for s in self.store().services(Some(&env.id))? {
            if !s.process.status.is_live() {
                continue;
            }
            self.record_event(
                env,
                IsolationEvent::ProcessStopping,
                serde_json::json!({ "name": s.name, "pid": s.process.pid, "reason": reason }),
            )?;
            kill_supervisor(&s);
            if s.process.pid != 0 {
                engine.kill(env, &s.process).await?;
            }
            let (env_id, id) = (env.id.clone(), s.process.id);
            tokio::task::spawn_blocking(move || kill_marked(&env_id, id))
                .await
                .map_err(|e| Error::Usage(e.to_string()))?;
            self.finish_service(
                &env.id,
                s.process.id,
                ProcessStatus::Stopped,
                None,
                Some(9),
                Some(&format!("killed: {reason}")),
                serde_json::json!({ "name": s.name, "reason": reason }),
            )?;
        }
        Ok(())
    }
}
