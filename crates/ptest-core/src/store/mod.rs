//! The state store: one SQLite database (WAL mode) shared by every `ptest` process of a home.
//!
//! Every change is one transaction, and a change that emits an event writes the event in the
//! same transaction, so the log never disagrees with the state. Changes that must see a
//! consistent count (the `max_environments` check) use `BEGIN IMMEDIATE`, which takes the
//! database's write lock before reading.

mod addresses;
mod migrations;
mod services;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::error::{Error, Result, StoreContext};
use crate::liveness::ProcessId;
use crate::model::{
    Environment, EnvironmentSpec, EnvironmentStatus, Event, IsolationEvent, Limits, ProcessInfo,
    ProcessStatus,
};
use crate::name::{EnvId, EnvName};
use crate::ports::{PortLease, PortName, PortRange};
use crate::size::ByteSize;

/// What an event is about: the environment it belongs to and the details to log.
pub(crate) struct EventRecord<'a> {
    pub event: IsolationEvent,
    pub details: serde_json::Value,
    pub env: Option<(&'a EnvId, &'a EnvName)>,
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only events after this id.
    pub after: Option<i64>,
    /// Only events of the environment with this name or id.
    pub env: Option<String>,
    /// At most this many (the newest ones when `after` is absent).
    pub limit: Option<u32>,
}

/// A handle on `state.db`.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

const ENV_COLUMNS: &str = "id, name, level, status, root, spec, created_at, updated_at, \
     expires_at, error, details, \
     (SELECT json_group_object(name, port) FROM port_leases WHERE env_id = environments.id), \
     activated_at, deactivated_at, last_activity";
const PROCESS_COLUMNS: &str =
    "id, env_id, pid, start_ticks, command, status, started_at, ended_at, exit_code, signal";

/// WAL pages after which a commit checkpoints: a command writes about five.
const WAL_PAGES: i64 = 128;

impl Store {
    /// Opens (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path).ctx("opening the database")?;
        // Many ptest processes write at once: wait for the lock rather than fail.
        conn.busy_timeout(Duration::from_secs(60))
            .ctx("setting the busy timeout")?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .ctx("enabling WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .ctx("setting synchronous")?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .ctx("enabling foreign keys")?;
        // Leave the WAL for the next process instead of checkpointing it (two fsyncs) at every
        // exit of a short-lived `ptest`. But a process that opens the database alone rebuilds
        // the WAL's index by reading all of it: the automatic checkpoint comes after
        // WAL_PAGES pages (SQLite's default is 1000, 4 MiB: a millisecond of every `ptest`
        // command), and the file is cut back to that size afterwards.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .ctx("configuring checkpoints")?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_PAGES)
            .ctx("configuring checkpoints")?;
        conn.pragma_update(None, "journal_size_limit", WAL_PAGES * 4096)
            .ctx("configuring checkpoints")?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version.
    pub fn schema_version(&self) -> Result<u32> {
        self.lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .ctx("reading the schema version")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done transaction (rusqlite rolls back on
        // drop), so a poisoned connection is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction.
    fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a transaction")?;
        let out = f(&tx)?;
        tx.commit().ctx("committing")?;
        Ok(out)
    }

    /// Inserts a new environment in `initializing`, refusing when `max` environments exist or
    /// the name is taken; logs `environment_creating` in the same transaction.
    pub(crate) fn insert_environment(
        &self,
        env: &Environment,
        admission: &Admission,
        session: &str,
    ) -> Result<Event> {
        let owner = ProcessId::current();
        self.write(|tx| {
            let current: u32 = tx
                .query_row("SELECT COUNT(*) FROM environments", [], |r| r.get(0))
                .ctx("counting environments")?;
            let max = admission.max;
            if current >= max {
                return Err(Error::LimitReached { max, current });
            }
            admission.check(tx, env)?;
            let taken: bool = tx
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM environments WHERE name = ?1)",
                    [env.name.as_str()],
                    |r| r.get(0),
                )
                .ctx("checking the name")?;
            if taken {
                return Err(Error::NameTaken(env.name.to_string()));
            }
            execute(
                tx,
                "INSERT INTO environments (id, name, level, status, root, spec, created_at, \
                 updated_at, expires_at, error, owner_pid, owner_ticks, session) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, NULL, ?9, ?10, ?11)",
                params![
                    env.id.as_str(),
                    env.name.as_str(),
                    env.level.as_str(),
                    env.status.as_str(),
                    env.root.to_string_lossy(),
                    json(&env.spec),
                    env.created_at.to_string(),
                    env.expires_at.map(|t| t.to_string()),
                    owner.pid,
                    owner.ticks as i64,
                    session,
                ],
            )
            .ctx("inserting the environment")?;
            env_event(
                tx,
                env,
                IsolationEvent::EnvironmentCreating,
                serde_json::json!({
                    "level": env.level, "root": env.root, "cleanup": env.spec.cleanup,
                }),
            )
        })
    }

