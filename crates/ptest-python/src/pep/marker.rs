//! PEP 508 environment markers (`python_version >= "3.8" and sys_platform != "win32"`):
//! parsing, the environment they are evaluated against, and evaluation with `packaging`'s
//! rules (version comparison when both sides are versions, string comparison otherwise,
//! `extra` names normalized).

use std::fmt;
use std::str::FromStr;

use crate::error::RequirementError;
use crate::pep::requirement::{Cursor, normalize};
use crate::pep::specifier::VersionSpecifier;
use crate::pep::version::Version;

/// The values markers are evaluated against, as one interpreter reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MarkerEnvironment {
    /// `implementation_name`, e.g. `cpython`.
    pub implementation_name: String,
    /// `implementation_version`, e.g. `3.11.7`.
    pub implementation_version: String,
    /// `os_name`, e.g. `posix`.
    pub os_name: String,
    /// `platform_machine`, e.g. `x86_64`.
    pub platform_machine: String,
    /// `platform_python_implementation`, e.g. `CPython`.
    pub platform_python_implementation: String,
    /// `platform_release`, e.g. `6.1.0-18-amd64`.
    pub platform_release: String,
    /// `platform_system`, e.g. `Linux`.
    pub platform_system: String,
    /// `platform_version`, e.g. `#1 SMP PREEMPT_DYNAMIC Debian ...`.
    pub platform_version: String,
    /// `python_full_version`, e.g. `3.11.7`.
    pub python_full_version: String,
    /// `python_version`, e.g. `3.11`.
    pub python_version: String,
    /// `sys_platform`, e.g. `linux`.
    pub sys_platform: String,
}

/// A variable a marker can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MarkerVariable {
    /// `implementation_name`
    ImplementationName,
    /// `implementation_version`
    ImplementationVersion,
    /// `os_name` (also `os.name`)
    OsName,
    /// `platform_machine` (also `platform.machine`)
    PlatformMachine,
    /// `platform_python_implementation` (also `platform.python_implementation`,
    /// `python_implementation`)
    PlatformPythonImplementation,
    /// `platform_release`
    PlatformRelease,
    /// `platform_system`
    PlatformSystem,
    /// `platform_version` (also `platform.version`)
    PlatformVersion,
    /// `python_full_version`
    PythonFullVersion,
    /// `python_version`
    PythonVersion,
    /// `sys_platform` (also `sys.platform`)
    SysPlatform,
    /// `extra`
    Extra,
}

impl MarkerVariable {
    const ALL: [(&'static str, MarkerVariable); 17] = [
        ("implementation_name", MarkerVariable::ImplementationName),
        (
            "implementation_version",
            MarkerVariable::ImplementationVersion,
        ),
        ("os_name", MarkerVariable::OsName),
        ("os.name", MarkerVariable::OsName),
        ("platform_machine", MarkerVariable::PlatformMachine),
        ("platform.machine", MarkerVariable::PlatformMachine),
        (
            "platform_python_implementation",
            MarkerVariable::PlatformPythonImplementation,
        ),
        (
            "platform.python_implementation",
            MarkerVariable::PlatformPythonImplementation,
        ),
        (
            "python_implementation",
            MarkerVariable::PlatformPythonImplementation,
        ),
        ("platform_release", MarkerVariable::PlatformRelease),
        ("platform_system", MarkerVariable::PlatformSystem),
        ("platform_version", MarkerVariable::PlatformVersion),
        ("platform.version", MarkerVariable::PlatformVersion),
        ("python_full_version", MarkerVariable::PythonFullVersion),
        ("python_version", MarkerVariable::PythonVersion),
        ("sys_platform", MarkerVariable::SysPlatform),
        ("sys.platform", MarkerVariable::SysPlatform),
    ];

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            MarkerVariable::ImplementationName => "implementation_name",
            MarkerVariable::ImplementationVersion => "implementation_version",
            MarkerVariable::OsName => "os_name",
            MarkerVariable::PlatformMachine => "platform_machine",
            MarkerVariable::PlatformPythonImplementation => "platform_python_implementation",
            MarkerVariable::PlatformRelease => "platform_release",
            MarkerVariable::PlatformSystem => "platform_system",
            MarkerVariable::PlatformVersion => "platform_version",
            MarkerVariable::PythonFullVersion => "python_full_version",
            MarkerVariable::PythonVersion => "python_version",
            MarkerVariable::SysPlatform => "sys_platform",
            MarkerVariable::Extra => "extra",
        }
    }

    fn value<'e>(self, env: &'e MarkerEnvironment, extra: &'e str) -> &'e str {
        match self {
            MarkerVariable::ImplementationName => &env.implementation_name,
            MarkerVariable::ImplementationVersion => &env.implementation_version,
            MarkerVariable::OsName => &env.os_name,
            MarkerVariable::PlatformMachine => &env.platform_machine,
            MarkerVariable::PlatformPythonImplementation => &env.platform_python_implementation,
            MarkerVariable::PlatformRelease => &env.platform_release,
            MarkerVariable::PlatformSystem => &env.platform_system,
            MarkerVariable::PlatformVersion => &env.platform_version,
            MarkerVariable::PythonFullVersion => &env.python_full_version,
            MarkerVariable::PythonVersion => &env.python_version,
            MarkerVariable::SysPlatform => &env.sys_platform,
            MarkerVariable::Extra => extra,
        }
    }
}

