//! `--allow` rules resolved to networks: addresses as given, names of environments on the
//! bridge to their leased address, `host` to the gateway, other names through the host's
//! resolver.

use super::*;

/// An `--allow` rule and what it resolved to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ResolvedRule {
    /// The rule as given.
    pub rule: String,
    /// The networks it allows (`a.b.c.d/n`).
    pub networks: Vec<String>,
    /// The port, if only one.
    pub port: Option<u16>,
}

/// Turns `rules` into networks: addresses as given; a name is an environment of this home on
/// the bridge (`leased`), `host` (the gateway), or a host name looked up now.
pub(super) fn resolve_rules(
    rules: &[AllowRule],
    leased: &[(String, Ipv4Addr)],
    gateway: Ipv4Addr,
) -> Result<Vec<ResolvedRule>> {
    rules
        .iter()
        .map(|rule| {
            let networks = match &rule.host {
                AllowHost::Net { addr, prefix } => vec![format!("{addr}/{prefix}")],
                AllowHost::Name(name) => {
                    let addrs: Vec<Ipv4Addr> =
                        if let Some((_, a)) = leased.iter().find(|(n, _)| n == name) {
                            vec![*a]
                        } else if name == "host" {
                            vec![gateway]
                        } else {
                            lookup(name).map_err(|why| {
                                Error::Usage(format!(
                                    "--allow {rule}: {name:?} is no environment on this home's \
                                 bridge, not `host`, and not a host name that resolves ({why})"
                                ))
                            })?
                        };
                    addrs.iter().map(|a| format!("{a}/32")).collect()
                }
            };
            Ok(ResolvedRule {
                rule: rule.to_string(),
                networks,
                port: rule.port,
            })
        })
        .collect()
}

/// The IPv4 addresses `name` resolves to.
pub(super) fn lookup(name: &str) -> std::result::Result<Vec<Ipv4Addr>, String> {
    let mut addrs: Vec<Ipv4Addr> = (name, 0)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .filter_map(|a| match a.ip() {
            std::net::IpAddr::V4(v4) => Some(v4),
            std::net::IpAddr::V6(_) => None,
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err("no IPv4 address".into());
    }
    Ok(addrs)
}