    /// Moves an environment to `status` and logs `event`, in one transaction. `owned` marks
    /// the change as part of a multi-step operation run by this process (cleared otherwise).
    pub(crate) fn set_status(
        &self,
        env: &Environment,
        status: EnvironmentStatus,
        error: Option<&str>,
        owned: bool,
        event: Option<(IsolationEvent, serde_json::Value)>,
    ) -> Result<Option<Event>> {
        let owner = owned.then(ProcessId::current);
        self.write(|tx| {
            let changed = tx
                .execute(
                    "UPDATE environments SET status = ?2, error = ?3, updated_at = ?4, \
                     owner_pid = ?5, owner_ticks = ?6 WHERE id = ?1",
                    params![
                        env.id.as_str(),
                        status.as_str(),
                        error,
                        Timestamp::now().to_string(),
                        owner.map(|o| o.pid),
                        owner.map(|o| o.ticks as i64),
                    ],
                )
                .ctx("updating the environment's status")?;
            if changed == 0 {
                return Err(Error::NotFound(env.name.to_string()));
            }
            let stamp = match (status, &event) {
                (_, Some((IsolationEvent::EnvironmentActivated, _))) => Some("activated_at"),
                (EnvironmentStatus::Inactive, _) => Some("deactivated_at"),
                _ => None,
            };
            if let Some(column) = stamp {
                execute(
                    tx,
                    &format!("UPDATE environments SET {column} = ?2 WHERE id = ?1"),
                    params![env.id.as_str(), Timestamp::now().to_string()],
                )
                .ctx("stamping the environment's lifecycle")?;
            }
            event
                .map(|(event, details)| env_event(tx, env, event, details))
                .transpose()
        })
    }

