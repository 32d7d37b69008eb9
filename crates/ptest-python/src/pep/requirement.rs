//! PEP 508 requirements (`name[extra1,extra2] >=1.0,<2 ; python_version < "3.12"`) and
//! PEP 503 name normalization.

use std::fmt;
use std::str::FromStr;

use crate::error::RequirementError;
use crate::pep::marker::{MarkerTree, parse_marker_at};
use crate::pep::specifier::VersionSpecifiers;

/// A distribution name normalized per PEP 503 (lower case, runs of `-_.` become one `-`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct PackageName(String);

impl PackageName {
    /// Normalizes `name` (`Foo_Bar.baz` becomes `foo-bar-baz`). The name is not validated;
    /// use [`Requirement::parse`] for that.
    pub fn new(name: &str) -> PackageName {
        PackageName(normalize(name))
    }

    /// The normalized name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PackageName {
    fn from(name: &str) -> Self {
        PackageName::new(name)
    }
}

/// Normalizes a package or extra name per PEP 503 / PEP 685.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separator = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            in_separator = true;
        } else {
            if in_separator && !out.is_empty() {
                out.push('-');
            }
            in_separator = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// What a requirement asks for besides the name: version specifiers or a direct URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionOrUrl {
    /// Version specifiers (possibly empty: any version).
    Specifiers(VersionSpecifiers),
    /// `name @ url`.
    Url(String),
}

/// A parsed PEP 508 requirement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// The name as written.
    pub written_name: String,
    /// The normalized name.
    pub name: PackageName,
    /// Requested extras, normalized, in the order written.
    pub extras: Vec<String>,
    /// Version specifiers or URL.
    pub version_or_url: VersionOrUrl,
    /// The environment marker, if any.
    pub marker: Option<MarkerTree>,
}

impl Requirement {
    /// Parses a PEP 508 requirement; the error says at which character it went wrong.
    pub fn parse(text: &str) -> Result<Requirement, RequirementError> {
        let mut cursor = Cursor::new(text);
        let req = cursor.requirement()?;
        Ok(req)
    }

    /// The version specifiers (empty for a URL requirement).
    pub fn specifiers(&self) -> VersionSpecifiers {
        match &self.version_or_url {
            VersionOrUrl::Specifiers(specs) => specs.clone(),
            VersionOrUrl::Url(_) => VersionSpecifiers::default(),
        }
    }
}

/// Printed the way `packaging` prints a requirement: `name[extras]specs; marker`.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written_name)?;
        if !self.extras.is_empty() {
            let mut extras = self.extras.clone();
            extras.sort();
            write!(f, "[{}]", extras.join(","))?;
        }
        match &self.version_or_url {
            VersionOrUrl::Specifiers(specs) => write!(f, "{specs}")?,
            VersionOrUrl::Url(url) => {
                write!(f, "@ {url}")?;
                if self.marker.is_some() {
                    f.write_str(" ")?;
                }
            }
        }
        if let Some(marker) = &self.marker {
            write!(f, "; {marker}")?;
        }
        Ok(())
    }
}

impl FromStr for Requirement {
    type Err = RequirementError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Requirement::parse(s)
    }
}

