//! The event log: appended in the transaction of the change it records, read by query.

use super::*;

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

impl Store {
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

pub(super) fn insert_event(
    tx: &rusqlite::Transaction<'_>,
    record: &EventRecord<'_>,
) -> Result<Event> {
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

pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: row.get(0)?,
        time: timestamp(row, 1)?,
        event: parsed(2, row.get::<_, String>(2)?.parse())?,
        env_id: row.get(3)?,
        env_name: row.get(4)?,
        details: parsed(5, serde_json::from_str(&row.get::<_, String>(5)?))?,
    })
}