/// One side of a marker comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MarkerValue {
    /// An environment variable.
    Variable(MarkerVariable),
    /// A quoted string literal.
    Literal(String),
}

impl fmt::Display for MarkerValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarkerValue::Variable(v) => f.write_str(v.as_str()),
            MarkerValue::Literal(s) if s.contains('"') => write!(f, "'{s}'"),
            MarkerValue::Literal(s) => write!(f, "\"{s}\""),
        }
    }
}

/// A marker comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkerOperator {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    LessThan,
    /// `<=`
    LessThanEqual,
    /// `>`
    GreaterThan,
    /// `>=`
    GreaterThanEqual,
    /// `~=`
    Compatible,
    /// `===`
    Arbitrary,
    /// `in`
    In,
    /// `not in`
    NotIn,
}

impl MarkerOperator {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            MarkerOperator::Equal => "==",
            MarkerOperator::NotEqual => "!=",
            MarkerOperator::LessThan => "<",
            MarkerOperator::LessThanEqual => "<=",
            MarkerOperator::GreaterThan => ">",
            MarkerOperator::GreaterThanEqual => ">=",
            MarkerOperator::Compatible => "~=",
            MarkerOperator::Arbitrary => "===",
            MarkerOperator::In => "in",
            MarkerOperator::NotIn => "not in",
        }
    }
}

/// A parsed marker expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MarkerTree {
    /// All must hold.
    And(Vec<MarkerTree>),
    /// One must hold.
    Or(Vec<MarkerTree>),
    /// `lhs op rhs`.
    Compare {
        /// Left side.
        lhs: MarkerValue,
        /// Operator.
        op: MarkerOperator,
        /// Right side.
        rhs: MarkerValue,
    },
}

impl MarkerTree {
    /// Parses a marker expression on its own (without a requirement before it).
    pub fn parse(text: &str) -> Result<MarkerTree, RequirementError> {
        let mut cursor = Cursor::new(text);
        let tree = parse_marker_at(&mut cursor)?;
        cursor.skip_ws();
        if !cursor.at_end() {
            return Err(cursor.error(cursor.pos, "expected `and`, `or` or the end of the marker"));
        }
        Ok(tree)
    }

    /// Evaluates the marker with `extra` set to the given value (`""` when no extra was
    /// requested, as pip does).
    pub fn evaluate(&self, env: &MarkerEnvironment, extra: &str) -> bool {
        match self {
            MarkerTree::And(items) => items.iter().all(|m| m.evaluate(env, extra)),
            MarkerTree::Or(items) => items.iter().any(|m| m.evaluate(env, extra)),
            MarkerTree::Compare { lhs, op, rhs } => compare(lhs, *op, rhs, env, extra),
        }
    }

    /// True when the marker holds with no extra (`extra == ""`), or with any one of `extras`:
    /// whether a dependency applies to a distribution installed with those extras.
    pub fn evaluate_with_extras(&self, env: &MarkerEnvironment, extras: &[String]) -> bool {
        self.evaluate(env, "") || extras.iter().any(|extra| self.evaluate(env, extra))
    }

    /// True when the marker names the `extra` variable anywhere.
    pub fn mentions_extra(&self) -> bool {
        match self {
            MarkerTree::And(items) | MarkerTree::Or(items) => {
                items.iter().any(Self::mentions_extra)
            }
            MarkerTree::Compare { lhs, rhs, .. } => [lhs, rhs]
                .iter()
                .any(|v| matches!(v, MarkerValue::Variable(MarkerVariable::Extra))),
        }
    }

