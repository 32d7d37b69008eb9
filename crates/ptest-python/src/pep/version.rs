//! PEP 440 versions: parsing (with the spellings `packaging` accepts), normalized display and
//! ordering.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use crate::error::VersionError;

/// The kind of a pre-release segment (`a`, `b`, `rc`), ordered as PEP 440 orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PreKind {
    /// `a`, also spelled `alpha`.
    Alpha,
    /// `b`, also spelled `beta`.
    Beta,
    /// `rc`, also spelled `c`, `pre` or `preview`.
    Rc,
}

impl PreKind {
    fn as_str(self) -> &'static str {
        match self {
            PreKind::Alpha => "a",
            PreKind::Beta => "b",
            PreKind::Rc => "rc",
        }
    }
}

/// One dot-separated part of a local version label (`+ubuntu.1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LocalSegment {
    /// A purely numeric part; sorts above every string part.
    Number(u64),
    /// An alphanumeric part, lower-cased.
    String(String),
}

impl Ord for LocalSegment {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (LocalSegment::Number(a), LocalSegment::Number(b)) => a.cmp(b),
            (LocalSegment::String(a), LocalSegment::String(b)) => a.cmp(b),
            (LocalSegment::Number(_), LocalSegment::String(_)) => Ordering::Greater,
            (LocalSegment::String(_), LocalSegment::Number(_)) => Ordering::Less,
        }
    }
}

impl PartialOrd for LocalSegment {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for LocalSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalSegment::Number(n) => write!(f, "{n}"),
            LocalSegment::String(s) => f.write_str(s),
        }
    }
}

/// A PEP 440 version such as `1!2.0.post1.dev3+local.7`.
///
/// Equality and ordering follow PEP 440 (`1.0 == 1.0.0`, `1.0.dev0 < 1.0a1 < 1.0 < 1.0.post1`);
/// `Display` prints the normalized form.
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u64,
    release: Vec<u64>,
    pre: Option<(PreKind, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<LocalSegment>,
}