    /// Sets `key` in the environment's details.
    pub(crate) fn set_detail(
        &self,
        env: &EnvId,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<()> {
        self.write(|tx| {
            execute(
                tx,
                "UPDATE environments SET details = json_set(details, ?2, json(?3)) WHERE id = ?1",
                params![env.as_str(), format!("$.\"{key}\""), value.to_string()],
            )
            .ctx("recording a detail")?;
            Ok(())
        })
    }

    /// Deletes an environment's record (its processes go with it) and logs
    /// `environment_cleanup_complete`.
    pub(crate) fn delete_environment(&self, env: &Environment) -> Result<Event> {
        self.write(|tx| {
            for (name, port) in leases_of(tx, &env.id)? {
                env_event(
                    tx,
                    env,
                    IsolationEvent::NetworkReleased,
                    serde_json::json!({ "port": port, "name": name }),
                )?;
            }
            addresses::log_released(tx, env)?;
            execute(
                tx,
                "DELETE FROM environments WHERE id = ?1",
                [env.id.as_str()],
            )
            .ctx("deleting the environment")?;
            env_event(
                tx,
                env,
                IsolationEvent::EnvironmentCleanupComplete,
                serde_json::json!({ "root": env.root }),
            )
        })
    }

    /// Marks environments whose multi-step change was interrupted (the owning process died)
    /// as `error`, logging `error_occurred` for each. Returns the events.
    pub(crate) fn repair_interrupted(&self) -> Result<Vec<Event>> {
        let stale: Vec<(String, String, String, u32, i64)> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare(
                    "SELECT id, name, status, owner_pid, owner_ticks FROM environments \
                     WHERE owner_pid IS NOT NULL",
                )
                .ctx("finding interrupted changes")?;
            stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .ctx("finding interrupted changes")?
            .collect::<rusqlite::Result<_>>()
            .ctx("finding interrupted changes")?
        };
        let mut events = Vec::new();
        for (id, name, status, pid, ticks) in stale {
            if crate::liveness::is_alive(pid, ticks as u64) {
                continue;
            }
            let message = interrupted_message(&status, pid);
            let event = self.write(|tx| {
                // Only if nobody took it over since we looked.
                let changed = tx
                    .execute(
                        "UPDATE environments SET status = 'error', error = ?2, updated_at = ?3, \
                         owner_pid = NULL, owner_ticks = NULL \
                         WHERE id = ?1 AND owner_pid = ?4 AND owner_ticks = ?5",
                        params![id, message, Timestamp::now().to_string(), pid, ticks],
                    )
                    .ctx("marking an interrupted environment")?;
                (changed > 0)
                    .then(|| {
                        insert_event(
                            tx,
                            &EventRecord {
                                event: IsolationEvent::ErrorOccurred,
                                details: serde_json::json!({ "error": message }),
                                env: Some((
                                    &EnvId::from_stored(id.clone()),
                                    &name.parse().expect("stored names are valid"),
                                )),
                            },
                        )
                    })
                    .transpose()
            })?;
            events.extend(event);
        }
        Ok(events)
    }

    /// Finds an environment by id or by name.
    pub fn find(&self, id_or_name: &str) -> Result<Option<Environment>> {
        let conn = self.lock();
        // Cached: every exec reads its environment afresh.
        conn.prepare_cached(&format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE id = ?1 OR name = ?1"
        ))
        .and_then(|mut stmt| stmt.query_row([id_or_name], env_from_row).optional())
        .ctx("reading an environment")
    }

    /// Every environment, oldest first.
    pub fn environments(&self) -> Result<Vec<Environment>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {ENV_COLUMNS} FROM environments ORDER BY created_at, name"
            ))
            .ctx("listing environments")?;
        stmt.query_map([], env_from_row)
            .ctx("listing environments")?
            .collect::<rusqlite::Result<_>>()
            .ctx("listing environments")
    }

    /// Ids of environments created by `session` (for the `on_shutdown` policy).
    pub(crate) fn session_environments(&self, session: &str) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT id FROM environments WHERE session = ?1")
            .ctx("listing the session's environments")?;
        stmt.query_map([session], |r| r.get(0))
            .ctx("listing the session's environments")?
            .collect::<rusqlite::Result<_>>()
            .ctx("listing the session's environments")
    }

    /// Appends one event on its own.
    pub(crate) fn append_event(&self, record: &EventRecord<'_>) -> Result<Event> {
        self.write(|tx| insert_event(tx, record))
    }

    /// Reads events, oldest first.
    pub fn events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        let conn = self.lock();
        let mut sql = String::from(
            "SELECT id, time, event, env_id, env_name, details FROM events WHERE id > ?1",
        );
        if query.env.is_some() {
            sql.push_str(" AND (env_name = ?2 OR env_id = ?2)");
        }
        // Newest `limit` events, returned oldest first.
        sql = format!("SELECT * FROM ({sql} ORDER BY id DESC LIMIT ?3) ORDER BY id");
        let mut stmt = conn.prepare(&sql).ctx("reading events")?;
        let after = query.after.unwrap_or(0);
        let limit = query.limit.map_or(-1, i64::from);
        let rows = match &query.env {
            Some(env) => stmt.query_map(params![after, env, limit], event_from_row),
            None => stmt.query_map(params![after, rusqlite::types::Null, limit], event_from_row),
        };
        rows.ctx("reading events")?
            .collect::<rusqlite::Result<_>>()
            .ctx("reading events")
    }

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

