//! The home's hub: who holds it (`network.json`), the lock that serialises set-up and
//! tear-down (`network.lock`), and making it when it is not there.

use super::*;

/// Which process holds a home's hub, kept in `<home>/network.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct HubRecord {
    pub(super) holder: i32,
    pub(super) start_time: u64,
}

/// Takes the home's network lock (released when the descriptor is dropped).
pub(super) fn lock_home(path: &Path) -> Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io("locking", path, e.into()))?;
    Ok(file.into())
}

/// The hub of this home, made (with its filtering tables and the host's forwarding table)
/// if it is not there. Its subnet is the first free /24 of 10.128.0.0/10 from a start
/// picked by the home's hash. Called under the lock.
pub(super) fn ensure_hub(names: &Names) -> Result<Hub> {
    if let Some(hub) = names.open_hub() {
        return Ok(hub);
    }
    // What is left of a hub that is not whole (its holder or uplink gone) goes first.
    if let Some(old) = std::fs::read_to_string(&names.record)
        .ok()
        .and_then(|t| serde_json::from_str::<HubRecord>(&t).ok())
    {
        Hub::remove(old.holder, old.start_time, &names.uplink)
            .map_err(|e| engine_error("set up the bridge", e))?;
    }
    let start = u32::from_str_radix(&names.hash[..4], 16).expect("the hash is hex") % 16384;
    let candidates = (0..16384u32).map(|i| {
        let n = (start + i) % 16384;
        Subnet::new(
            Ipv4Addr::new(10, 128 + (n >> 8) as u8, (n & 0xff) as u8, 0),
            24,
        )
    });
    let hub = Hub::create_on_free_subnet(&names.uplink, candidates)
        .map_err(|e| engine_error("set up the bridge", e))?;
    ptest_core::failpoint::failpoint("create.bridge_unrecorded");
    let subnet = hub.subnet();
    let record = HubRecord {
        holder: hub.holder(),
        start_time: hub.start_time(),
    };
    let made = hub
        .nft("install the bridge's filter", &hub_ruleset())
        .and_then(|_| {
            bridge::nft(
                "install the port forwarding",
                &host_ruleset(&names.bridge, &names.uplink, subnet),
            )
        })
        .map_err(|e| engine_error("set up the bridge", e))
        .and_then(|_| {
            std::fs::write(
                &names.record,
                serde_json::to_vec(&record).expect("serializes"),
            )
            .map_err(|e| Error::io("writing", &names.record, e))
        });
    if let Err(e) = made {
        let _ = hub.destroy();
        if host_table_exists(&names.bridge) {
            let _ = drop_host_table(&names.bridge);
        }
        return Err(e);
    }
    Ok(hub)
}

/// Forgets which process held the hub, once it is gone.
pub(super) fn remove_record(record: &Path) -> std::result::Result<(), String> {
    match std::fs::remove_file(record) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", record.display()))
        }
        _ => Ok(()),
    }
}
