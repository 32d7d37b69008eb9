//! The runner's errors: a `ptest.toml` that cannot be used (pointing at file, line and column),
//! and a selection that names no suite.

use std::path::PathBuf;

use miette::Diagnostic;

/// A project that cannot be loaded.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[non_exhaustive]
pub enum ProjectError {
    /// No `ptest.toml` in the directory or any parent.
    #[error("no ptest.toml in {} or any parent directory", start.display())]
    #[diagnostic(
        code(ptest::run::no_project),
        help("create one (see examples/project/ptest.toml), or run from the project directory")
    )]
    NotFound {
        /// Where the search started.
        start: PathBuf,
    },
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    #[diagnostic(code(ptest::run::read))]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A mistake in the file, with where it is.
    #[error(transparent)]
    #[diagnostic(transparent)]
    File(Box<ProjectFileError>),
}

impl ProjectError {
    /// Who can fix it: always the user (exit 2).
    pub fn kind(&self) -> ptest_core::ErrorKind {
        ptest_core::ErrorKind::Usage
    }
}

/// A mistake in `ptest.toml` (syntax, an unknown key, a bad value, a reference to nothing),
/// with file, line and column: the same error type as ptest's config files.
pub type ProjectFileError = ptest_core::config::FileError;

/// A selection that cannot be run.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[non_exhaustive]
pub enum SelectError {
    /// A suite name given on the command line is not in `ptest.toml`.
    #[error("no suite named {name:?} in {}; suites: {}", file.display(), known.join(", "))]
    #[diagnostic(code(ptest::run::unknown_suite))]
    UnknownSuite {
        /// The name given.
        name: String,
        /// The project file.
        file: PathBuf,
        /// The suites it has.
        known: Vec<String>,
    },
}

impl SelectError {
    /// Who can fix it: always the user (exit 2).
    pub fn kind(&self) -> ptest_core::ErrorKind {
        ptest_core::ErrorKind::Usage
    }
}
