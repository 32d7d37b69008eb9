//! `--network bridge` for basic and virtualenv environments: each environment's pod is
//! plugged by a veth pair into its home's hub ([`ptest_sandbox::bridge::Hub`]: a network
//! namespace of its own with a bridge; its uplink `ptbr-<home hash>` on the host carries the
//! gateway `.1` of a private /24 chosen from 10.128.0.0/10), with an address leased in the
//! store, so environments reach each other by address. Which process holds the hub is kept
//! in `<home>/network.json`.
//!
//! Access control lives in the hub's own nftables ruleset, out of the environment's reach:
//! a bridge-family table lets a link send only from the address it was given (ARP and IPv4;
//! anything else is dropped), and an ip-family table, which sees bridged traffic with
//! connection tracking, lets an environment's packets through only as replies or to what its
//! `--allow` rules name; the rest is rejected at once (a TCP reset, else ICMP
//! `admin-prohibited`), so a refused connect fails fast instead of hanging. Leased host
//! ports are forwarded to the environment by a table `ip ptest-<home hash>` on the host
//! (DNAT of connections to the host's own addresses, loopback included).
//!
//! One lock file per home (`<home>/network.lock`) serialises set-up and tear-down, so a hub
//! is made once and removed with the home's last bridge environment, never under a create.
//! Everything here is named after the home's hash and the environment's id, and only those
//! names are ever removed.

mod dns;
mod gc;
mod hub;
mod nft;

pub(crate) use dns::ResolvedRule;
use dns::*;
pub(crate) use gc::collect_garbage;
use hub::*;
use nft::*;

use std::net::{Ipv4Addr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use ptest_core::{
    AllowHost, AllowRule, EngineContext, Environment, Error, Finding, Home, IsolationLevel,
    NetworkStatus, Removal, Result,
};
use ptest_sandbox::bridge::{self, Hub, Subnet};
use serde::{Deserialize, Serialize};

use ptest_core::blocking;

/// The key of the environment's details that holds its [`BridgeState`].
const DETAIL: &str = "network";
/// The hub's filtering tables (the hub's ruleset holds nothing else).
const HUB_TABLE: &str = "ptest";

/// An environment's place on its home's bridge, recorded in its details as `network`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BridgeState {
    /// How far set-up got: `initializing` (address leased), `ready` (plugged in, not yet on
    /// the bridge), `connected`, or `error`.
    pub status: NetworkStatus,
    /// The home's bridge: the network its address is leased on, and the host table's name.
    pub bridge: String,
    /// The process holding the hub's namespace.
    pub holder: i32,
    /// The holder's start time (clock ticks after boot).
    pub holder_start: u64,
    /// The hub's uplink on the host.
    pub uplink: String,
    /// Its link's name inside the hub.
    pub link: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// The subnet.
    pub subnet: String,
    /// The host's address on the subnet (the default route).
    pub gateway: Ipv4Addr,
    /// Its `--allow` rules, each with the addresses it resolved to at creation.
    pub allow: Vec<ResolvedRule>,
    /// Host ports forwarded to it (its leases).
    pub forwarded: Vec<u16>,
    /// The home it belongs to (its bridge's lock and record are there).
    pub home: PathBuf,
}

/// The names a home's bridge goes by, and where its files are.
#[derive(Clone)]
struct Names {
    /// `ptest-<home hash>`: the network addresses are leased on, and the host table.
    bridge: String,
    /// `ptbr-<hash>`: the uplink on the host.
    uplink: String,
    /// The home's hash: where its subnet search starts.
    hash: String,
    /// Which process holds the hub ([`HubRecord`]).
    record: PathBuf,
    /// The lock serialising set-up and tear-down.
    lock: PathBuf,
}

impl Names {
    fn of(home: &Home) -> Self {
        let hash = home.hash();
        Self {
            bridge: format!("ptest-{hash}"),
            uplink: format!("ptbr-{}", &hash[..10]),
            hash,
            record: home.path().join("network.json"),
            lock: home.path().join("network.lock"),
        }
    }

    /// The home's hub, if it is there and whole.
    fn open_hub(&self) -> Option<Hub> {
        let text = std::fs::read_to_string(&self.record).ok()?;
        let record: HubRecord = serde_json::from_str(&text).ok()?;
        Hub::open(record.holder, record.start_time, &self.uplink)
    }
}

