//! The nftables text: the hub's filter and the host's table as rulesets, and reading
//! members and forwarded ports back from `nft list` output.

use super::*;

/// The hub's filter: links send only from their own address; environments' packets pass
/// as replies or by their chain (see the module documentation).
pub(super) fn hub_ruleset() -> String {
    format!(
        "table bridge {HUB_TABLE} {{
  set owned {{ type ifname . ipv4_addr; }}
  chain prerouting {{
    type filter hook prerouting priority filter; policy drop;
    iifname \"{peer}\" accept
    ether type arp iifname . arp saddr ip @owned accept
    ether type ip iifname . ip saddr @owned accept
  }}
}}
table ip {HUB_TABLE} {{
  map members {{ type ipv4_addr : verdict; }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
    ip saddr vmap @members
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    ct state established,related accept
    ip saddr vmap @members
  }}
}}
",
        peer = bridge::UPLINK_PEER
    )
}

/// The host's table: leased ports reach their environment (from anywhere, loopback
/// included), and the subnet is masqueraded beyond the host.
pub(super) fn host_ruleset(table: &str, uplink: &str, subnet: Subnet) -> String {
    // Declaring then deleting the table first replaces a leftover of a crash in one batch.
    format!(
        "table ip {table} {{}}
delete table ip {table}
table ip {table} {{
  map ports {{ type inet_service : ipv4_addr; }}
  chain output {{
    type nat hook output priority -100; policy accept;
    fib daddr type local dnat ip to tcp dport map @ports
    fib daddr type local dnat ip to udp dport map @ports
  }}
  chain prerouting {{
    type nat hook prerouting priority -100; policy accept;
    fib daddr type local dnat ip to tcp dport map @ports
    fib daddr type local dnat ip to udp dport map @ports
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    oifname \"{uplink}\" ip saddr 127.0.0.0/8 masquerade
    oifname != \"{uplink}\" ip saddr {subnet} masquerade
  }}
}}
"
    )
}

pub(super) fn host_table_exists(table: &str) -> bool {
    bridge::nft(
        "look for the host table",
        &format!("list table ip {table}\n"),
    )
    .is_ok()
}

/// `(address, chain)` pairs of the hub's `members` map, from `nft list ruleset` output.
pub(super) fn members_of(ruleset: &str) -> Vec<(Ipv4Addr, String)> {
    elements(ruleset, "map members")
        .iter()
        .filter_map(|e| {
            let (addr, verdict) = e.split_once(':')?;
            let chain = verdict.trim().strip_prefix("jump")?.trim();
            Some((addr.trim().parse().ok()?, chain.to_owned()))
        })
        .collect()
}

/// Ports of a `ports` map listing that point at one of `addresses`.
pub(super) fn forwarded_to(listing: &str, addresses: &[Ipv4Addr]) -> Vec<u16> {
    elements(listing, "map ports")
        .iter()
        .filter_map(|e| {
            let (port, addr) = e.split_once(':')?;
            let addr: Ipv4Addr = addr.trim().parse().ok()?;
            addresses.contains(&addr).then_some(())?;
            port.trim().parse().ok()
        })
        .collect()
}

/// The elements of the set or map `header` (`map members`) in an `nft list` listing:
/// `elements = { a : b, c : d }`, possibly over several lines.
pub(super) fn elements(listing: &str, header: &str) -> Vec<String> {
    let Some(start) = listing.find(header) else {
        return Vec::new();
    };
    let rest = &listing[start..];
    let end = rest
        .find("\n\t}")
        .or_else(|| rest.find("\n    }"))
        .unwrap_or(rest.len());
    let block = &rest[..end];
    let Some(open) = block.find("elements = {") else {
        return Vec::new();
    };
    let body = &block[open + "elements = {".len()..];
    let body = &body[..body.find('}').unwrap_or(body.len())];
    body.split(',')
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|e| !e.is_empty())
        .collect()
}

pub(super) fn drop_host_table(table: &str) -> ptest_sandbox::Result<()> {
    bridge::nft(
        "remove the host table",
        &format!("delete table ip {table}\n"),
    )
    .map(drop)
}