impl Store {
    /// Leases a port in `range` to `env` under `name`: the first port from a random start that
    /// no lease holds and that `bind` proves free, all under the write lock. Logs
    /// `network_allocated`.
    pub(crate) fn lease_port(
        &self,
        env: &Environment,
        name: &PortName,
        range: PortRange,
        bind: impl Fn(u16) -> bool,
    ) -> Result<(u16, Event)> {
        self.write(|tx| {
            let held: std::collections::HashSet<u16> = {
                let mut stmt = tx
                    .prepare("SELECT port FROM port_leases")
                    .ctx("reading port leases")?;
                stmt.query_map([], |r| r.get(0))
                    .ctx("reading port leases")?
                    .collect::<rusqlite::Result<_>>()
                    .ctx("reading port leases")?
            };
            if let Some(port) = leases_of(tx, &env.id)?
                .into_iter()
                .find_map(|(n, p)| (n == name.as_str()).then_some(p))
            {
                return Err(Error::PortTaken {
                    env: env.name.to_string(),
                    name: name.to_string(),
                    port,
                });
            }
            // Start at a random offset so concurrent allocators rarely try the same ports.
            let mut offset = [0u8; 4];
            getrandom::fill(&mut offset).expect("the kernel's random source is available");
            let len = range.len();
            let start = u32::from_le_bytes(offset) % len;
            let mut busy = 0u32;
            for i in 0..len {
                let port = (u32::from(range.start) + (start + i) % len) as u16;
                if held.contains(&port) {
                    continue;
                }
                if !bind(port) {
                    busy += 1;
                    continue;
                }
                execute(tx,
                    "INSERT INTO port_leases (port, env_id, name, leased_at) VALUES (?1, ?2, ?3, ?4)",
                    params![port, env.id.as_str(), name.as_str(), Timestamp::now().to_string()],
                )
                .ctx("leasing a port")?;
                let event = env_event(tx, env, IsolationEvent::NetworkAllocated, serde_json::json!({ "port": port, "name": name }))?;
                return Ok((port, event));
            }
            let leased = held.iter().filter(|p| range.contains(**p)).count();
            Err(Error::PortsExhausted {
                range: range.to_string(),
                leased,
                busy,
            })
        })
    }

    /// Releases `env`'s port `name`, logging `network_released`.
    pub(crate) fn release_port(&self, env: &Environment, name: &PortName) -> Result<(u16, Event)> {
        self.write(|tx| {
            let port: Option<u16> = tx
                .query_row(
                    "DELETE FROM port_leases WHERE env_id = ?1 AND name = ?2 RETURNING port",
                    params![env.id.as_str(), name.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .ctx("releasing a port")?;
            let port = port.ok_or_else(|| {
                Error::Missing(format!(
                    "environment {} holds no port named {name}; see `ptest port list`",
                    env.name
                ))
            })?;
            let event = env_event(
                tx,
                env,
                IsolationEvent::NetworkReleased,
                serde_json::json!({ "port": port, "name": name }),
            )?;
            Ok((port, event))
        })
    }

    /// Every lease, or those of one environment, by port.
    pub fn port_leases(&self, env: Option<&EnvId>) -> Result<Vec<PortLease>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT e.name, l.env_id, l.name, l.port, l.leased_at FROM port_leases l \
                 JOIN environments e ON e.id = l.env_id \
                 WHERE ?1 IS NULL OR l.env_id = ?1 ORDER BY l.port",
            )
            .ctx("listing port leases")?;
        stmt.query_map([env.map(EnvId::as_str)], |r| {
            Ok(PortLease {
                env: r.get(0)?,
                env_id: r.get(1)?,
                name: parsed(
                    2,
                    r.get::<_, String>(2)?
                        .parse::<PortName>()
                        .map_err(StringError),
                )?,
                port: r.get(3)?,
                leased_at: timestamp(r, 4)?,
            })
        })
        .ctx("listing port leases")?
        .collect::<rusqlite::Result<_>>()
        .ctx("listing port leases")
    }
}