impl Version {
    /// Parses a version, accepting every spelling PEP 440 normalizes (`v1.0`, `1.0-alpha.1`,
    /// `1.0-1`, `1.0.RC2`, surrounding whitespace).
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        Parser::new(text).version()
    }

    /// A version made of release numbers only, such as `3.11.7`.
    pub fn from_release(release: impl Into<Vec<u64>>) -> Version {
        let release = release.into();
        Version {
            epoch: 0,
            release: if release.is_empty() { vec![0] } else { release },
            pre: None,
            post: None,
            dev: None,
            local: Vec::new(),
        }
    }

    /// The epoch (`N!`), 0 when absent.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The release numbers (`1.2.3` gives `[1, 2, 3]`).
    pub fn release(&self) -> &[u64] {
        &self.release
    }

    /// The pre-release segment, if any.
    pub fn pre(&self) -> Option<(PreKind, u64)> {
        self.pre
    }

    /// The post-release number, if any.
    pub fn post(&self) -> Option<u64> {
        self.post
    }

    /// The development-release number, if any.
    pub fn dev(&self) -> Option<u64> {
        self.dev
    }

    /// The local version label segments (empty when there is none).
    pub fn local(&self) -> &[LocalSegment] {
        &self.local
    }

    /// True for pre-releases and development releases.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    /// True when the version has a post-release segment.
    pub fn is_postrelease(&self) -> bool {
        self.post.is_some()
    }

    /// The version without its local label.
    pub fn public(&self) -> Version {
        Version {
            local: Vec::new(),
            ..self.clone()
        }
    }

    /// Epoch and release only (`1!2.0rc1+x` gives `1!2.0`).
    pub fn base(&self) -> Version {
        Version {
            epoch: self.epoch,
            release: self.release.clone(),
            pre: None,
            post: None,
            dev: None,
            local: Vec::new(),
        }
    }

    fn release_cmp(a: &[u64], b: &[u64]) -> Ordering {
        let len = a.len().max(b.len());
        for i in 0..len {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            match x.cmp(&y) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        Ordering::Equal
    }

    /// Key of the pre-release position: a dev-only release sorts before every pre-release,
    /// a final release after all of them.
    fn pre_key(&self) -> (i8, Option<(PreKind, u64)>) {
        match (self.pre, self.post, self.dev) {
            (None, None, Some(_)) => (-1, None),
            (None, _, _) => (1, None),
            (Some(pre), _, _) => (0, Some(pre)),
        }
    }

    fn post_key(&self) -> (i8, u64) {
        self.post.map_or((-1, 0), |n| (0, n))
    }

    fn dev_key(&self) -> (i8, u64) {
        self.dev.map_or((1, 0), |n| (0, n))
    }

    fn trimmed_release(&self) -> &[u64] {
        let mut end = self.release.len();
        while end > 1 && self.release[end - 1] == 0 {
            end -= 1;
        }
        &self.release[..end]
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| Version::release_cmp(&self.release, &other.release))
            .then_with(|| self.pre_key().cmp(&other.pre_key()))
            .then_with(|| self.post_key().cmp(&other.post_key()))
            .then_with(|| self.dev_key().cmp(&other.dev_key()))
            .then_with(|| self.local.cmp(&other.local))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.epoch.hash(state);
        self.trimmed_release().hash(state);
        self.pre.hash(state);
        self.post.hash(state);
        self.dev.hash(state);
        self.local.hash(state);
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}!", self.epoch)?;
        }
        let release: Vec<String> = self.release.iter().map(u64::to_string).collect();
        f.write_str(&release.join("."))?;
        if let Some((kind, n)) = self.pre {
            write!(f, "{}{n}", kind.as_str())?;
        }
        if let Some(n) = self.post {
            write!(f, ".post{n}")?;
        }
        if let Some(n) = self.dev {
            write!(f, ".dev{n}")?;
        }
        if !self.local.is_empty() {
            let local: Vec<String> = self.local.iter().map(ToString::to_string).collect();
            write!(f, "+{}", local.join("."))?;
        }
        Ok(())
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct Parser<'a> {
    original: &'a str,
    text: Vec<u8>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(original: &'a str) -> Parser<'a> {
        Parser {
            original,
            text: original.trim().to_ascii_lowercase().into_bytes(),
            pos: 0,
        }
    }

    fn error(&self, reason: &str) -> VersionError {
        VersionError {
            text: self.original.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.text[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn eat_separator(&mut self) {
        if matches!(self.peek(), Some(b'-' | b'_' | b'.')) {
            self.pos += 1;
        }
    }

    fn number(&mut self) -> Result<Option<u64>, VersionError> {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if start == self.pos {
            return Ok(None);
        }
        let digits = std::str::from_utf8(&self.text[start..self.pos]).expect("ASCII digits");
        digits
            .parse::<u64>()
            .map(Some)
            .map_err(|_| self.error("a number is too large"))
    }

    fn version(mut self) -> Result<Version, VersionError> {
        if self.text.is_empty() {
            return Err(self.error("the version is empty"));
        }
        self.eat(b'v');
        let first = self
            .number()?
            .ok_or_else(|| self.error("a version starts with a number"))?;
        let mut epoch = 0;
        let mut release = vec![first];
        if self.eat(b'!') {
            epoch = first;
            release = vec![
                self.number()?
                    .ok_or_else(|| self.error("a number must follow the epoch"))?,
            ];
        }
        loop {
            let save = self.pos;
            if self.eat(b'.')
                && let Some(n) = self.number()?
            {
                release.push(n);
                continue;
            }
            self.pos = save;
            break;
        }
        let pre = self.pre()?;
        let post = self.post()?;
        let dev = self.dev()?;
        let local = self.local()?;
        if self.pos != self.text.len() {
            return Err(self.error(&format!(
                "unexpected `{}`",
                String::from_utf8_lossy(&self.text[self.pos..])
            )));
        }
        Ok(Version {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }

    fn pre(&mut self) -> Result<Option<(PreKind, u64)>, VersionError> {
        let save = self.pos;
        self.eat_separator();
        let kind = [
            ("alpha", PreKind::Alpha),
            ("a", PreKind::Alpha),
            ("beta", PreKind::Beta),
            ("b", PreKind::Beta),
            ("preview", PreKind::Rc),
            ("pre", PreKind::Rc),
            ("rc", PreKind::Rc),
            ("c", PreKind::Rc),
        ]
        .into_iter()
        .find(|(word, _)| self.eat_word(word))
        .map(|(_, kind)| kind);
        let Some(kind) = kind else {
            self.pos = save;
            return Ok(None);
        };
        Ok(Some((kind, self.optional_number()?)))
    }

    /// `[-_.]?N?` after a pre/post/dev label; the separator is only taken if a number follows.
    fn optional_number(&mut self) -> Result<u64, VersionError> {
        let save = self.pos;
        self.eat_separator();
        match self.number()? {
            Some(n) => Ok(n),
            None => {
                self.pos = save;
                Ok(0)
            }
        }
    }

    fn post(&mut self) -> Result<Option<u64>, VersionError> {
        let save = self.pos;
        if self.eat(b'-')
            && let Some(n) = self.number()?
        {
            return Ok(Some(n));
        }
        self.pos = save;
        self.eat_separator();
        if self.eat_word("post") || self.eat_word("rev") || self.eat_word("r") {
            return Ok(Some(self.optional_number()?));
        }
        self.pos = save;
        Ok(None)
    }

    fn dev(&mut self) -> Result<Option<u64>, VersionError> {
        let save = self.pos;
        self.eat_separator();
        if self.eat_word("dev") {
            return Ok(Some(self.optional_number()?));
        }
        self.pos = save;
        Ok(None)
    }

    fn local(&mut self) -> Result<Vec<LocalSegment>, VersionError> {
        if !self.eat(b'+') {
            return Ok(Vec::new());
        }
        let rest = &self.text[self.pos..];
        let mut segments = Vec::new();
        for part in rest.split(|b| matches!(b, b'-' | b'_' | b'.')) {
            if part.is_empty() || !part.iter().all(u8::is_ascii_alphanumeric) {
                return Err(
                    self.error("a local version label is letters and digits separated by `.`")
                );
            }
            let part = std::str::from_utf8(part).expect("ASCII alphanumerics");
            segments.push(if part.bytes().all(|b| b.is_ascii_digit()) {
                LocalSegment::Number(
                    part.parse()
                        .map_err(|_| self.error("a number is too large"))?,
                )
            } else {
                LocalSegment::String(part.to_owned())
            });
        }
        self.pos = self.text.len();
        Ok(segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("valid version")
    }

    #[test]
    fn normalizes_alternative_spellings() {
        for (input, normalized) in [
            ("1.0", "1.0"),
            ("v1.0", "1.0"),
            ("1.0-alpha.1", "1.0a1"),
            ("1.0.RC2", "1.0rc2"),
            ("1.0c1", "1.0rc1"),
            ("1.0-preview", "1.0rc0"),
            ("1.0-1", "1.0.post1"),
            ("1.0.rev3", "1.0.post3"),
            ("1.0-post", "1.0.post0"),
            ("1.0dev", "1.0.dev0"),
            (
                "1!2.0b3.post4.dev5+Ubuntu-1.2",
                "1!2.0b3.post4.dev5+ubuntu.1.2",
            ),
            ("  2.1 ", "2.1"),
        ] {
            assert_eq!(v(input).to_string(), normalized, "{input}");
        }
    }

    #[test]
    fn rejects_invalid_versions() {
        for bad in [
            "",
            "a",
            "1.0+",
            "1.0+a..b",
            "1.0 beta",
            "1..0",
            "1.0-",
            "french toast",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn orders_as_pep_440() {
        let ordered = [
            "1.0.dev0",
            "1.0a1.dev1",
            "1.0a1",
            "1.0a2",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+abc",
            "1.0+abc.5",
            "1.0+5",
            "1.0.post1.dev0",
            "1.0.post1",
            "1.1",
            "1!0.1",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.0"), v("1.0.0"));
    }
}