/// The link of `env` inside the hub: `e<id>` (13 bytes, under the kernel's 15).
fn link_name(id: &str) -> String {
    format!("e{id}")
}

/// The hub chain holding `env`'s rules.
fn chain_name(id: &str) -> String {
    format!("env-{id}")
}

fn engine_error(action: &'static str, message: impl ToString) -> Error {
    Error::Engine {
        level: IsolationLevel::Basic,
        action,
        source: message.to_string().into(),
    }
}

/// The recorded network of `env`, if it is on a bridge.
pub(crate) fn state(env: &Environment) -> Option<BridgeState> {
    serde_json::from_value(env.details.get(DETAIL)?.clone()).ok()
}

/// Whether `env`'s link is still on its hub, for `env validate`: `connected`, or
/// `disconnected` when the link or the hub is gone.
pub(crate) fn finding(env: &Environment) -> Option<Finding> {
    let state = state(env)?;
    let plugged = Hub::open(state.holder, state.holder_start, &state.uplink)
        .and_then(|hub| hub.links().ok())
        .is_some_and(|links| links.contains(&state.link));
    let status = if plugged {
        NetworkStatus::Connected
    } else {
        NetworkStatus::Disconnected
    };
    Some(Finding {
        check: "network".into(),
        ok: plugged,
        detail: format!(
            "{status}: {} on {} (link {}{})",
            state.address,
            state.bridge,
            state.link,
            if plugged { "" } else { " is gone" }
        ),
    })
}

/// Starts or stops forwarding host `port` to `env`, for a lease that came or went after it
/// joined the bridge. Nothing to do for an environment not on a bridge.
pub(crate) fn forward_port(env: &Environment, port: u16, on: bool) -> Result<()> {
    let Some(state) = state(env).filter(|s| s.status == NetworkStatus::Connected) else {
        return Ok(());
    };
    let script = if on {
        format!(
            "add element ip {} ports {{ {port} : {} }}\n",
            state.bridge, state.address
        )
    } else {
        format!("delete element ip {} ports {{ {port} }}\n", state.bridge)
    };
    bridge::nft("forward a leased port", &script)
        .map(drop)
        .map_err(|e| engine_error("forward a leased port", e))
}

/// Joins `env`'s pod (holder `pid`) to its home's bridge: leases an address, plugs a veth
/// pair in, installs its rules and forwarded ports, then attaches it. Notes each step in
/// its details; on failure the note says `error` and [`disconnect`] undoes what was made.
pub(crate) async fn connect(env: &Environment, ctx: &dyn EngineContext, pid: i32) -> Result<()> {
    let names = Names::of(ctx.home());
    let made = names.clone();
    let (hub, lock) = blocking(move || {
        let lock = lock_home(&made.lock)?;
        Ok((ensure_hub(&made)?, lock))
    })
    .await?;
    let leased = ctx.address_leases(&names.bridge).and_then(|leases| {
        let mut candidates = hub.subnet().members();
        Ok((leases, ctx.lease_address(&names.bridge, &mut candidates)?))
    });
    let (leases, address) = match leased {
        Ok(leased) => leased,
        Err(e) => {
            // A hub made for this environment alone goes with it.
            let (hub, record) = (hub.clone(), names.record.clone());
            let table = names.bridge.clone();
            let _ = blocking(move || retire_if_empty(&hub, &table, &record)).await;
            return Err(e);
        }
    };
    let mut state = BridgeState {
        status: NetworkStatus::Initializing,
        bridge: names.bridge.clone(),
        holder: hub.holder(),
        holder_start: hub.start_time(),
        uplink: hub.uplink().to_owned(),
        link: link_name(env.id.as_str()),
        address,
        subnet: hub.subnet().to_string(),
        gateway: hub.subnet().gateway(),
        allow: Vec::new(),
        forwarded: env.ports.values().copied().collect(),
        home: ctx.home().path().to_owned(),
    };
    let note =
        |state: &BridgeState| ctx.note(DETAIL, serde_json::to_value(state).expect("serializes"));
    note(&state)?;
    let rules = env.spec.allow.clone();
    let gateway = state.gateway;
    let leased: Vec<(String, Ipv4Addr)> = leases
        .into_iter()
        .map(|l| (l.env_name.to_string(), l.address))
        .collect();
    let result = async {
        state.allow = blocking(move || resolve_rules(&rules, &leased, gateway)).await?;
        note(&state)?;
        let (plugged, s) = (hub.clone(), state.clone());
        let id = env.id.to_string();
        blocking(move || plug(&plugged, &s, &id, pid)).await?;
        state.status = NetworkStatus::Ready;
        note(&state)?;
        let (attached, s, table) = (hub.clone(), state.clone(), names.bridge.clone());
        blocking(move || attach(&attached, &s, &table)).await?;
        state.status = NetworkStatus::Connected;
        note(&state)
    }
    .await;
    drop(lock);
    if result.is_err() {
        state.status = NetworkStatus::Error;
        let _ = note(&state);
    }
    result
}

