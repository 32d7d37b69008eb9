//! Network addresses leased to environments (a `bridge` environment's address on its home's
//! bridge). The primary key (network, address) keeps an address from being held twice, by
//! any number of `ptest` processes; a lease goes with its environment's record.

use std::net::Ipv4Addr;

use jiff::Timestamp;
use rusqlite::params;

use super::{Store, env_event, execute};
use crate::error::{Error, Result, StoreContext};
use crate::model::{AddressLease, Environment, Event, IsolationEvent};
use crate::name::EnvId;

impl Store {
    /// Leases to `env` the first of `candidates` that no environment holds on `network`,
    /// under the write lock, and logs `network_allocated`.
    pub(crate) fn lease_address(
        &self,
        env: &Environment,
        network: &str,
        candidates: &mut dyn Iterator<Item = Ipv4Addr>,
    ) -> Result<(Ipv4Addr, Event)> {
        self.write(|tx| {
            let held: std::collections::HashSet<String> = {
                let mut stmt = tx
                    .prepare("SELECT address FROM address_leases WHERE network = ?1")
                    .ctx("reading address leases")?;
                stmt.query_map([network], |r| r.get(0))
                    .ctx("reading address leases")?
                    .collect::<rusqlite::Result<_>>()
                    .ctx("reading address leases")?
            };
            let leased = held.len();
            let mut candidates = candidates;
            let address = Iterator::find(&mut candidates, |a| !held.contains(&a.to_string()))
                .ok_or_else(|| Error::AddressesExhausted {
                    network: network.to_owned(),
                    leased,
                })?;
            execute(
                tx,
                "INSERT INTO address_leases (network, address, env_id, leased_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    network,
                    address.to_string(),
                    env.id.as_str(),
                    Timestamp::now().to_string()
                ],
            )
            .ctx("leasing an address")?;
            let event = env_event(
                tx,
                env,
                IsolationEvent::NetworkAllocated,
                serde_json::json!({ "network": network, "address": address }),
            )?;
            Ok((address, event))
        })
    }

    /// Address leases on `network` (all networks when `None`), of one environment or all.
    pub fn address_leases(
        &self,
        network: Option<&str>,
        env: Option<&EnvId>,
    ) -> Result<Vec<AddressLease>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT l.network, l.address, l.env_id, e.name FROM address_leases l \
                 JOIN environments e ON e.id = l.env_id \
                 WHERE (?1 IS NULL OR l.network = ?1) AND (?2 IS NULL OR l.env_id = ?2) \
                 ORDER BY l.network, l.address",
            )
            .ctx("listing address leases")?;
        stmt.query_map(params![network, env.map(EnvId::as_str)], |r| {
            let address: String = r.get(1)?;
            Ok(AddressLease {
                network: r.get(0)?,
                address: super::parsed(1, address.parse())?,
                env_id: EnvId::from_stored(r.get(2)?),
                env_name: super::parsed(3, r.get::<_, String>(3)?.parse())?,
            })
        })
        .ctx("listing address leases")?
        .collect::<rusqlite::Result<_>>()
        .ctx("listing address leases")
    }
}

/// Logs `network_released` for each address `env` holds, in the transaction that deletes it
/// (its leases go with it).
pub(super) fn log_released(tx: &rusqlite::Transaction<'_>, env: &Environment) -> Result<()> {
    let held: Vec<(String, String)> = {
        let mut stmt = tx
            .prepare("SELECT network, address FROM address_leases WHERE env_id = ?1")
            .ctx("reading address leases")?;
        stmt.query_map([env.id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .ctx("reading address leases")?
            .collect::<rusqlite::Result<_>>()
            .ctx("reading address leases")?
    };
    for (network, address) in held {
        env_event(
            tx,
            env,
            IsolationEvent::NetworkReleased,
            serde_json::json!({ "network": network, "address": address }),
        )?;
    }
    Ok(())
}
