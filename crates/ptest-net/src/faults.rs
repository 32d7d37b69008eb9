//! What a proxy does to the traffic passing through it: [`Faults`], and the [`Bandwidth`]
//! type its rate limit is written in.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The faults a proxy applies. Each one is off by default; any combination may be on.
///
/// New connections see a change at once; open ones at their next chunk of data (latency,
/// bandwidth, drop-after, timeout) or at once (reset, down).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every chunk, in each direction (so a round trip takes twice as long).
    #[serde(with = "text_duration")]
    pub latency: Option<Duration>,
    /// Each chunk's delay varies by up to this much either way (never below zero); order is
    /// kept.
    #[serde(with = "text_duration")]
    pub jitter: Option<Duration>,
    /// Each direction of each connection passes at most this rate.
    pub bandwidth: Option<Bandwidth>,
    /// A connection is closed (both sides) once this many bytes passed through it, both
    /// directions counted.
    pub drop_after: Option<u64>,
    /// Connections are reset (RST): new ones right after they are accepted, open ones at
    /// once.
    pub reset: bool,
    /// Connections are accepted but nothing passes in either direction until it is cleared.
    pub timeout: bool,
    /// The proxy stops listening, so connecting is refused; open connections are closed.
    pub down: bool,
}

impl Faults {
    /// Whether no fault is on: the proxy passes traffic through untouched.
    pub fn is_clear(&self) -> bool {
        *self == Faults::default()
    }

    /// `self` with every fault that `more` turns on set to `more`'s value.
    pub fn merged(self, more: Faults) -> Faults {
        Faults {
            latency: more.latency.or(self.latency),
            jitter: more.jitter.or(self.jitter),
            bandwidth: more.bandwidth.or(self.bandwidth),
            drop_after: more.drop_after.or(self.drop_after),
            reset: self.reset || more.reset,
            timeout: self.timeout || more.timeout,
            down: self.down || more.down,
        }
    }

    /// How long the next chunk is held back: the latency, moved by a random share of the
    /// jitter.
    pub(crate) fn delay(&self) -> Duration {
        let base = self.latency.unwrap_or_default();
        let Some(jitter) = self.jitter.filter(|j| !j.is_zero()) else {
            return base;
        };
        let span = jitter.as_nanos().min(u128::from(u64::MAX / 2)) as u64;
        // A failing random source only loses the jitter, never the traffic.
        let r = getrandom::u64().unwrap_or(0) % (2 * span + 1);
        let nanos = base.as_nanos() as i128 + i128::from(r) - i128::from(span);
        Duration::from_nanos(nanos.clamp(0, i128::from(u64::MAX)) as u64)
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let human = |d: Duration| humantime::format_duration(d).to_string();
        match (self.latency, self.jitter) {
            (Some(l), Some(j)) => parts.push(format!("latency {}±{}", human(l), human(j))),
            (Some(l), None) => parts.push(format!("latency {}", human(l))),
            (None, Some(j)) => parts.push(format!("jitter {}", human(j))),
            (None, None) => {}
        }
        if let Some(b) = self.bandwidth {
            parts.push(format!("bandwidth {b}"));
        }
        if let Some(n) = self.drop_after {
            parts.push(format!("drop after {n}B"));
        }
        for (on, name) in [
            (self.reset, "reset"),
            (self.timeout, "timeout"),
            (self.down, "down"),
        ] {
            if on {
                parts.push(name.to_owned());
            }
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// A rate limit in bytes per second, written as bits (`64kbit`, `10mbit`, `1gbit`, `500bit`;
/// powers of 1000, as `tc` writes them) or bytes (`8K`, `1M`, `512B`; powers of 1024), with an
/// optional `/s`. JSON holds the bytes per second as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Bandwidth(u64);

impl Bandwidth {
    /// A rate of `bytes_per_second` (above zero).
    pub fn new(bytes_per_second: u64) -> Result<Bandwidth, String> {
        if bytes_per_second == 0 {
            return Err("a bandwidth must be at least 1 byte per second".into());
        }
        Ok(Bandwidth(bytes_per_second))
    }

    /// Bytes per second.
    pub fn bytes_per_second(self) -> u64 {
        self.0
    }

    /// The most bytes written at once: a twentieth of a second's worth, so that slow rates
    /// pass smoothly instead of in bursts.
    pub(crate) fn slice(self) -> usize {
        (self.0 / 20).max(1) as usize
    }

    /// How long `bytes` take at this rate.
    pub(crate) fn time_for(self, bytes: usize) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.0 as f64)
    }
}

impl FromStr for Bandwidth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid bandwidth {s:?}: write bits like 64kbit, 10mbit, 1gbit or bytes per \
                 second like 8K, 1M"
            )
        };
        let text = s.trim().strip_suffix("/s").unwrap_or(s.trim());
        let split = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let bytes = match unit {
            "bit" | "bps" => number / 8.0,
            "kbit" | "kbps" => number * 1e3 / 8.0,
            "mbit" | "mbps" => number * 1e6 / 8.0,
            "gbit" | "gbps" => number * 1e9 / 8.0,
            "" | "B" => number,
            "K" | "KB" | "KiB" => number * 1024.0,
            "M" | "MB" | "MiB" => number * 1024.0 * 1024.0,
            "G" | "GB" | "GiB" => number * 1024.0 * 1024.0 * 1024.0,
            _ => return Err(bad()),
        };
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(bad());
        }
        Bandwidth::new(bytes.round() as u64).map_err(|why| format!("{}: {why}", bad()))
    }
}

