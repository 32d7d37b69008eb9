//! `pip check` in Rust: is every requirement of every installed distribution satisfied?
//!
//! Follows pip's rules: a distribution's requirements are its `Requires-Dist` entries whose
//! marker holds with `extra == ""`; a requirement is missing when nothing of that name is
//! installed, and conflicting when the installed version is outside its specifiers
//! (pre-releases admitted).

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Result;
use crate::metadata::{Distribution, installed};
use crate::pep::marker::MarkerEnvironment;
use crate::pep::requirement::PackageName;
use crate::venv::Venv;

/// One unsatisfied requirement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Conflict {
    /// The required distribution is not installed.
    Missing {
        /// Who requires it.
        requirer: PackageName,
        /// The requirer's version.
        requirer_version: String,
        /// The requirement as `packaging` prints it.
        requirement: String,
        /// The missing distribution.
        dependency: PackageName,
    },
    /// The required distribution is installed at a version the requirement excludes.
    VersionMismatch {
        /// Who requires it.
        requirer: PackageName,
        /// The requirer's version.
        requirer_version: String,
        /// The requirement as `packaging` prints it.
        requirement: String,
        /// The required distribution.
        dependency: PackageName,
        /// The version installed.
        installed_version: String,
    },
    /// A `Requires-Dist` entry that is not PEP 508 (pip would stop with an error here).
    InvalidRequirement {
        /// Whose metadata holds it.
        requirer: PackageName,
        /// The requirer's version.
        requirer_version: String,
        /// The entry as written.
        requirement: String,
        /// Why it does not parse.
        reason: String,
    },
}

impl Conflict {
    /// The distribution whose requirement is not met.
    pub fn requirer(&self) -> &PackageName {
        match self {
            Conflict::Missing { requirer, .. }
            | Conflict::VersionMismatch { requirer, .. }
            | Conflict::InvalidRequirement { requirer, .. } => requirer,
        }
    }
}

/// Worded as `pip check` words it.
impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conflict::Missing {
                requirer,
                requirer_version,
                dependency,
                ..
            } => write!(
                f,
                "{requirer} {requirer_version} requires {dependency}, which is not installed."
            ),
            Conflict::VersionMismatch {
                requirer,
                requirer_version,
                requirement,
                dependency,
                installed_version,
            } => write!(
                f,
                "{requirer} {requirer_version} has requirement {requirement}, but you have {dependency} {installed_version}."
            ),
            Conflict::InvalidRequirement {
                requirer,
                requirer_version,
                requirement,
                reason,
            } => write!(
                f,
                "{requirer} {requirer_version} has an invalid requirement `{requirement}`: {reason}"
            ),
        }
    }
}

/// Checks `dists` against each other for an interpreter with `env`; findings sorted with
/// missing dependencies first, then by requirer and dependency, as `pip check` lists them.
pub fn check(dists: &[Distribution], env: &MarkerEnvironment) -> Vec<Conflict> {
    let by_name: BTreeMap<&PackageName, &Distribution> =
        dists.iter().map(|d| (&d.name, d)).collect();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for dist in dists {
        for (text, parsed) in dist.requires_dist.iter().zip(dist.requirements()) {
            let req = match parsed {
                Ok(req) => req,
                Err(err) => {
                    mismatched.push(Conflict::InvalidRequirement {
                        requirer: dist.name.clone(),
                        requirer_version: dist.version.clone(),
                        requirement: text.clone(),
                        reason: err.reason,
                    });
                    continue;
                }
            };
            if let Some(marker) = &req.marker
                && !marker.evaluate(env, "")
            {
                continue;
            }
            match by_name.get(&req.name) {
                None => missing.push(Conflict::Missing {
                    requirer: dist.name.clone(),
                    requirer_version: dist.version.clone(),
                    requirement: req.to_string(),
                    dependency: req.name.clone(),
                }),
                Some(dep) => {
                    let satisfied = dep
                        .parsed_version()
                        .is_some_and(|v| req.specifiers().contains(&v));
                    if !satisfied {
                        mismatched.push(Conflict::VersionMismatch {
                            requirer: dist.name.clone(),
                            requirer_version: dist.version.clone(),
                            requirement: req.to_string(),
                            dependency: req.name.clone(),
                            installed_version: dep.version.clone(),
                        });
                    }
                }
            }
        }
    }
    missing.sort();
    missing.dedup();
    mismatched.sort();
    mismatched.dedup();
    missing.extend(mismatched);
    missing
}

/// Reads the venv's distributions and its interpreter's markers (one subprocess), then
/// [`check`]s them.
pub fn check_venv(venv: &Venv) -> Result<Vec<Conflict>> {
    let interpreter = venv.interpreter()?;
    Ok(check(&installed(venv)?, &interpreter.markers))
}