/// Removes what [`connect`] made for `env` (its link, rules, forwarded ports) and, with the
/// home's last bridge environment, the hub and the host table. Safe on a half-made or
/// already removed network; the address lease goes with the environment's record.
pub(crate) async fn disconnect(env: &Environment) -> Result<()> {
    let Some(state) = state(env) else {
        return Ok(());
    };
    let id = env.id.to_string();
    blocking(move || {
        let names = Names::of(&Home::at(&state.home));
        let _lock = lock_home(&names.lock)?;
        let Some(hub) = Hub::open(state.holder, state.holder_start, &state.uplink) else {
            return Ok(());
        };
        forget(&hub, &state.bridge, &[id.as_str()])?;
        retire_if_empty(&hub, &state.bridge, &names.record)
    })
    .await
}

/// Plugs the pod in and installs its chain; its link is not on the bridge yet, so nothing
/// flows before its rules are in place.
fn plug(hub: &Hub, state: &BridgeState, id: &str, pid: i32) -> Result<()> {
    hub.plug(&state.link, pid, state.address)
        .map_err(|e| engine_error("plug the environment into the bridge", e))?;
    let chain = chain_name(id);
    let mut script = format!("add chain ip {HUB_TABLE} {chain}\n");
    for rule in &state.allow {
        let daddr = format!("{{ {} }}", rule.networks.join(", "));
        match rule.port {
            Some(port) => {
                for proto in ["tcp", "udp"] {
                    script += &format!(
                        "add rule ip {HUB_TABLE} {chain} ip daddr {daddr} {proto} dport {port} accept\n"
                    );
                }
            }
            None => script += &format!("add rule ip {HUB_TABLE} {chain} ip daddr {daddr} accept\n"),
        }
    }
    // Refused at once: a TCP reset (connection refused), else an ICMP error.
    script += &format!(
        "add rule ip {HUB_TABLE} {chain} meta l4proto tcp reject with tcp reset\n\
         add rule ip {HUB_TABLE} {chain} reject with icmp type admin-prohibited\n\
         add element ip {HUB_TABLE} members {{ {} : jump {chain} }}\n\
         add element bridge {HUB_TABLE} owned {{ \"{}\" . {} }}\n",
        state.address, state.link, state.address
    );
    hub.nft("install the environment's rules", &script)
        .map(drop)
        .map_err(|e| engine_error("install the environment's rules", e))
}

/// Forwards the environment's leased ports to it and puts its link on the bridge.
fn attach(hub: &Hub, state: &BridgeState, host_table: &str) -> Result<()> {
    if !state.forwarded.is_empty() {
        let elements: Vec<String> = state
            .forwarded
            .iter()
            .map(|p| format!("{p} : {}", state.address))
            .collect();
        bridge::nft(
            "forward the leased ports",
            &format!(
                "add element ip {host_table} ports {{ {} }}\n",
                elements.join(", ")
            ),
        )
        .map_err(|e| engine_error("forward the leased ports", e))?;
    }
    hub.attach(&state.link)
        .map_err(|e| engine_error("attach the environment to the bridge", e))
}

