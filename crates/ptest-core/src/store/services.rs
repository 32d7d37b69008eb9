//! Records of background processes (`proc start`): rows of `processes` with kind `service`,
//! a name unique per environment, and what their supervisor reports.

use std::path::Path;

use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::{
    EventRecord, PROCESS_COLUMNS, Store, env_event, execute, insert_event, json, parsed,
    process_from_row,
};
use crate::error::{Error, Result, StoreContext};
use crate::model::{Environment, Event, IsolationEvent, ProcessStatus, ServiceInfo, ServiceSpec};
use crate::name::EnvId;

const SERVICE_COLUMNS: &str = "name, spec, restarts, supervisor_pid, supervisor_ticks, \
     stdout_log, stderr_log, note, (SELECT name FROM environments WHERE id = processes.env_id), \
     supervisor_embedded";

fn service_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ServiceInfo> {
    let process = process_from_row(row)?;
    let spec: ServiceSpec = parsed(11, serde_json::from_str(&row.get::<_, String>(11)?))?;
    Ok(ServiceInfo {
        process,
        name: row.get(10)?,
        spec,
        restarts: row.get(12)?,
        supervisor_pid: row.get(13)?,
        supervisor_ticks: row.get::<_, Option<i64>>(14)?.map(|t| t as u64),
        stdout_log: row.get::<_, String>(15)?.into(),
        stderr_log: row.get::<_, String>(16)?.into(),
        note: row.get(17)?,
        env_name: row.get::<_, Option<String>>(18)?.unwrap_or_default(),
        supervisor_embedded: row.get(19)?,
        stats: None,
    })
}

impl Store {
    /// Records a background process about to start (status `starting`, no pid yet), replacing
    /// an ended one of the same name; logs `process_starting`. Refuses a name still running.
    pub(crate) fn insert_service(
        &self,
        env: &Environment,
        spec: &ServiceSpec,
        stdout_log: &Path,
        stderr_log: &Path,
    ) -> Result<(i64, Event)> {
        self.write(|tx| {
            let live: Option<String> = tx
                .query_row(
                    "SELECT status FROM processes WHERE env_id = ?1 AND name = ?2 \
                     AND status IN ('starting', 'running', 'stopping')",
                    params![env.id.as_str(), spec.name],
                    |r| r.get(0),
                )
                .optional()
                .ctx("looking up a process")?;
            if live.is_some() {
                return Err(Error::ProcessNameTaken {
                    env: env.name.to_string(),
                    name: spec.name.clone(),
                });
            }
            execute(
                tx,
                "DELETE FROM processes WHERE env_id = ?1 AND name = ?2",
                params![env.id.as_str(), spec.name],
            )
            .ctx("replacing an ended process")?;
            execute(
                tx,
                "INSERT INTO processes (env_id, pid, start_ticks, command, status, started_at, \
                 kind, name, spec, stdout_log, stderr_log) \
                 VALUES (?1, 0, 0, ?2, 'starting', ?3, 'service', ?4, ?5, ?6, ?7)",
                params![
                    env.id.as_str(),
                    json(&spec.argv),
                    Timestamp::now().to_string(),
                    spec.name,
                    json(spec),
                    stdout_log.display().to_string(),
                    stderr_log.display().to_string(),
                ],
            )
            .ctx("recording a process")?;
            let id = tx.last_insert_rowid();
            let event = env_event(
                tx,
                env,
                IsolationEvent::ProcessStarting,
                serde_json::json!({
                    "name": spec.name, "command": spec.argv, "restart": spec.restart,
                }),
            )?;
            Ok((id, event))
        })
    }

    /// Records the supervisor that owns background process `id` (`embedded`: a task of the
    /// program that started it).
    pub(crate) fn set_supervisor(
        &self,
        id: i64,
        pid: u32,
        ticks: u64,
        embedded: bool,
    ) -> Result<()> {
        self.write(|tx| {
            execute(
                tx,
                "UPDATE processes SET supervisor_pid = ?2, supervisor_ticks = ?3, \
                 supervisor_embedded = ?4 WHERE id = ?1",
                params![id, pid, ticks as i64, embedded],
            )
            .ctx("recording a supervisor")?;
            Ok(())
        })
    }

