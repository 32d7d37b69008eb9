//! The Python packaging standards ptest reads without running Python, apart from the code
//! that finds interpreters, makes venvs and runs installers (as uv keeps its `pep440` and
//! `pep508` crates apart): PEP 440 versions and specifiers, PEP 508 requirements and
//! environment markers. Nothing here touches the file system or starts a process.

pub mod marker;
pub mod requirement;
pub mod specifier;
pub mod version;
