//! `--allow HOST[:PORT]`: a destination an environment on a `bridge` network may reach.
//! Everything else it sends is dropped, so a rule is the one way to open a path.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a rule points: addresses given as such, or a name resolved when the environment is
/// created.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllowHost {
    /// An IPv4 network (`10.0.0.0/8`; a lone address is a `/32`), host bits cleared.
    Net {
        /// The network's first address.
        addr: Ipv4Addr,
        /// Its prefix length, 0 to 32.
        prefix: u8,
    },
    /// Another environment of the same home, `host` (the machine ptest runs on), or a host
    /// name looked up in DNS.
    Name(String),
}

/// One `--allow` rule: a host and, optionally, the one port (TCP and UDP) allowed on it;
/// without a port every protocol and port is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AllowRule {
    /// The destination.
    pub host: AllowHost,
    /// The port, if only one is allowed.
    pub port: Option<u16>,
}

impl FromStr for AllowRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "invalid --allow rule {s:?}: {why}; write HOST[:PORT] with HOST an IPv4 address \
                 or network, an environment's name, `host` or a host name (e.g. 10.0.0.0/8, \
                 api:8080, example.com:443)"
            )
        };
        if s.matches(':').count() > 1 {
            return Err(bad("IPv6 is not supported (bridge networks are IPv4)"));
        }
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => {
                let port =
                    p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                        bad(&format!("port {p:?} is not a number from 1 to 65535"))
                    })?;
                (h, Some(port))
            }
            None => (s, None),
        };
        if host.is_empty() {
            return Err(bad("no host given"));
        }
        let looks_numeric = host
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '/');
        let host = if looks_numeric {
            let (addr, prefix) = match host.split_once('/') {
                Some((a, p)) => (
                    a,
                    p.parse::<u8>()
                        .ok()
                        .filter(|p| *p <= 32)
                        .ok_or_else(|| bad(&format!("prefix /{p} is not from 0 to 32")))?,
                ),
                None => (host, 32),
            };
            let addr: Ipv4Addr = addr
                .parse()
                .map_err(|_| bad(&format!("{addr:?} is not an IPv4 address")))?;
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            AllowHost::Net {
                addr: Ipv4Addr::from(u32::from(addr) & mask),
                prefix,
            }
        } else {
            let ok = host.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && !label.starts_with('-')
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            if !ok {
                return Err(bad(&format!("{host:?} is not a host name")));
            }
            AllowHost::Name(host.to_ascii_lowercase())
        };
        Ok(Self { host, port })
    }
}

impl TryFrom<String> for AllowRule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<AllowRule> for String {
    fn from(r: AllowRule) -> Self {
        r.to_string()
    }
}

impl fmt::Display for AllowHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Net { addr, prefix: 32 } => write!(f, "{addr}"),
            Self::Net { addr, prefix } => write!(f, "{addr}/{prefix}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_print_back() {
        for (input, shown) in [
            ("10.1.2.3", "10.1.2.3"),
            ("10.1.2.3:80", "10.1.2.3:80"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("0.0.0.0/0:53", "0.0.0.0/0:53"),
            ("api:8080", "api:8080"),
            ("Example.COM:443", "example.com:443"),
            ("host", "host"),
        ] {
            let rule: AllowRule = input.parse().unwrap();
            assert_eq!(rule.to_string(), shown);
            assert_eq!(shown.parse::<AllowRule>().unwrap(), rule);
        }
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for (input, why) in [
            ("", "no host given"),
            (":80", "no host given"),
            ("api:0", "port \"0\""),
            ("api:http", "port \"http\""),
            ("api:70000", "port \"70000\""),
            ("10.0.0.0/33", "prefix /33"),
            ("10.0.0.256", "not an IPv4 address"),
            ("::1", "IPv6"),
            ("a b", "not a host name"),
            ("-x.org", "not a host name"),
            ("a..b", "not a host name"),
        ] {
            let err = input.parse::<AllowRule>().unwrap_err();
            assert!(err.contains(why), "{input:?}: {err}");
            assert!(err.contains("HOST[:PORT]"), "{err}");
        }
    }
}
