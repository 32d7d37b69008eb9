//! Environment records: insert (with the admission check), status changes, details, removal,
//! the repair of changes a dead `ptest` left half-done, and lookups.

use super::*;

impl Store {
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

    /// [`EnvSummary`]s, oldest first, of the environments at `level` and in `status` (each
    /// when given): one query, nothing parsed but the shown columns.
    pub fn environment_summaries(
        &self,
        level: Option<IsolationLevel>,
        status: Option<EnvironmentStatus>,
    ) -> Result<Vec<EnvSummary>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT id, name, level, status, json_extract(spec, '$.cleanup'), created_at, \
                 root FROM environments WHERE (?1 IS NULL OR level = ?1) \
                 AND (?2 IS NULL OR status = ?2) ORDER BY created_at, name",
            )
            .ctx("listing environments")?;
        stmt.query_map(
            params![level.map(|l| l.to_string()), status.map(|s| s.to_string())],
            |row| {
                Ok(EnvSummary {
                    id: EnvId::from_stored(row.get(0)?),
                    name: parsed(1, row.get::<_, String>(1)?.parse())?,
                    level: parsed(2, row.get::<_, String>(2)?.parse())?,
                    status: parsed(3, row.get::<_, String>(3)?.parse())?,
                    cleanup: parsed(4, row.get::<_, String>(4)?.parse())?,
                    created_at: timestamp(row, 5)?,
                    root: PathBuf::from(row.get::<_, String>(6)?),
                })
            },
        )
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
}

/// The error of an environment whose change was interrupted in `status` by the death of
/// ptest process `pid`.
pub(super) fn interrupted_message(status: &str, pid: u32) -> String {
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

pub(super) fn env_from_row(row: &Row<'_>) -> rusqlite::Result<Environment> {
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
