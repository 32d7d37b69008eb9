//! Typed errors. Each says what failed, on what, and what the user can do about it.

use std::fmt;
use std::path::PathBuf;

/// A version string that is not a PEP 440 version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version `{text}`: {reason}")]
pub struct VersionError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A version specifier that is not PEP 440 (`>=1.0`, `~=2.1`, `==3.*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version specifier `{text}`: {reason}")]
pub struct SpecifierError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A requirement that is not PEP 508, with the position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid requirement `{text}` at column {column}: {reason}\n    {text}\n    {caret:>width$}", column = .position + 1, caret = "^", width = .position + 1)]
pub struct RequirementError {
    /// The requirement text as given.
    pub text: String,
    /// Character offset (0-based) where the problem was found.
    pub position: usize,
    /// What was expected there.
    pub reason: String,
}

/// One candidate looked at while searching for an interpreter, and why it was not taken.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tried {
    /// The candidate path or command name.
    pub candidate: String,
    /// Why it was rejected (not found, failed to run, wrong version).
    pub reason: String,
}

impl fmt::Display for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.candidate, self.reason)
    }
}

fn list_tried(tried: &[Tried]) -> String {
    if tried.is_empty() {
        return "nothing matched the request".to_owned();
    }
    tried
        .iter()
        .map(|t| format!("\n  - {t}"))
        .collect::<String>()
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No interpreter matched the request.
    #[error(
        "no Python interpreter matches `{request}`; tried:{tried}\ninstall one (e.g. `pyenv install {request}` or the distribution's python3 package) or pass its path",
        tried = list_tried(.tried)
    )]
    InterpreterNotFound {
        /// The request as the user wrote it.
        request: String,
        /// Every candidate looked at, with the reason it was rejected.
        tried: Vec<Tried>,
    },

    /// The interpreter ran but its answer could not be understood.
    #[error("could not query the interpreter {path}: {reason}")]
    InterpreterQuery {
        /// The interpreter asked.
        path: PathBuf,
        /// What went wrong (stderr tail or parse error).
        reason: String,
    },

    /// A directory is not a usable virtual environment.
    #[error("{path} is not a virtual environment: {reason}")]
    NotAVenv {
        /// The directory.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },

    /// A tool (uv, python -m venv, pip) exited with failure.
    #[error(
        "{action} failed: `{command}` exited with {status}\n{stderr_tail}",
        status = .status.map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"))
    )]
    ToolFailed {
        /// What was being done ("installing packages into /x/venv").
        action: String,
        /// The command line run.
        command: String,
        /// Exit code, `None` when killed by a signal.
        status: Option<i32>,
        /// The last lines of the tool's stderr, where it says why.
        stderr_tail: String,
    },

    /// A tool could not be started at all.
    #[error("could not run `{program}` ({action}): {source}")]
    Spawn {
        /// The program.
        program: String,
        /// What it was run for.
        action: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The pip fallback cannot work with this interpreter.
    #[error(
        "pip cannot install into {venv}: {reason}; install uv (`pip install uv`) or pip >= 22.3 in the base interpreter"
    )]
    PipUnavailable {
        /// The venv.
        venv: PathBuf,
        /// Why not.
        reason: String,
    },

    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "hard-linking").
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The destination of a clone already exists.
    #[error(
        "cannot clone into {0}: it already exists and is not an empty directory; remove it or choose another path"
    )]
    DestinationExists(PathBuf),

    /// A requirement given by the caller is not PEP 508.
    #[error(transparent)]
    Requirement(#[from] RequirementError),
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The last `lines` lines of a tool's output, for error messages.
pub(crate) fn tail(output: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(output);
    let all: Vec<&str> = text.trim_end().lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_error_points_at_column() {
        let err = RequirementError {
            text: "foo >= ".to_owned(),
            position: 7,
            reason: "expected a version".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "invalid requirement `foo >= ` at column 8: expected a version\n    foo >= \n           ^"
        );
    }

    #[test]
    fn not_found_lists_every_candidate() {
        let err = Error::InterpreterNotFound {
            request: "3.99".to_owned(),
            tried: vec![
                Tried {
                    candidate: "python3.99".to_owned(),
                    reason: "not on PATH".to_owned(),
                },
                Tried {
                    candidate: "/usr/bin/python3".to_owned(),
                    reason: "is 3.11.2".to_owned(),
                },
            ],
        };
        let text = err.to_string();
        assert!(
            text.contains("\n  - python3.99: not on PATH\n  - /usr/bin/python3: is 3.11.2"),
            "{text}"
        );
    }
}