/// The environment ids with a link or a chain in `hub`.
fn member_ids(hub: &Hub) -> ptest_sandbox::Result<Vec<String>> {
    let mut ids: Vec<String> = hub
        .links()?
        .iter()
        .filter_map(|l| l.strip_prefix('e').map(str::to_owned))
        .collect();
    let listing = hub.nft(
        "list the bridge's rules",
        &format!("list table ip {HUB_TABLE}\n"),
    )?;
    ids.extend(
        listing
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("env-"))
            .map(|id| {
                id.trim_end_matches(|c: char| !c.is_ascii_hexdigit())
                    .to_owned()
            }),
    );
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Removes the links, chains, set and map elements and forwarded ports of environments
/// `ids` from `hub` and the host table.
fn forget(hub: &Hub, host_table: &str, ids: &[&str]) -> Result<()> {
    let fail = |e: ptest_sandbox::Error| engine_error("remove the environment from the bridge", e);
    for id in ids {
        hub.unplug(&link_name(id)).map_err(fail)?;
    }
    let ruleset = hub
        .nft("read the bridge's rules", "list ruleset\n")
        .map_err(fail)?;
    let members = members_of(&ruleset);
    let mut script = String::new();
    let mut addresses = Vec::new();
    for (address, chain) in &members {
        if let Some(id) = chain.strip_prefix("env-")
            && ids.contains(&id)
        {
            script += &format!(
                "delete element bridge {HUB_TABLE} owned {{ \"{}\" . {address} }}\n\
                 delete element ip {HUB_TABLE} members {{ {address} }}\n",
                link_name(id)
            );
            addresses.push(*address);
        }
    }
    for id in ids {
        if ruleset.contains(&format!("chain {} {{", chain_name(id))) {
            script += &format!(
                "flush chain ip {HUB_TABLE} {chain}\ndelete chain ip {HUB_TABLE} {chain}\n",
                chain = chain_name(id)
            );
        }
    }
    if !script.is_empty() {
        hub.nft("remove the environment's rules", &script)
            .map_err(fail)?;
    }
    if let Ok(listing) = bridge::nft(
        "read the forwarded ports",
        &format!("list map ip {host_table} ports\n"),
    ) {
        let ports: Vec<String> = forwarded_to(&listing, &addresses)
            .iter()
            .map(u16::to_string)
            .collect();
        if !ports.is_empty() {
            bridge::nft(
                "stop forwarding the leased ports",
                &format!(
                    "delete element ip {host_table} ports {{ {} }}\n",
                    ports.join(", ")
                ),
            )
            .map_err(fail)?;
        }
    }
    Ok(())
}

/// Removes the hub and the host table when no environment is plugged in any more.
fn retire_if_empty(hub: &Hub, host_table: &str, record: &Path) -> Result<()> {
    let fail = |e: ptest_sandbox::Error| engine_error("remove the bridge", e);
    if !hub.links().map_err(fail)?.is_empty() {
        return Ok(());
    }
    if host_table_exists(host_table) {
        drop_host_table(host_table).map_err(fail)?;
    }
    hub.destroy().map_err(fail)?;
    remove_record(record).map_err(|e| engine_error("remove the bridge", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "table ip ptest {
\tmap members {
\t\ttype ipv4_addr : verdict
\t\telements = { 10.130.4.2 : jump env-0123456789ab,
\t\t\t     10.130.4.3 : jump env-ba9876543210 }
\t}
}
";

    #[test]
    fn members_are_read_from_a_listing() {
        assert_eq!(
            members_of(LISTING),
            vec![
                ("10.130.4.2".parse().unwrap(), "env-0123456789ab".to_owned()),
                ("10.130.4.3".parse().unwrap(), "env-ba9876543210".to_owned()),
            ]
        );
        let ports = "table ip ptest-x {\n\tmap ports {\n\t\ttype inet_service : ipv4_addr\n\t\telements = { 20001 : 10.130.4.2, 20002 : 10.130.4.3 }\n\t}\n}\n";
        assert_eq!(
            forwarded_to(ports, &["10.130.4.3".parse().unwrap()]),
            vec![20002]
        );
    }

    #[test]
    fn rules_resolve_names_to_environments_and_the_host() {
        let leased = vec![("api".to_owned(), Ipv4Addr::new(10, 130, 4, 2))];
        let gateway = Ipv4Addr::new(10, 130, 4, 1);
        let rules: Vec<AllowRule> = ["api:8080", "host", "192.168.0.0/16:53"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let resolved = resolve_rules(&rules, &leased, gateway).unwrap();
        assert_eq!(resolved[0].networks, vec!["10.130.4.2/32"]);
        assert_eq!(resolved[0].port, Some(8080));
        assert_eq!(resolved[1].networks, vec!["10.130.4.1/32"]);
        assert_eq!(resolved[2].networks, vec!["192.168.0.0/16"]);
        let bad: AllowRule = "no-such-env.invalid:80".parse().unwrap();
        let err = resolve_rules(&[bad], &leased, gateway)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no environment on this home's bridge"),
            "{err}"
        );
    }
}