    fn fmt_nested(&self, f: &mut fmt::Formatter<'_>, top: bool) -> fmt::Result {
        let (items, joiner) = match self {
            MarkerTree::Compare { lhs, op, rhs } => {
                return write!(f, "{lhs} {} {rhs}", op.as_str());
            }
            MarkerTree::And(items) => (items, " and "),
            MarkerTree::Or(items) => (items, " or "),
        };
        if !top {
            f.write_str("(")?;
        }
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                f.write_str(joiner)?;
            }
            item.fmt_nested(f, false)?;
        }
        if !top {
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl fmt::Display for MarkerTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_nested(f, true)
    }
}

impl FromStr for MarkerTree {
    type Err = RequirementError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MarkerTree::parse(s)
    }
}

fn compare(
    lhs: &MarkerValue,
    op: MarkerOperator,
    rhs: &MarkerValue,
    env: &MarkerEnvironment,
    extra: &str,
) -> bool {
    let is_extra = |v: &MarkerValue| matches!(v, MarkerValue::Variable(MarkerVariable::Extra));
    let resolve = |v: &MarkerValue| match v {
        MarkerValue::Variable(var) => var.value(env, extra).to_owned(),
        MarkerValue::Literal(s) => s.clone(),
    };
    let (mut left, mut right) = (resolve(lhs), resolve(rhs));
    if is_extra(lhs) || is_extra(rhs) {
        left = normalize(&left);
        right = normalize(&right);
    }
    // `packaging`: if `op rhs` is a valid specifier and lhs a valid version, compare versions.
    if !matches!(op, MarkerOperator::In | MarkerOperator::NotIn)
        && let Ok(spec) = VersionSpecifier::parse(&format!("{}{right}", op.as_str()))
        && let Ok(version) = Version::parse(&left)
    {
        return spec.contains(&version);
    }
    match op {
        MarkerOperator::Equal => left == right,
        MarkerOperator::NotEqual => left != right,
        MarkerOperator::LessThan => left < right,
        MarkerOperator::LessThanEqual => left <= right,
        MarkerOperator::GreaterThan => left > right,
        MarkerOperator::GreaterThanEqual => left >= right,
        MarkerOperator::In => right.contains(&left),
        MarkerOperator::NotIn => !right.contains(&left),
        MarkerOperator::Arbitrary => left.eq_ignore_ascii_case(&right),
        // `packaging` raises "undefined comparison"; such a marker can never be satisfied.
        MarkerOperator::Compatible => false,
    }
}

/// Parses a marker expression starting at the cursor (after `;` in a requirement).
pub(crate) fn parse_marker_at(cursor: &mut Cursor<'_>) -> Result<MarkerTree, RequirementError> {
    parse_or(cursor)
}

fn keyword(cursor: &mut Cursor<'_>, word: &str) -> bool {
    let save = cursor.pos;
    cursor.skip_ws();
    if cursor.eat_str(word)
        && cursor
            .peek()
            .is_none_or(|c| c.is_whitespace() || c == '(' || c == '"' || c == '\'')
    {
        return true;
    }
    cursor.pos = save;
    false
}

fn parse_or(cursor: &mut Cursor<'_>) -> Result<MarkerTree, RequirementError> {
    let mut items = vec![parse_and(cursor)?];
    while keyword(cursor, "or") {
        items.push(parse_and(cursor)?);
    }
    Ok(if items.len() == 1 {
        items.remove(0)
    } else {
        MarkerTree::Or(items)
    })
}

fn parse_and(cursor: &mut Cursor<'_>) -> Result<MarkerTree, RequirementError> {
    let mut items = vec![parse_atom(cursor)?];
    while keyword(cursor, "and") {
        items.push(parse_atom(cursor)?);
    }
    Ok(if items.len() == 1 {
        items.remove(0)
    } else {
        MarkerTree::And(items)
    })
}

fn parse_atom(cursor: &mut Cursor<'_>) -> Result<MarkerTree, RequirementError> {
    cursor.skip_ws();
    if cursor.eat('(') {
        let inner = parse_or(cursor)?;
        cursor.skip_ws();
        if !cursor.eat(')') {
            return Err(cursor.error(cursor.pos, "expected `)` closing the marker group"));
        }
        return Ok(inner);
    }
    let lhs = parse_value(cursor)?;
    cursor.skip_ws();
    let op = parse_operator(cursor)?;
    let rhs = parse_value(cursor)?;
    Ok(MarkerTree::Compare { lhs, op, rhs })
}

