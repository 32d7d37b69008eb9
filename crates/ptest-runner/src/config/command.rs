//! `run`, `setup` and `teardown`: a command as a shell string or an argv array.

use serde::{Deserialize, Serialize};

/// A command of a suite: `"make test"` runs with `sh -c`, `["pytest", "-q"]` runs as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    /// A shell command line, run with `sh -c`.
    Shell(String),
    /// A program and its arguments, run without a shell.
    Argv(Vec<String>),
}

impl Command {
    /// The argv to execute: `["sh", "-c", line]` for a shell string.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Shell(line) => vec!["sh".into(), "-c".into(), line.clone()],
            Command::Argv(argv) => argv.clone(),
        }
    }

    /// Whether there is nothing to run (an empty string or array).
    pub fn is_empty(&self) -> bool {
        match self {
            Command::Shell(line) => line.trim().is_empty(),
            Command::Argv(argv) => argv.is_empty(),
        }
    }

    /// The command with the arguments given after `ptest run ... --`: each `{posargs}` (or
    /// `{posargs:DEFAULT}`) replaced by them, as tox does, or with them appended when the
    /// command names no `{posargs}`. `None` (no arguments given) leaves only the defaults.
    /// A shell string gets them single-quoted, so they reach the test command unchanged.
    pub fn with_posargs(&self, args: Option<&[String]>) -> Command {
        match self {
            Command::Shell(line) => {
                let quoted = args.map(|a| a.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "));
                match substitute(line, quoted.as_deref()) {
                    Some(line) => Command::Shell(line),
                    None => match quoted {
                        Some(q) if !q.is_empty() => Command::Shell(format!("{line} {q}")),
                        _ => self.clone(),
                    },
                }
            }
            Command::Argv(argv) => {
                let mut named = false;
                let mut out = Vec::with_capacity(argv.len());
                for word in argv {
                    match whole_posargs(word) {
                        // A word that is only `{posargs...}` becomes as many words as there
                        // are arguments (none at all when there are none and no default).
                        Some(default) => {
                            named = true;
                            match args {
                                Some(args) => out.extend(args.iter().cloned()),
                                None => out.extend(default.split_whitespace().map(str::to_owned)),
                            }
                        }
                        None => match substitute(word, args.map(|a| a.join(" ")).as_deref()) {
                            Some(word) => {
                                named = true;
                                out.push(word);
                            }
                            None => out.push(word.clone()),
                        },
                    }
                }
                if !named {
                    out.extend(args.unwrap_or_default().iter().cloned());
                }
                Command::Argv(out)
            }
        }
    }

    /// The command as the user wrote it, for listings and messages.
    pub fn display(&self) -> String {
        match self {
            Command::Shell(line) => line.clone(),
            Command::Argv(argv) => argv.join(" "),
        }
    }
}

/// `Some(default)` when `word` is exactly `{posargs}` (default "") or `{posargs:DEFAULT}`.
fn whole_posargs(word: &str) -> Option<&str> {
    let inner = word.strip_prefix("{posargs")?.strip_suffix('}')?;
    match inner.strip_prefix(':') {
        Some(default) if !default.contains('}') => Some(default),
        None if inner.is_empty() => Some(""),
        _ => None,
    }
}

/// `text` with every `{posargs}` / `{posargs:DEFAULT}` replaced by `args` (or by its
/// default when `args` is `None`); `None` when `text` names none.
fn substitute(text: &str, args: Option<&str>) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut found = false;
    while let Some(at) = rest.find("{posargs") {
        let after = &rest[at + "{posargs".len()..];
        let default = match after.chars().next() {
            Some('}') => Some(("", 1)),
            Some(':') => after.find('}').map(|end| (&after[1..end], end + 1)),
            _ => None,
        };
        out.push_str(&rest[..at]);
        match default {
            Some((default, len)) => {
                found = true;
                out.push_str(args.unwrap_or(default));
                rest = &after[len..];
            }
            None => {
                out.push_str("{posargs");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    found.then_some(out)
}

/// `arg` as one shell word.
pub(crate) fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        c: Command,
    }

    #[test]
    fn string_runs_through_sh_and_array_runs_directly() {
        let s: T = toml::from_str("c = 'echo hi'").expect("parses");
        assert_eq!(s.c.argv(), ["sh", "-c", "echo hi"]);
        let a: T = toml::from_str("c = ['python', '-m', 'x']").expect("parses");
        assert_eq!(a.c.argv(), ["python", "-m", "x"]);
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn posargs_are_appended_where_the_command_names_none() {
        let argv = Command::Argv(args(&["pytest", "-q"]));
        let given = args(&["-k", "foo bar"]);
        assert_eq!(
            argv.with_posargs(Some(&given)).argv(),
            ["pytest", "-q", "-k", "foo bar"]
        );
        assert_eq!(argv.with_posargs(None), argv);
        let shell = Command::Shell("pytest -q".into());
        assert_eq!(
            shell.with_posargs(Some(&given)),
            Command::Shell("pytest -q -k 'foo bar'".into())
        );
        assert_eq!(
            Command::Shell("echo".into()).with_posargs(Some(&args(&["it's"]))),
            Command::Shell("echo 'it'\\''s'".into())
        );
    }

    #[test]
    fn posargs_replace_the_placeholder_or_take_its_default() {
        let argv = Command::Argv(args(&["pytest", "{posargs:tests -x}", "--tb=short"]));
        assert_eq!(
            argv.with_posargs(None).argv(),
            ["pytest", "tests", "-x", "--tb=short"]
        );
        assert_eq!(
            argv.with_posargs(Some(&args(&["-k", "foo"]))).argv(),
            ["pytest", "-k", "foo", "--tb=short"]
        );
        let empty = Command::Argv(args(&["pytest", "{posargs}"]));
        assert_eq!(empty.with_posargs(None).argv(), ["pytest"]);
        let inside = Command::Argv(args(&["sh", "-c", "run {posargs:all} now"]));
        assert_eq!(
            inside.with_posargs(None).argv(),
            ["sh", "-c", "run all now"]
        );
        let shell = Command::Shell("pytest {posargs:tests} && echo {posargs}".into());
        assert_eq!(
            shell.with_posargs(Some(&args(&["a b"]))),
            Command::Shell("pytest 'a b' && echo 'a b'".into())
        );
        assert_eq!(
            shell.with_posargs(None),
            Command::Shell("pytest tests && echo ".into())
        );
        // Not a placeholder: left as written, and the arguments appended.
        let odd = Command::Shell("echo {posargsx} {posargs:unclosed".into());
        assert_eq!(
            odd.with_posargs(Some(&args(&["z"]))),
            Command::Shell("echo {posargsx} {posargs:unclosed z".into())
        );
    }
}
