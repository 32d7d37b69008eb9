//! Process records: started, ended (or both at once for a command that ended first), and the
//! live ones, corrected when their process is gone.

use super::*;

impl Store {
    /// Records a started process, logging `process_starting` and `process_started` around
    /// it; returns the record's id.
    pub(crate) fn insert_process(
        &self,
        env: &Environment,
        started: Started<'_>,
    ) -> Result<(i64, [Event; 2])> {
        self.write(|tx| insert_process(tx, env, started))
    }

    /// Records how a process ended and logs `process_stopped`.
    pub(crate) fn finish_process(&self, env: &Environment, id: i64, ended: Ended) -> Result<Event> {
        self.write(|tx| finish_process(tx, env, id, ended))
    }

    /// Records a process that had ended before it was recorded: what
    /// [`insert_process`](Self::insert_process) and [`finish_process`](Self::finish_process)
    /// write, in one transaction.
    pub(crate) fn record_ended_process(
        &self,
        env: &Environment,
        started: Started<'_>,
        ended: Ended,
    ) -> Result<[Event; 3]> {
        self.write(|tx| {
            let (id, [starting, started]) = insert_process(tx, env, started)?;
            let stopped = finish_process(tx, env, id, ended)?;
            Ok([starting, started, stopped])
        })
    }

    /// Processes recorded as running in `env`. A record whose process is gone (the `ptest`
    /// that watched it died) is corrected to `error` on the way.
    pub fn live_processes(&self, env: &EnvId) -> Result<Vec<ProcessInfo>> {
        let recorded: Vec<ProcessInfo> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {PROCESS_COLUMNS} FROM processes \
                     WHERE env_id = ?1 AND status IN ('starting', 'running', 'stopping') \
                     AND kind = 'exec'"
                ))
                .ctx("listing processes")?;
            stmt.query_map([env.as_str()], process_from_row)
                .ctx("listing processes")?
                .collect::<rusqlite::Result<_>>()
                .ctx("listing processes")?
        };
        let (live, gone): (Vec<_>, Vec<_>) = recorded
            .into_iter()
            .partition(|p| crate::liveness::is_alive(p.pid, p.start_ticks));
        if !gone.is_empty() {
            self.write(|tx| {
                for p in &gone {
                    execute(
                        tx,
                        "UPDATE processes SET status = 'error', ended_at = ?2 WHERE id = ?1",
                        params![p.id, Timestamp::now().to_string()],
                    )
                    .ctx("correcting a vanished process")?;
                }
                Ok(())
            })?;
        }
        Ok(live)
    }
}

/// A process as it started: what its record and `process_started` hold, and the details of
/// `process_starting`.
pub(crate) struct Started<'a> {
    pub pid: u32,
    pub start_ticks: u64,
    pub command: &'a [String],
    pub started_at: Timestamp,
    pub starting: serde_json::Value,
}

/// How a recorded process ended: its final status, and the details of `process_stopped`.
pub(crate) struct Ended {
    pub status: ProcessStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub details: serde_json::Value,
}

/// Logs `process_starting`, records the process as running, logs `process_started`.
pub(super) fn insert_process(
    tx: &rusqlite::Transaction<'_>,
    env: &Environment,
    p: Started<'_>,
) -> Result<(i64, [Event; 2])> {
    let before = env_event(tx, env, IsolationEvent::ProcessStarting, p.starting)?;
    execute(
        tx,
        "INSERT INTO processes (env_id, pid, start_ticks, command, status, started_at) \
         VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
        params![
            env.id.as_str(),
            p.pid,
            p.start_ticks as i64,
            json(&p.command),
            p.started_at.to_string()
        ],
    )
    .ctx("recording a process")?;
    let id = tx.last_insert_rowid();
    let event = env_event(
        tx,
        env,
        IsolationEvent::ProcessStarted,
        serde_json::json!({ "pid": p.pid, "command": p.command }),
    )?;
    Ok((id, [before, event]))
}

/// Records how process `id` ended and logs `process_stopped`.
pub(super) fn finish_process(
    tx: &rusqlite::Transaction<'_>,
    env: &Environment,
    id: i64,
    ended: Ended,
) -> Result<Event> {
    execute(
        tx,
        "UPDATE processes SET status = ?2, ended_at = ?3, exit_code = ?4, signal = ?5 \
         WHERE id = ?1",
        params![
            id,
            ended.status.as_str(),
            Timestamp::now().to_string(),
            ended.exit_code,
            ended.signal
        ],
    )
    .ctx("recording a process's end")?;
    env_event(tx, env, IsolationEvent::ProcessStopped, ended.details)
}

pub(super) fn process_from_row(row: &Row<'_>) -> rusqlite::Result<ProcessInfo> {
    Ok(ProcessInfo {
        id: row.get(0)?,
        env_id: EnvId::from_stored(row.get(1)?),
        pid: row.get(2)?,
        start_ticks: row.get::<_, i64>(3)? as u64,
        command: parsed(4, serde_json::from_str(&row.get::<_, String>(4)?))?,
        status: parsed(5, row.get::<_, String>(5)?.parse())?,
        started_at: timestamp(row, 6)?,
        ended_at: row
            .get::<_, Option<String>>(7)?
            .map(|t| parsed(7, t.parse()))
            .transpose()?,
        exit_code: row.get(8)?,
        signal: row.get(9)?,
    })
}
