//! The state store: one SQLite database (WAL mode) shared by every `ptest` process of a home.
//!
//! Every change is one transaction, and a change that emits an event writes the event in the
//! same transaction, so the log never disagrees with the state. Changes that must see a
//! consistent count (the `max_environments` check) use `BEGIN IMMEDIATE`, which takes the
//! database's write lock before reading.

mod addresses;
mod environments;
mod events;
mod integrity;
mod migrations;
mod ports;
mod processes;
mod services;

pub(crate) use environments::*;
pub use events::EventQuery;
pub(crate) use events::*;
pub use integrity::check_intact;
use ports::*;
pub(crate) use processes::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::error::{Error, Result, StoreContext};
use crate::liveness::ProcessId;
use crate::model::{
    EnvSummary, Environment, EnvironmentSpec, EnvironmentStatus, Event, IsolationEvent,
    IsolationLevel, Limits, ProcessInfo, ProcessStatus,
};
use crate::name::{EnvId, EnvName};
use crate::ports::{PortLease, PortName, PortRange};
use crate::size::ByteSize;

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

/// How long a call waits for another process's lock on the store before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// WAL pages after which a commit checkpoints: a command writes about five.
const WAL_PAGES: i64 = 128;

impl Store {
    /// Opens (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path).ctx("opening the database")?;
        // Many ptest processes write at once: wait for the lock rather than fail.
        conn.busy_timeout(BUSY_TIMEOUT)
            .ctx("setting the busy timeout")?;
        enable_wal(&conn)?;
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

/// Switches the store to WAL (a no-op once it is). SQLite does not call the busy handler
/// while it changes a database's journal mode, so when many `ptest` processes open a new
/// store at once, all but one are refused at once: they wait here instead, as for any lock.
fn enable_wal(conn: &Connection) -> Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            done => return done.ctx("enabling WAL"),
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    // The common case, a store at this version, takes no lock: the exclusive transaction
    // would serialize every concurrent `ptest` call on its way in.
    let current: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .ctx("reading the schema version")?;
    if current == migrations::MIGRATIONS.len() {
        return Ok(());
    }
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

/// Runs one statement through the connection's statement cache: a `ptest` process runs the
/// same few statements many times, and parsing SQL showed up in profiles.
fn execute(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Many `ptest` calls against a new home open its store at the same moment: each waits
    /// for the others' locks, none is refused (CI once saw "enabling WAL: database is locked").
    #[test]
    fn a_new_store_opened_by_many_at_once_opens_for_all() {
        for _ in 0..20 {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("state.db");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
            let openers: Vec<_> = (0..16)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open(&path).map(|store| store.schema_version().unwrap())
                    })
                })
                .collect();
            for opener in openers {
                let version = opener.join().unwrap().unwrap();
                assert_eq!(version as usize, migrations::MIGRATIONS.len());
            }
        }
    }

    /// A `ptest` call opens the store while another holds the write lock (a long `env
    /// create`): a store at this schema version is only read on the way in.
    #[test]
    fn a_current_store_opens_while_another_process_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.db");
        drop(Store::open(&path).unwrap());
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let opened = std::thread::spawn({
            let path = path.clone();
            move || {
                let store = Store::open(&path);
                // The writer still holds its lock: no 60 s busy wait happened first.
                store.map(|s| s.schema_version().unwrap())
            }
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(opened as usize, migrations::MIGRATIONS.len());
        writer.execute_batch("COMMIT").unwrap();
    }

    /// Every call looks for changes whose owner died; the search reads the owners' index,
    /// not every environment's row.
    #[test]
    fn the_search_for_interrupted_changes_uses_the_owners_index() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("state.db")).unwrap();
        let plan: String = store
            .lock()
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id, name, status, owner_pid, owner_ticks \
                 FROM environments WHERE owner_pid IS NOT NULL",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("environments_owner"), "{plan}");
    }

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
