//! Python for ptest's `virtualenv` level: finding interpreters, creating virtual
//! environments, installing packages with uv or pip, and reading and checking what is
//! installed without running Python.
//!
//! Main types: [`Interpreter`] (a base Python found from a [`PythonRequest`] such as `3.11`,
//! with pyenv shims resolved to the real binary), [`Venv`] (a venv directory), [`Installer`]
//! (uv when it is on `PATH`, pip otherwise, sharing one cache directory between
//! environments), [`Distribution`] (one `*.dist-info`), [`Conflict`] (one unmet requirement,
//! as `pip check` reports it), [`TreeNode`] (the dependency tree), [`SpecHash`] (the content
//! hash that decides whether a built environment can be reused) and [`clone_venv`] (copying
//! a finished venv). PEP 440 versions and specifiers and PEP 508 requirements and
//! markers are parsed in [`pep`], a module of their own ([`Version`], [`VersionSpecifiers`],
//! [`Requirement`], [`MarkerTree`]).
//!
//! A typical flow:
//!
//! ```no_run
//! use ptest_python::{InstallRequest, Installer, Interpreter, PythonRequest, Venv};
//! # fn main() -> ptest_python::Result<()> {
//! let python = Interpreter::find(&"3.11".parse().expect("infallible"))?;
//! let installer = Installer::detect("/var/cache/ptest/python".as_ref());
//! let venv = Venv::create("/tmp/env/venv".as_ref(), &python, &installer)?;
//! let outcome = installer.install(&venv, &InstallRequest {
//!     requirements: vec!["requests>=2".into()],
//!     ..InstallRequest::default()
//! })?;
//! for change in outcome.installed() {
//!     println!("installed {} {:?}", change.name, change.after);
//! }
//! let dists = ptest_python::installed(&venv)?;
//! let conflicts = ptest_python::check(&dists, &python.markers);
//! assert!(conflicts.is_empty());
//! # Ok(()) }
//! ```
//!
//! Everything here is synchronous (`std::process`); an async caller runs it on a blocking
//! thread.

pub mod bytecode;
pub mod check;
pub mod clone;
pub mod error;
pub mod hash;
pub mod installer;
pub mod interpreter;
pub mod metadata;
pub mod pep;
pub mod probe_cache;
pub mod project;
pub mod pyenv;
mod regular;
pub mod tree;
pub mod venv;
mod venv_link;
pub mod wheel;

pub use check::{Conflict, check, check_venv};
pub use clone::{CloneReport, clone_venv};
pub use error::{Error, RequirementError, Result, SpecifierError, Tried, VersionError};
pub use hash::{HashInput, InputChange, SpecHash};
pub use installer::{
    Fetched, InstallOutcome, InstallRequest, Installer, InstallerKind, PackageChange,
};
pub use interpreter::{Interpreter, PythonRequest};
pub use metadata::{Distribution, freeze, installed, show};
pub use pep::marker::{MarkerEnvironment, MarkerTree};
pub use pep::requirement::{PackageName, Requirement, VersionOrUrl};
pub use pep::specifier::{VersionSpecifier, VersionSpecifiers};
pub use pep::version::Version;
pub use probe_cache::ProbeCache;
pub use tree::{TreeDisplay, TreeError, TreeNode, tree};
pub use venv::Venv;