fn parse_value(cursor: &mut Cursor<'_>) -> Result<MarkerValue, RequirementError> {
    cursor.skip_ws();
    let start = cursor.pos;
    match cursor.peek() {
        Some(quote @ ('"' | '\'')) => {
            cursor.pos += 1;
            let value = cursor.take_while(|c| c != quote);
            if !cursor.eat(quote) {
                return Err(cursor.error(start, "unterminated string"));
            }
            Ok(MarkerValue::Literal(value))
        }
        Some(c) if c.is_ascii_alphabetic() => {
            let word = cursor.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if word == "extra" {
                return Ok(MarkerValue::Variable(MarkerVariable::Extra));
            }
            MarkerVariable::ALL
                .iter()
                .find(|(name, _)| *name == word)
                .map(|(_, var)| MarkerValue::Variable(*var))
                .ok_or_else(|| cursor.error(start, format!("unknown marker variable `{word}`")))
        }
        _ => Err(cursor.error(
            start,
            "expected a marker value (a variable such as python_version, or a quoted string)",
        )),
    }
}

fn parse_operator(cursor: &mut Cursor<'_>) -> Result<MarkerOperator, RequirementError> {
    let start = cursor.pos;
    let ops = [
        ("===", MarkerOperator::Arbitrary),
        ("==", MarkerOperator::Equal),
        ("!=", MarkerOperator::NotEqual),
        ("<=", MarkerOperator::LessThanEqual),
        (">=", MarkerOperator::GreaterThanEqual),
        ("~=", MarkerOperator::Compatible),
        ("<", MarkerOperator::LessThan),
        (">", MarkerOperator::GreaterThan),
    ];
    for (text, op) in ops {
        if cursor.eat_str(text) {
            return Ok(op);
        }
    }
    if keyword(cursor, "in") {
        return Ok(MarkerOperator::In);
    }
    if keyword(cursor, "not") && keyword(cursor, "in") {
        return Ok(MarkerOperator::NotIn);
    }
    cursor.pos = start;
    Err(cursor.error(
        start,
        "expected a marker operator (==, !=, <, <=, >, >=, ~=, in, not in)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn linux_311() -> MarkerEnvironment {
        MarkerEnvironment {
            implementation_name: "cpython".into(),
            implementation_version: "3.11.7".into(),
            os_name: "posix".into(),
            platform_machine: "x86_64".into(),
            platform_python_implementation: "CPython".into(),
            platform_release: "6.1.0-18-amd64".into(),
            platform_system: "Linux".into(),
            platform_version: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1".into(),
            python_full_version: "3.11.7".into(),
            python_version: "3.11".into(),
            sys_platform: "linux".into(),
        }
    }

    fn eval(marker: &str, extra: &str) -> bool {
        MarkerTree::parse(marker)
            .expect("valid marker")
            .evaluate(&linux_311(), extra)
    }

    #[test]
    fn evaluates_like_packaging() {
        let cases = [
            ("python_version >= \"3.8\"", "", true),
            ("python_version < '3.9'", "", false),
            ("python_version > \"3.9\"", "", true),
            ("python_full_version >= '3.11.7'", "", true),
            ("sys_platform == 'win32'", "", false),
            (
                "sys_platform != \"win32\" and platform_system == 'Linux'",
                "",
                true,
            ),
            (
                "os_name == 'nt' or implementation_name == 'cpython'",
                "",
                true,
            ),
            ("'linux' in sys_platform", "", true),
            ("platform_machine not in 'arm64 aarch64'", "", true),
            ("extra == 'fast'", "", false),
            ("extra == 'fast'", "fast", true),
            ("extra == 'Fast_Path'", "fast-path", true),
            (
                "(python_version < '3.8' or extra == 'test') and os_name == 'posix'",
                "test",
                true,
            ),
            (
                "(python_version < '3.8' or extra == 'test') and os_name == 'posix'",
                "",
                false,
            ),
            ("platform_release >= '6'", "", true),
            ("\"3.8\" < python_version", "", true),
            ("os.name == 'posix'", "", true),
        ];
        for (marker, extra, expected) in cases {
            assert_eq!(
                eval(marker, extra),
                expected,
                "{marker} with extra={extra:?}"
            );
        }
    }

    #[test]
    fn rejects_malformed_markers() {
        for bad in [
            "python_version",
            "python_version >= ",
            "foo == 'x'",
            "(os_name == 'x'",
            "os_name = 'x'",
        ] {
            assert!(MarkerTree::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn displays_with_double_quotes() {
        let m = MarkerTree::parse("os_name=='posix' and (extra == 'a' or extra == 'b')")
            .expect("valid");
        assert_eq!(
            m.to_string(),
            "os_name == \"posix\" and (extra == \"a\" or extra == \"b\")"
        );
    }
}
