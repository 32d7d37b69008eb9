//! PEP 440 version specifiers (`>=1.0,<2`, `~=1.4.2`, `==3.*`) and matching.
//!
//! Matching admits pre-releases the way `pip check` and marker evaluation do
//! (`packaging`'s `prereleases=True`): this module answers "does this installed version satisfy
//! the specifier", not "which version should a resolver pick".

use std::fmt;
use std::str::FromStr;

use crate::error::SpecifierError;
use crate::pep::version::Version;

/// A comparison operator of a version specifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operator {
    /// `==V`
    Equal,
    /// `==V.*`
    EqualPrefix,
    /// `!=V`
    NotEqual,
    /// `!=V.*`
    NotEqualPrefix,
    /// `~=V`
    Compatible,
    /// `<V`
    LessThan,
    /// `<=V`
    LessThanEqual,
    /// `>V`
    GreaterThan,
    /// `>=V`
    GreaterThanEqual,
    /// `===text`
    Arbitrary,
}

impl Operator {
    /// The operator as written, without the `.*` of the prefix forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equal | Operator::EqualPrefix => "==",
            Operator::NotEqual | Operator::NotEqualPrefix => "!=",
            Operator::Compatible => "~=",
            Operator::LessThan => "<",
            Operator::LessThanEqual => "<=",
            Operator::GreaterThan => ">",
            Operator::GreaterThanEqual => ">=",
            Operator::Arbitrary => "===",
        }
    }
}

/// One version specifier, such as `>=2.0` or `==1.4.*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionSpecifier {
    operator: Operator,
    /// The version as written after the operator (without `.*`), for display.
    written: String,
    /// The parsed version; `None` only for `===` with a non-PEP 440 operand.
    version: Option<Version>,
}

impl VersionSpecifier {
    /// Parses one specifier (`>= 1.0` and `>=1.0` both work).
    pub fn parse(text: &str) -> Result<VersionSpecifier, SpecifierError> {
        let err = |reason: &str| SpecifierError {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        let ops = ["===", "~=", "==", "!=", "<=", ">=", "<", ">"];
        let op = ops
            .iter()
            .find(|op| trimmed.starts_with(**op))
            .ok_or_else(|| err("a specifier starts with one of ~= == != <= >= < > ==="))?;
        let rest = trimmed[op.len()..].trim();
        if rest.is_empty() {
            return Err(err("a version must follow the operator"));
        }
        if *op == "===" {
            if rest.contains(char::is_whitespace) {
                return Err(err("`===` takes one word"));
            }
            return Ok(VersionSpecifier {
                operator: Operator::Arbitrary,
                written: rest.to_owned(),
                version: Version::parse(rest).ok(),
            });
        }
        let (operand, prefix) = match rest.strip_suffix(".*") {
            Some(stripped) => (stripped, true),
            None => (rest, false),
        };
        let version = Version::parse(operand).map_err(|e| err(&e.reason))?;
        let operator = match (*op, prefix) {
            ("==", false) => Operator::Equal,
            ("==", true) => Operator::EqualPrefix,
            ("!=", false) => Operator::NotEqual,
            ("!=", true) => Operator::NotEqualPrefix,
            (_, true) => return Err(err("`.*` is allowed only with == and !=")),
            ("~=", false) => Operator::Compatible,
            ("<", false) => Operator::LessThan,
            ("<=", false) => Operator::LessThanEqual,
            (">", false) => Operator::GreaterThan,
            (">=", false) => Operator::GreaterThanEqual,
            _ => unreachable!("operator list above is exhaustive"),
        };
        if prefix
            && (version.pre().is_some()
                || version.post().is_some()
                || version.dev().is_some()
                || !version.local().is_empty())
        {
            return Err(err("`.*` may follow only release numbers"));
        }
        if !version.local().is_empty() && !matches!(operator, Operator::Equal | Operator::NotEqual)
        {
            return Err(err("a local version label is allowed only with == and !="));
        }
        if operator == Operator::Compatible && version.release().len() < 2 {
            return Err(err(
                "`~=` needs at least two release numbers, such as ~=1.0",
            ));
        }
        Ok(VersionSpecifier {
            operator,
            written: operand.to_owned(),
            version: Some(version),
        })
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The version operand (`None` only for `===` with text that is no PEP 440 version).
    pub fn version(&self) -> Option<&Version> {
        self.version.as_ref()
    }

    /// Whether `candidate` satisfies this specifier (pre-releases admitted).
    pub fn contains(&self, candidate: &Version) -> bool {
        let Some(spec) = &self.version else {
            return candidate.to_string().eq_ignore_ascii_case(&self.written);
        };
        match self.operator {
            Operator::Equal => equal(candidate, spec),
            Operator::NotEqual => !equal(candidate, spec),
            Operator::EqualPrefix => prefix_match(candidate, spec),
            Operator::NotEqualPrefix => !prefix_match(candidate, spec),
            Operator::Compatible => {
                let prefix = prefix_with_epoch(
                    Version::from_release(&spec.release()[..spec.release().len() - 1]),
                    spec.epoch(),
                );
                candidate.public() >= *spec && prefix_match(candidate, &prefix)
            }
            Operator::LessThanEqual => candidate.public() <= *spec,
            Operator::GreaterThanEqual => candidate.public() >= *spec,
            Operator::LessThan => {
                candidate < spec
                    && !(!spec.is_prerelease()
                        && candidate.is_prerelease()
                        && candidate.base() == spec.base())
            }
            Operator::GreaterThan => {
                candidate > spec
                    && !(!spec.is_postrelease()
                        && candidate.is_postrelease()
                        && candidate.base() == spec.base())
                    && (candidate.local().is_empty() || candidate.base() != spec.base())
            }
            Operator::Arbitrary => candidate.to_string().eq_ignore_ascii_case(&self.written),
        }
    }
}

fn prefix_with_epoch(version: Version, epoch: u64) -> Version {
    if epoch == 0 {
        return version;
    }
    Version::parse(&format!("{epoch}!{version}")).expect("epoch plus a valid release is valid")
}

fn equal(candidate: &Version, spec: &Version) -> bool {
    if spec.local().is_empty() {
        candidate.public() == *spec
    } else {
        candidate == spec
    }
}

/// `==spec.*`: same epoch, and the candidate's release (padded with zeros) starts with the
/// spec's release numbers.
fn prefix_match(candidate: &Version, spec: &Version) -> bool {
    if candidate.epoch() != spec.epoch() {
        return false;
    }
    spec.release()
        .iter()
        .enumerate()
        .all(|(i, n)| candidate.release().get(i).copied().unwrap_or(0) == *n)
}

impl fmt::Display for VersionSpecifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.operator.as_str())?;
        f.write_str(&self.written)?;
        if matches!(
            self.operator,
            Operator::EqualPrefix | Operator::NotEqualPrefix
        ) {
            f.write_str(".*")?;
        }
        Ok(())
    }
}