/// A character cursor over requirement or marker text, positions in characters.
pub(crate) struct Cursor<'a> {
    pub(crate) text: &'a str,
    chars: Vec<char>,
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a str) -> Cursor<'a> {
        Cursor {
            text,
            chars: text.chars().collect(),
            pos: 0,
        }
    }

    pub(crate) fn error(&self, position: usize, reason: impl Into<String>) -> RequirementError {
        RequirementError {
            text: self.text.to_owned(),
            position,
            reason: reason.into(),
        }
    }

    pub(crate) fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    pub(crate) fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c == ' ' || c == '\t') {
            self.pos += 1;
        }
    }

    pub(crate) fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.chars.get(self.pos + i) == Some(&c))
    }

    pub(crate) fn eat_str(&mut self, s: &str) -> bool {
        if self.starts_with(s) {
            self.pos += s.chars().count();
            true
        } else {
            false
        }
    }

    /// Takes characters while `pred` holds.
    pub(crate) fn take_while(&mut self, pred: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    /// A PEP 508 identifier: starts and ends with a letter or digit, `-_.` inside.
    pub(crate) fn identifier(&mut self, what: &str) -> Result<String, RequirementError> {
        let start = self.pos;
        if !self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            return Err(self.error(start, format!("expected {what} (letters, digits, `-_.`)")));
        }
        let word = self.take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if word.ends_with(['-', '_', '.']) {
            return Err(self.error(
                self.pos - 1,
                format!("{what} must end with a letter or digit"),
            ));
        }
        Ok(word)
    }

    fn requirement(&mut self) -> Result<Requirement, RequirementError> {
        self.skip_ws();
        let written_name = self.identifier("a package name")?;
        self.skip_ws();
        let mut extras = Vec::new();
        if self.eat('[') {
            self.skip_ws();
            if !self.eat(']') {
                loop {
                    self.skip_ws();
                    extras.push(normalize(&self.identifier("an extra name")?));
                    self.skip_ws();
                    if self.eat(']') {
                        break;
                    }
                    if !self.eat(',') {
                        return Err(self.error(self.pos, "expected `,` or `]` in the extras"));
                    }
                }
            }
            self.skip_ws();
        }
        let version_or_url = if self.eat('@') {
            self.skip_ws();
            let start = self.pos;
            let url = self.take_while(|c| !c.is_whitespace());
            if url.is_empty() {
                return Err(self.error(start, "expected a URL after `@`"));
            }
            if !url.contains(':') {
                return Err(self.error(start, "expected a URL (scheme:...) after `@`"));
            }
            let before_ws = self.pos;
            self.skip_ws();
            if !self.at_end() && self.peek() == Some(';') && before_ws == self.pos {
                return Err(self.error(self.pos, "a space must separate the URL from `;`"));
            }
            VersionOrUrl::Url(url)
        } else if self.eat('(') {
            let specs = self.specifiers(Some(')'))?;
            self.skip_ws();
            if !self.eat(')') {
                return Err(self.error(self.pos, "expected `)` closing the version specifiers"));
            }
            VersionOrUrl::Specifiers(specs)
        } else {
            VersionOrUrl::Specifiers(self.specifiers(None)?)
        };
        self.skip_ws();
        let marker = if self.eat(';') {
            let marker = parse_marker_at(self)?;
            Some(marker)
        } else {
            None
        };
        self.skip_ws();
        if !self.at_end() {
            let reason = if self.peek() == Some('#') {
                "comments are not part of a requirement"
            } else {
                "expected a version specifier, `;` and a marker, or the end"
            };
            return Err(self.error(self.pos, reason));
        }
        Ok(Requirement {
            name: PackageName::new(&written_name),
            written_name,
            extras,
            version_or_url,
            marker,
        })
    }

    /// Comma-separated `op version` items up to `;`, `closing` or the end.
    fn specifiers(&mut self, closing: Option<char>) -> Result<VersionSpecifiers, RequirementError> {
        let mut specs = Vec::new();
        self.skip_ws();
        let ends = |c: char| c == ';' || Some(c) == closing;
        if self.at_end() || self.peek().is_some_and(ends) {
            return Ok(VersionSpecifiers::default());
        }
        loop {
            self.skip_ws();
            let start = self.pos;
            let op = self.take_while(|c| matches!(c, '<' | '>' | '=' | '!' | '~'));
            if op.is_empty() {
                return Err(self.error(start, "expected a version specifier such as >=1.0"));
            }
            self.skip_ws();
            let version_start = self.pos;
            let version = self.take_while(|c| !(c.is_whitespace() || matches!(c, ',' | ';' | ')')));
            if version.is_empty() {
                return Err(self.error(version_start, format!("expected a version after `{op}`")));
            }
            let spec = crate::pep::specifier::VersionSpecifier::parse(&format!("{op}{version}"))
                .map_err(|e| self.error(start, e.reason))?;
            specs.push(spec);
            self.skip_ws();
            if !self.eat(',') {
                break;
            }
        }
        Ok(specs.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_names() {
        assert_eq!(PackageName::new("Foo_Bar..baz").as_str(), "foo-bar-baz");
        assert_eq!(
            PackageName::new("zope.interface").as_str(),
            "zope-interface"
        );
    }

    #[test]
    fn parses_full_requirements() {
        let req =
            Requirement::parse("Foo_Bar [Fast, secure] (>=1.0, <2) ; python_version < \"3.12\"")
                .expect("valid requirement");
        assert_eq!(req.name.as_str(), "foo-bar");
        assert_eq!(req.extras, vec!["fast", "secure"]);
        assert_eq!(req.specifiers().to_string(), "<2,>=1.0");
        assert_eq!(
            req.to_string(),
            "Foo_Bar[fast,secure]<2,>=1.0; python_version < \"3.12\""
        );

        let url =
            Requirement::parse("pkg @ file:///tmp/pkg-1.0-py3-none-any.whl ; os_name == 'posix'")
                .expect("valid url requirement");
        assert_eq!(
            url.version_or_url,
            VersionOrUrl::Url("file:///tmp/pkg-1.0-py3-none-any.whl".into())
        );
        assert!(url.marker.is_some());

        let bare = Requirement::parse("requests").expect("valid");
        assert!(bare.specifiers().is_empty());
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases = [
            ("foo >=", 6, "expected a version"),
            ("foo[bar", 7, "expected `,` or `]`"),
            ("-foo", 0, "expected a package name"),
            ("foo >=1.0 bar", 10, "expected a version specifier, `;`"),
            ("foo; python_version >", 21, "expected a marker value"),
            ("foo (>=1.0", 10, "expected `)`"),
        ];
        for (text, position, reason) in cases {
            let err = Requirement::parse(text).expect_err(text);
            assert_eq!(err.position, position, "{text}: {err}");
            assert!(err.reason.contains(reason), "{text}: {err}");
        }
    }
}