    /// Records that run number `restarts` of background process `id` is running as `pid`;
    /// logs `process_started`. `None` when it was asked to stop meanwhile.
    pub(crate) fn service_running(
        &self,
        env: &Environment,
        id: i64,
        pid: u32,
        ticks: u64,
        restarts: u32,
    ) -> Result<Option<Event>> {
        self.write(|tx| {
            let n = execute(
                tx,
                "UPDATE processes SET pid = ?2, start_ticks = ?3, restarts = ?4, \
                 status = 'running', started_at = ?5, ended_at = NULL, exit_code = NULL, \
                 signal = NULL WHERE id = ?1 AND status IN ('starting', 'running')",
                params![
                    id,
                    pid,
                    ticks as i64,
                    restarts,
                    Timestamp::now().to_string()
                ],
            )
            .ctx("recording a process")?;
            if n == 0 {
                return Ok(None);
            }
            env_event(
                tx,
                env,
                IsolationEvent::ProcessStarted,
                serde_json::json!({ "record": id, "pid": pid, "restarts": restarts }),
            )
            .map(Some)
        })
    }

    /// Moves background process `id` from `starting`/`running` to `stopping`; false when it
    /// was not in one of those.
    pub(crate) fn service_stopping(&self, id: i64) -> Result<bool> {
        self.write(|tx| {
            Ok(execute(
                tx,
                "UPDATE processes SET status = 'stopping' \
                 WHERE id = ?1 AND status IN ('starting', 'running')",
                params![id],
            )
            .ctx("recording a stop")?
                > 0)
        })
    }

    /// Records the end of background process `id` (unless already recorded); logs
    /// `process_stopped` with `details`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish_service(
        &self,
        env_id: &EnvId,
        id: i64,
        status: ProcessStatus,
        exit_code: Option<i32>,
        signal: Option<i32>,
        note: Option<&str>,
        details: serde_json::Value,
    ) -> Result<Option<Event>> {
        self.write(|tx| {
            let env_name: Option<String> = tx
                .query_row(
                    "SELECT name FROM environments WHERE id = ?1",
                    [env_id.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .ctx("looking up an environment")?;
            let n = execute(
                tx,
                "UPDATE processes SET status = ?2, ended_at = ?3, exit_code = ?4, signal = ?5, \
                 note = ?6 WHERE id = ?1 AND status IN ('starting', 'running', 'stopping')",
                params![
                    id,
                    status.as_str(),
                    Timestamp::now().to_string(),
                    exit_code,
                    signal,
                    note
                ],
            )
            .ctx("recording a process's end")?;
            let Some(env_name) = env_name.filter(|_| n > 0) else {
                return Ok(None);
            };
            let env_name = env_name.parse().map_err(Error::InvalidName)?;
            insert_event(
                tx,
                &EventRecord {
                    event: IsolationEvent::ProcessStopped,
                    details,
                    env: Some((env_id, &env_name)),
                },
            )
            .map(Some)
        })
    }

    /// Background processes: of one environment, or all; oldest first.
    pub fn services(&self, env: Option<&EnvId>) -> Result<Vec<ServiceInfo>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {PROCESS_COLUMNS}, {SERVICE_COLUMNS} FROM processes \
                 WHERE kind = 'service' AND (?1 IS NULL OR env_id = ?1) ORDER BY id"
            ))
            .ctx("listing processes")?;
        stmt.query_map([env.map(|e| e.as_str())], service_from_row)
            .ctx("listing processes")?
            .collect::<rusqlite::Result<_>>()
            .ctx("listing processes")
    }

    /// One background process by record id.
    pub fn service_by_id(&self, id: i64) -> Result<Option<ServiceInfo>> {
        let conn = self.lock();
        conn.query_row(
            &format!(
                "SELECT {PROCESS_COLUMNS}, {SERVICE_COLUMNS} FROM processes \
                 WHERE kind = 'service' AND id = ?1"
            ),
            [id],
            service_from_row,
        )
        .optional()
        .ctx("looking up a process")
    }
}