impl FromStr for VersionSpecifier {
    type Err = SpecifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VersionSpecifier::parse(s)
    }
}

/// A comma-separated set of specifiers; a version satisfies the set when it satisfies each.
/// The empty set admits every version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionSpecifiers(Vec<VersionSpecifier>);

impl VersionSpecifiers {
    /// Parses `>=1.0, <2` (the empty string gives the empty set).
    pub fn parse(text: &str) -> Result<VersionSpecifiers, SpecifierError> {
        if text.trim().is_empty() {
            return Ok(VersionSpecifiers::default());
        }
        text.split(',')
            .map(VersionSpecifier::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(VersionSpecifiers)
    }

    /// The specifiers in the order written.
    pub fn iter(&self) -> impl Iterator<Item = &VersionSpecifier> {
        self.0.iter()
    }

    /// True when there is no specifier.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `candidate` satisfies every specifier (pre-releases admitted).
    pub fn contains(&self, candidate: &Version) -> bool {
        self.0.iter().all(|spec| spec.contains(candidate))
    }
}

impl From<Vec<VersionSpecifier>> for VersionSpecifiers {
    fn from(specs: Vec<VersionSpecifier>) -> Self {
        VersionSpecifiers(specs)
    }
}

/// Printed sorted and comma-joined, as `packaging`'s `SpecifierSet` prints (so `pip check`
/// lines and ours read the same).
impl fmt::Display for VersionSpecifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        parts.sort();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for VersionSpecifiers {
    type Err = SpecifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VersionSpecifiers::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(spec: &str, version: &str) -> bool {
        VersionSpecifiers::parse(spec)
            .expect("valid specifier")
            .contains(&Version::parse(version).expect("valid version"))
    }

    #[test]
    fn matches_like_packaging() {
        let cases = [
            (">=2.0", "2.0", true),
            (">=2.0", "1.9", false),
            (">=2.0,<3", "2.5", true),
            ("<3", "3.0a1", false),
            ("<3", "2.9a1", true),
            ("<3.0rc1", "3.0a1", true),
            (">1.0", "1.0.post1", false),
            (">1.0.post1", "1.0.post2", true),
            (">1.0", "1.0+local", false),
            (">1.0", "1.1", true),
            ("==1.0", "1.0.0", true),
            ("==1.0", "1.0+local", true),
            ("==1.0+local", "1.0", false),
            ("==1.*", "1.4.2", true),
            ("==1.4.*", "1.4", true),
            ("==1.4.*", "1.5", false),
            ("==1.4.*", "1.4rc1", true),
            ("!=1.4.*", "1.5", true),
            ("~=1.4.2", "1.4.5", true),
            ("~=1.4.2", "1.5.0", false),
            ("~=1.4", "1.9", true),
            ("~=1.4", "2.0", false),
            ("<=2.0", "2.0+local", true),
            ("===1.0", "1.0", true),
            ("===1.0", "1.0.0", false),
            ("", "0.1", true),
        ];
        for (spec, version, expected) in cases {
            assert_eq!(matches(spec, version), expected, "{version} in {spec:?}");
        }
    }

    #[test]
    fn rejects_malformed_specifiers() {
        for bad in [
            "1.0",
            ">=",
            "~=1",
            ">=1.0.*",
            "<1.0+local",
            "==1.0a1.*",
            ">= 1.0,",
        ] {
            assert!(
                VersionSpecifiers::parse(bad).is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn displays_sorted_like_specifier_set() {
        let specs = VersionSpecifiers::parse("<3, >=2.0").expect("valid");
        assert_eq!(specs.to_string(), "<3,>=2.0");
    }
}
