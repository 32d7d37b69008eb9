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

    /// The command as the user wrote it, for listings and messages.
    pub fn display(&self) -> String {
        match self {
            Command::Shell(line) => line.clone(),
            Command::Argv(argv) => argv.join(" "),
        }
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
}
