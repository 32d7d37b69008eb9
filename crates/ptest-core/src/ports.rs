//! Host ports handed to environments under names, without clashes between `ptest` processes.
//!
//! A lease is a row in the store whose primary key is the port, so the database itself keeps a
//! port from being held twice. A port is leased only after ptest has bound it (TCP and UDP on
//! all IPv4 addresses) while holding the store's write lock: no other ptest can lease it
//! meanwhile, and one busy with another program's listener is skipped.

use std::fmt;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A port's name within an environment: `[a-z][a-z0-9_-]{0,31}`; commands see it as
/// `PTEST_PORT_<NAME>` (uppercase, `-` as `_`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortName(String);

impl PortName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The variable commands see it as.
    pub fn env_var(&self) -> String {
        format!(
            "PTEST_PORT_{}",
            self.0.to_ascii_uppercase().replace('-', "_")
        )
    }
}

impl FromStr for PortName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = s.len() <= 32
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "invalid port name {s:?}: names match [a-z][a-z0-9_-]{{0,31}} (e.g. http, db)"
            ))
        }
    }
}

impl TryFrom<String> for PortName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<PortName> for String {
    fn from(n: PortName) -> Self {
        n.0
    }
}

impl fmt::Display for PortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// An inclusive range of ports, written `20000-29999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

impl PortRange {
    /// How many ports it holds.
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Whether it holds no port (never true for a parsed range).
    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }

    /// Whether `port` is in it.
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl Default for PortRange {
    fn default() -> Self {
        Self {
            start: 20000,
            end: 29999,
        }
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid port range {s:?}: {why} (write e.g. 20000-29999)");
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| bad("expected FIRST-LAST"))?;
        let parse = |t: &str| {
            t.trim()
                .parse::<u16>()
                .map_err(|_| bad("ports are numbers from 1 to 65535"))
        };
        let (start, end) = (parse(a)?, parse(b)?);
        if start == 0 {
            return Err(bad("port 0 is not a port"));
        }
        if end < start {
            return Err(bad("the last port is below the first"));
        }
        Ok(Self { start, end })
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<PortRange> for String {
    fn from(r: PortRange) -> Self {
        r.to_string()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// A port held by an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortLease {
    /// The environment's name.
    pub env: String,
    /// The environment's id.
    pub env_id: String,
    /// The port's name.
    pub name: PortName,
    /// The host port.
    pub port: u16,
    /// When it was leased.
    pub leased_at: jiff::Timestamp,
}

/// Whether ptest can bind `port` right now on every IPv4 address, for TCP and UDP. The
/// sockets close on return; the lease (taken under the same lock) keeps other ptest processes
/// off it.
pub(crate) fn can_bind(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_variables() {
        assert_eq!(
            "http-alt".parse::<PortName>().unwrap().env_var(),
            "PTEST_PORT_HTTP_ALT"
        );
        for bad in ["", "HTTP", "1db", "a b", &"a".repeat(33)] {
            assert!(bad.parse::<PortName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_parse_and_refuse_nonsense() {
        let r: PortRange = "20000-20009".parse().unwrap();
        assert_eq!(
            (r.len(), r.contains(20009), r.contains(20010)),
            (10, true, false)
        );
        for bad in ["20000", "0-10", "10-5", "1-70000", "a-b"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_listening_port_cannot_be_bound() {
        let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = busy.local_addr().unwrap().port();
        assert!(!can_bind(port));
        drop(busy);
    }
}