/// A message as an error type, for conversion failures of stored text.
#[derive(Debug)]
struct StringError(String);

impl std::fmt::Display for StringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StringError {}

/// (name, port) of each lease `env` holds.
fn leases_of(tx: &rusqlite::Transaction<'_>, env: &EnvId) -> Result<Vec<(String, u16)>> {
    let mut stmt = tx
        .prepare("SELECT name, port FROM port_leases WHERE env_id = ?1 ORDER BY name")
        .ctx("reading port leases")?;
    stmt.query_map([env.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .ctx("reading port leases")?
        .collect::<rusqlite::Result<_>>()
        .ctx("reading port leases")
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .ctx("starting the migration")?;
    let version: usize = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .ctx("reading the schema version")?;
    if version > migrations::MIGRATIONS.len() {
        return Err(Error::Usage(format!(
            "state.db has schema version {version}, newer than this ptest knows ({}); \
             upgrade ptest",
            migrations::MIGRATIONS.len()
        )));
    }
    for (i, sql) in migrations::MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql).ctx("migrating the schema")?;
        tx.pragma_update(None, "user_version", i + 1)
            .ctx("recording the schema version")?;
    }
    tx.commit().ctx("committing the migration")
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

/// The error of an environment whose change was interrupted in `status` by the death of
/// ptest process `pid`.
fn interrupted_message(status: &str, pid: u32) -> String {
    format!("interrupted while {status}: ptest process {pid} exited")
}

/// What the ptest that died was doing to `env` ("creating", "removing") when its change
/// was interrupted (see [`Store::repair_interrupted`]): nobody will finish or undo it but
/// `gc`, which removes it. `None` for an environment that is not in such an `error`.
pub(crate) fn abandoned(env: &Environment) -> Option<&'static str> {
    if env.status != EnvironmentStatus::Error {
        return None;
    }
    let error = env.error.as_deref()?;
    let was = |states: &[&str]| {
        states
            .iter()
            .any(|s| error.starts_with(&format!("interrupted while {s}:")))
    };
    if was(&["initializing", "created", "activating"]) {
        Some("creating")
    } else if was(&[
        "deactivating",
        "inactive",
        "cleanup_start",
        "cleaning",
        "cleanup_complete",
    ]) {
        Some("removing")
    } else {
        None
    }
}

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Refuses a state database that cannot hold what it should, before SQLite would make a new
/// one over it: missing or empty while environment roots exist in `envs`, not a database,
/// or shorter than its header says (truncated). Costs one read of its first 100 bytes; the
/// roots are looked for only when the file is missing or empty.
pub fn check_intact(db: &Path, envs: &Path) -> Result<()> {
    let damaged = |reason: String| Error::StoreDamaged {
        path: db.to_owned(),
        reason,
    };
    let mut header = [0u8; 100];
    let read = match fs::File::open(db) {
        Ok(mut f) => read_up_to(&mut f, &mut header).map_err(|e| Error::io("reading", db, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::io("opening", db, e)),
    };
    if read == 0 {
        let roots = marked_roots(envs);
        if roots > 0 {
            let what = if db.exists() {
                "is empty"
            } else {
                "is missing"
            };
            return Err(damaged(format!(
                "{what} while {roots} environment root(s) exist in {}",
                envs.display()
            )));
        }
        return Ok(());
    }
    if read < header.len() || &header[..16] != SQLITE_MAGIC {
        return Err(damaged(
            "is not a SQLite database (its header is wrong)".into(),
        ));
    }
    // Page size (1 stands for 65536) and the page count, valid when the change counter
    // matches the version-valid-for number.
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    let word = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let pages = u64::from(word(28));
    if word(24) != word(92) || pages == 0 {
        return Ok(());
    }
    // A checkpoint in another process writes page 1 (this header) before the pages that
    // extend the file: a file shorter than its header says for a moment is normal. Only one
    // that stays short is truncated.
    let expected = pages * page_size;
    for _ in 0..25 {
        let len = fs::metadata(db)
            .map_err(|e| Error::io("inspecting", db, e))?
            .len();
        if len >= expected {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let len = fs::metadata(db)
        .map_err(|e| Error::io("inspecting", db, e))?
        .len();
    // A checkpoint that readers held back (PASSIVE) may have written the header and stopped
    // before the last pages: those still live in the WAL, and nothing is lost.
    if wal_holds(db, len / page_size + 1, pages, page_size) {
        return Ok(());
    }
    Err(damaged(format!(
        "is truncated: {len} bytes where its header says {expected} ({pages} pages)"
    )))
}

/// Whether the WAL beside `db` holds a valid frame (salts matching its header) for each page
/// `first..=last`.
fn wal_holds(db: &Path, first: u64, last: u64, page_size: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut wal_path = db.as_os_str().to_owned();
    wal_path.push("-wal");
    let Ok(mut wal) = fs::File::open(&wal_path) else {
        return false;
    };
    let mut header = [0u8; 32];
    if wal.read_exact(&mut header).is_err() {
        return false;
    }
    let word = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    if word(&header, 0) & !1 != 0x377f_0682 || u64::from(word(&header, 8)) != page_size {
        return false;
    }
    let salts = (word(&header, 16), word(&header, 20));
    let mut needed: std::collections::BTreeSet<u64> = (first..=last).collect();
    let mut frame = [0u8; 24];
    let mut at = 32u64;
    while !needed.is_empty()
        && wal.seek(SeekFrom::Start(at)).is_ok()
        && wal.read_exact(&mut frame).is_ok()
    {
        if (word(&frame, 8), word(&frame, 12)) != salts {
            break;
        }
        needed.remove(&u64::from(word(&frame, 0)));
        at += 24 + page_size;
    }
    needed.is_empty()
}

fn read_up_to(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// How many entries of `envs` carry an environment marker.
fn marked_roots(envs: &Path) -> usize {
    fs::read_dir(envs).map_or(0, |dir| {
        dir.filter_map(|e| e.ok())
            .filter(|e| e.path().join(crate::root::MARKER).exists())
            .count()
    })
}

/// How a recorded process ended: its final status, and the details of `process_stopped`.
pub(crate) struct Ended {
    pub status: ProcessStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub details: serde_json::Value,
}

/// Logs `process_starting`, records the process as running, logs `process_started`.
fn insert_process(
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
fn finish_process(
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

/// What a new environment must fit in: `max_environments`, its level's maximum, the quotas.
#[derive(Debug, Clone, Default)]
pub(crate) struct Admission {
    /// `max_environments`.
    pub max: u32,
    /// `level.<L>.max_environments` of the new environment's level.
    pub level_max: Option<u32>,
    /// `[quota]`.
    pub quota: crate::config::QuotaConfig,
}

impl Admission {
    /// Refuses `env` when its level is full or its limits would take a sum past a quota,
    /// counting what the environments in the store hold (in the caller's transaction).
    fn check(&self, tx: &rusqlite::Transaction<'_>, env: &Environment) -> Result<()> {
        if let Some(max) = self.level_max {
            let of_level: u32 = tx
                .query_row(
                    "SELECT COUNT(*) FROM environments WHERE level = ?1",
                    [env.level.as_str()],
                    |r| r.get(0),
                )
                .ctx("counting environments")?;
            if of_level >= max {
                return Err(Error::QuotaExceeded {
                    quota: format!("level.{}.max_environments", env.level),
                    used: format!("{of_level} environments"),
                    limit: max.to_string(),
                    request: "one more".into(),
                });
            }
        }
        if !self.quota.any() {
            return Ok(());
        }
        let (mut memory, mut cpus, mut disk) = (0u64, 0f64, 0u64);
        let mut stmt = tx
            .prepare_cached("SELECT json_extract(spec, '$.limits') FROM environments")
            .ctx("summing limits")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Option<String>>(0))
            .ctx("summing limits")?;
        for row in rows {
            let Some(text) = row.ctx("summing limits")? else {
                continue;
            };
            let limits: Limits = serde_json::from_str(&text).unwrap_or_default();
            memory += limits.memory.map_or(0, |m| m.0);
            cpus += limits.cpus.unwrap_or(0.0);
            disk += limits.disk.map_or(0, |d| d.0);
        }
        let asked = &env.spec.limits;
        let bytes = |b: u64| ByteSize(b).to_string();
        let over = |quota: &str, used: String, limit: String, request: String| {
            Err(Error::QuotaExceeded {
                quota: quota.into(),
                used,
                limit,
                request,
            })
        };
        if let (Some(q), Some(m)) = (self.quota.memory, asked.memory)
            && memory + m.0 > q.0
        {
            return over("quota.memory", bytes(memory), q.to_string(), m.to_string());
        }
        if let (Some(q), Some(c)) = (self.quota.cpus, asked.cpus)
            && cpus + c > q + 1e-9
        {
            return over(
                "quota.cpus",
                format!("{cpus} cores"),
                format!("{q}"),
                format!("{c}"),
            );
        }
        if let (Some(q), Some(d)) = (self.quota.disk, asked.disk)
            && disk + d.0 > q.0
        {
            return over("quota.disk", bytes(disk), q.to_string(), d.to_string());
        }
        Ok(())
    }
}

/// Runs one statement through the connection's statement cache: a `ptest` process runs the
/// same few statements many times, and parsing SQL showed up in profiles.
fn execute(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Logs `event` about `env` in the transaction.
pub(crate) fn env_event(
    tx: &rusqlite::Transaction<'_>,
    env: &Environment,
    event: IsolationEvent,
    details: serde_json::Value,
) -> Result<Event> {
    execute(
        tx,
        "UPDATE environments SET last_activity = ?2 WHERE id = ?1",
        params![env.id.as_str(), Timestamp::now().to_string()],
    )
    .ctx("stamping the environment's last activity")?;
    insert_event(
        tx,
        &EventRecord {
            event,
            details,
            env: Some((&env.id, &env.name)),
        },
    )
}

fn insert_event(tx: &rusqlite::Transaction<'_>, record: &EventRecord<'_>) -> Result<Event> {
    let time = Timestamp::now();
    let (env_id, env_name) = record
        .env
        .map(|(i, n)| (i.to_string(), n.to_string()))
        .unzip();
    execute(
        tx,
        "INSERT INTO events (time, event, env_id, env_name, details) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            time.to_string(),
            record.event.as_str(),
            env_id,
            env_name,
            record.details.to_string()
        ],
    )
    .ctx("logging an event")?;
    Ok(Event {
        id: tx.last_insert_rowid(),
        time,
        event: record.event,
        env_id,
        env_name,
        details: record.details.clone(),
    })
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("model types serialize to JSON")
}

/// A column that does not parse is a corrupt database: report it as a conversion failure.
fn parsed<T, E: std::error::Error + Send + Sync + 'static>(
    col: usize,
    r: std::result::Result<T, E>,
) -> rusqlite::Result<T> {
    r.map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, e.into())
    })
}

fn timestamp(row: &Row<'_>, col: usize) -> rusqlite::Result<Timestamp> {
    parsed(col, row.get::<_, String>(col)?.parse())
}

fn optional_timestamp(row: &Row<'_>, col: usize) -> rusqlite::Result<Option<Timestamp>> {
    row.get::<_, Option<String>>(col)?
        .map(|t| parsed(col, t.parse()))
        .transpose()
}

fn env_from_row(row: &Row<'_>) -> rusqlite::Result<Environment> {
    let spec: EnvironmentSpec = parsed(5, serde_json::from_str(&row.get::<_, String>(5)?))?;
    Ok(Environment {
        id: EnvId::from_stored(row.get(0)?),
        name: parsed(1, row.get::<_, String>(1)?.parse())?,
        level: parsed(2, row.get::<_, String>(2)?.parse())?,
        status: parsed(3, row.get::<_, String>(3)?.parse())?,
        root: PathBuf::from(row.get::<_, String>(4)?),
        spec,
        created_at: timestamp(row, 6)?,
        updated_at: timestamp(row, 7)?,
        expires_at: row
            .get::<_, Option<String>>(8)?
            .map(|t| parsed(8, t.parse()))
            .transpose()?,
        error: row.get(9)?,
        details: parsed(10, serde_json::from_str(&row.get::<_, String>(10)?))?,
        ports: parsed(11, serde_json::from_str(&row.get::<_, String>(11)?))?,
        activated_at: optional_timestamp(row, 12)?,
        deactivated_at: optional_timestamp(row, 13)?,
        last_activity: optional_timestamp(row, 14)?,
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: row.get(0)?,
        time: timestamp(row, 1)?,
        event: parsed(2, row.get::<_, String>(2)?.parse())?,
        env_id: row.get(3)?,
        env_name: row.get(4)?,
        details: parsed(5, serde_json::from_str(&row.get::<_, String>(5)?))?,
    })
}

fn process_from_row(row: &Row<'_>) -> rusqlite::Result<ProcessInfo> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_database_is_migrated_and_keeps_its_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.db");
        {
            // A database as the first release left it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(migrations::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            let spec = json(&EnvironmentSpec::new(crate::IsolationLevel::Basic));
            conn.execute(
                "INSERT INTO environments (id, name, level, status, root, spec, created_at, \
                 updated_at, session) VALUES ('0123456789ab', 'old', 'basic', 'active', '/x', \
                 ?1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 's')",
                [spec],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.schema_version().unwrap() as usize,
            migrations::MIGRATIONS.len()
        );
        let env = store.find("old").unwrap().unwrap();
        assert_eq!(env.status, crate::EnvironmentStatus::Active);
        assert!(env.details.is_empty() && env.ports.is_empty());
    }

    /// A process recorded once it had ended leaves what one recorded while it ran does.
    #[test]
    fn an_ended_process_is_recorded_as_a_running_one_that_ended() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("state.db")).unwrap();
        let spec = json(&EnvironmentSpec::new(crate::IsolationLevel::Basic));
        store
            .lock()
            .execute(
                "INSERT INTO environments (id, name, level, status, root, spec, created_at, \
                 updated_at, session) VALUES ('0123456789ab', 'e', 'basic', 'active', '/x', \
                 ?1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 's')",
                [spec],
            )
            .unwrap();
        let env = store.find("e").unwrap().unwrap();
        let command = ["sh".to_owned(), "-c".to_owned(), "exit 3".to_owned()];
        let ended = || Ended {
            status: ProcessStatus::Stopped,
            exit_code: Some(3),
            signal: None,
            details: serde_json::json!({ "exit_code": 3 }),
        };
        let started = || Started {
            pid: 7,
            start_ticks: 70,
            command: &command,
            started_at: Timestamp::now(),
            starting: serde_json::json!({ "command": command }),
        };
        let (id, [a, b]) = store.insert_process(&env, started()).unwrap();
        let c = store.finish_process(&env, id, ended()).unwrap();
        let [x, y, z] = store
            .record_ended_process(&env, started(), ended())
            .unwrap();
        let kinds = |events: [&Event; 3]| events.map(|e| (e.event, e.details.clone()));
        assert_eq!(kinds([&a, &b, &c]), kinds([&x, &y, &z]));
        assert!(x.id > c.id && y.id > x.id && z.id > y.id);
        let rows: Vec<(i64, String, String, Option<i32>, bool)> = store
            .lock()
            .prepare(
                "SELECT pid, command, status, exit_code, ended_at IS NOT NULL FROM processes \
                 ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], rows[1]);
        assert_eq!(rows[0].2, "stopped");
        assert!(store.live_processes(&env.id).unwrap().is_empty());
    }

    #[test]
    fn a_newer_database_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer than this ptest knows"), "{err}");
    }
}