impl TryFrom<u64> for Bandwidth {
    type Error = String;
    fn try_from(n: u64) -> Result<Self, String> {
        Bandwidth::new(n)
    }
}

impl From<Bandwidth> for u64 {
    fn from(b: Bandwidth) -> u64 {
        b.0
    }
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = self.0 * 8;
        for (unit, size) in [
            ("gbit", 1_000_000_000),
            ("mbit", 1_000_000),
            ("kbit", 1_000),
        ] {
            if bits >= size && bits.is_multiple_of(size) {
                return write!(f, "{}{unit}", bits / size);
            }
        }
        write!(f, "{}B/s", self.0)
    }
}

/// `Option<Duration>` as text like `"100ms"` (or `null`), the way ptest writes durations.
mod text_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_reads_bits_and_bytes() {
        let b = |s: &str| s.parse::<Bandwidth>().map(Bandwidth::bytes_per_second);
        assert_eq!(b("64kbit"), Ok(8000));
        assert_eq!(b("1mbit/s"), Ok(125_000));
        assert_eq!(b("8K"), Ok(8192));
        assert_eq!(b("1.5M"), Ok(1_572_864));
        for bad in ["", "fast", "0kbit", "10 parsecs", "-1K"] {
            assert!(bad.parse::<Bandwidth>().is_err(), "{bad}");
        }
        assert_eq!("64kbit".parse::<Bandwidth>().unwrap().to_string(), "64kbit");
        assert_eq!(Bandwidth::new(1000).unwrap().to_string(), "8kbit");
        assert_eq!(Bandwidth::new(3).unwrap().to_string(), "3B/s");
    }

    #[test]
    fn faults_round_trip_through_json_and_merge() {
        let f = Faults {
            latency: Some(Duration::from_millis(100)),
            bandwidth: Some(Bandwidth::new(8000).unwrap()),
            down: true,
            ..Faults::default()
        };
        let text = serde_json::to_string(&f).unwrap();
        assert!(text.contains(r#""latency":"100ms""#), "{text}");
        assert_eq!(serde_json::from_str::<Faults>(&text).unwrap(), f);
        assert!(serde_json::from_str::<Faults>(r#"{"lag": "1s"}"#).is_err());
        let more = Faults {
            latency: Some(Duration::from_millis(5)),
            reset: true,
            ..Faults::default()
        };
        let both = f.merged(more);
        assert_eq!(both.latency, Some(Duration::from_millis(5)));
        assert!(both.down && both.reset && both.bandwidth.is_some());
        assert_eq!(
            both.to_string(),
            "latency 5ms, bandwidth 64kbit, reset, down"
        );
        assert!(Faults::default().is_clear());
        assert_eq!(Faults::default().to_string(), "none");
    }

    #[test]
    fn jitter_stays_within_its_span() {
        let f = Faults {
            latency: Some(Duration::from_millis(10)),
            jitter: Some(Duration::from_millis(4)),
            ..Faults::default()
        };
        let delays: Vec<Duration> = (0..200).map(|_| f.delay()).collect();
        assert!(
            delays
                .iter()
                .all(|d| (6..=14).contains(&(d.as_millis() as u64)))
        );
        assert!(delays.iter().any(|d| *d != delays[0]), "jitter varies");
        let only_jitter = Faults {
            jitter: Some(Duration::from_millis(4)),
            ..Faults::default()
        };
        assert!((0..100).all(|_| only_jitter.delay() <= Duration::from_millis(4)));
    }
}
