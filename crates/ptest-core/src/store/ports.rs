//! Port leases: handed out under the write lock, proven free by `bind`, released by name.

use super::*;

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

/// (name, port) of each lease `env` holds.
pub(super) fn leases_of(tx: &rusqlite::Transaction<'_>, env: &EnvId) -> Result<Vec<(String, u16)>> {
    let mut stmt = tx
        .prepare("SELECT name, port FROM port_leases WHERE env_id = ?1 ORDER BY name")
        .ctx("reading port leases")?;
    stmt.query_map([env.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .ctx("reading port leases")?
        .collect::<rusqlite::Result<_>>()
        .ctx("reading port leases")
}
