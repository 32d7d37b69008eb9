//! Environment names and ids: parsed once from input, trusted afterwards.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid environment name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid environment name {name:?}: {reason} (names match [a-z0-9][a-z0-9_.-]{{0,62}})")]
pub struct InvalidName {
    /// The rejected input.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A validated environment name: `[a-z0-9][a-z0-9_.-]{0,62}`.
///
/// The rule keeps names safe as path components, Docker object names and DNS labels: no `/`,
/// no leading `.` (so never `..`), at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvName(String);

impl EnvName {
    /// Parses a name (as [`str::parse`] does) into ptest's error type.
    pub fn new(name: &str) -> crate::Result<Self> {
        Ok(name.parse()?)
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EnvName {
    type Err = InvalidName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| {
            Err(InvalidName {
                name: s.to_owned(),
                reason,
            })
        };
        let Some(first) = s.chars().next() else {
            return fail("it is empty");
        };
        if s.len() > 63 {
            return fail("it is longer than 63 characters");
        }
        if s.contains('/') {
            return fail("it contains '/' (a name is not a path)");
        }
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            return fail("it contains an uppercase letter");
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return fail("it must start with a lowercase letter or a digit");
        }
        if s.chars()
            .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c)))
        {
            return fail("it contains a character other than a-z, 0-9, '_', '.' and '-'");
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for EnvName {
    type Error = InvalidName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<EnvName> for String {
    fn from(n: EnvName) -> Self {
        n.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A short random environment id: 12 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnvId(String);

impl EnvId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).expect("the kernel's random source is available");
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Wraps an id read back from the store.
    pub(crate) fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `s` has the shape of an id (so lookups can try ids before names).
    pub fn looks_like(s: &str) -> bool {
        s.len() == 12
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }
}

impl fmt::Display for EnvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in ["a", "demo", "web-1", "x.y_z", "0abc", &"a".repeat(63)] {
            assert!(ok.parse::<EnvName>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_paths_dots_and_case() {
        for bad in [
            "",
            "..",
            ".",
            "/etc",
            "a/b",
            "Demo",
            "-x",
            "_x",
            "a b",
            &"a".repeat(64),
        ] {
            let err = bad.parse::<EnvName>().unwrap_err();
            assert_eq!(err.name, bad);
        }
        assert!(
            "/etc"
                .parse::<EnvName>()
                .unwrap_err()
                .reason
                .contains("not a path")
        );
    }

    #[test]
    fn ids_are_short_hex_and_distinct() {
        let a = EnvId::random();
        let b = EnvId::random();
        assert_ne!(a, b);
        assert!(EnvId::looks_like(a.as_str()));
    }
}
