//! What a `ptest` killed mid-create left on a home's bridge, removed by `gc`.

use super::*;

/// What a `ptest` killed mid-create left on `home`'s bridge: links and rules of environments
/// not in `live_ids` are removed, then the hub and host table if no environment is left.
pub(crate) fn collect_garbage(home: &Home, live_ids: &[String]) -> Vec<Removal> {
    let names = Names::of(home);
    collect(&names, live_ids)
        .unwrap_or_else(|e| vec![removal(&names.bridge, "", "bridge network", Some(e))])
}

pub(super) fn removal(name: &str, id: &str, reason: &str, error: Option<String>) -> Removal {
    Removal {
        name: name.to_owned(),
        id: id.to_owned(),
        action: "removed",
        reason: reason.to_owned(),
        error,
    }
}

pub(super) fn collect(
    names: &Names,
    live_ids: &[String],
) -> std::result::Result<Vec<Removal>, String> {
    let mut out = Vec::new();
    // A hub's holder is started first, its uplink next and its record last: a home with
    // none of them never had one.
    if !names.record.exists()
        && !bridge::link_exists(&names.uplink)
        && bridge::stray_holders(&names.uplink, None).is_empty()
    {
        return Ok(out);
    }
    let _lock = lock_home(&names.lock).map_err(|e| e.to_string())?;
    // Holders whose creator died before recording them (under the lock: none is being made).
    let recorded = std::fs::read_to_string(&names.record)
        .ok()
        .and_then(|t| serde_json::from_str::<HubRecord>(&t).ok())
        .map(|r| (r.holder, r.start_time));
    for (pid, start) in bridge::stray_holders(&names.uplink, recorded) {
        bridge::kill_holder(pid, start);
        out.push(removal(
            &names.bridge,
            "",
            &format!("unrecorded bridge holder {pid}"),
            None,
        ));
    }
    let Some(hub) = names.open_hub() else {
        // A holder without its uplink, an uplink or a host table without a hub: leftovers of
        // a crash.
        let record: Option<HubRecord> = std::fs::read_to_string(&names.record)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let table = host_table_exists(&names.bridge);
        let dropped = if table {
            drop_host_table(&names.bridge)
        } else {
            Ok(())
        };
        let error = dropped
            .and_then(|()| match &record {
                Some(r) => Hub::remove(r.holder, r.start_time, &names.uplink),
                None => bridge::remove_link(&names.uplink),
            })
            .map_err(|e| e.to_string())
            .and_then(|()| remove_record(&names.record))
            .err();
        out.push(removal(&names.bridge, "", "orphaned bridge network", error));
        return Ok(out);
    };
    let ids = member_ids(&hub).map_err(|e| e.to_string())?;
    let dead: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| !live_ids.iter().any(|l| l == id))
        .collect();
    if !dead.is_empty() {
        let error = forget(&hub, &names.bridge, &dead)
            .err()
            .map(|e| e.to_string());
        for id in &dead {
            out.push(removal(
                &link_name(id),
                id,
                "orphaned bridge link of this home",
                error.clone(),
            ));
        }
    }
    if hub.links().is_ok_and(|l| l.is_empty()) {
        let error = retire_if_empty(&hub, &names.bridge, &names.record)
            .err()
            .map(|e| e.to_string());
        out.push(removal(
            &names.bridge,
            "",
            "bridge network no environment uses",
            error,
        ));
    }
    Ok(out)
}
