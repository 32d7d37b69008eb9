//! The project under test, as tox installs it: built once into a wheel, its dependencies
//! installed like any other requirement (so that an environment's template, reused by hash,
//! holds them), the wheel itself installed without dependencies into each environment. Tests
//! then import the environment's own copy of the project, never the user's tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::installer::{Installer, InstallerKind, run_tool};
use crate::pep::marker::MarkerEnvironment;
use crate::pep::requirement::Requirement;

/// Most bytes of a wheel's `METADATA` read.
const METADATA_MAX: usize = 32 << 20;

/// Builds a wheel of the project in `dir` into the empty directory `out` and returns its
/// path: `uv build --wheel` with uv (its build environments come from uv's cache), else
/// `python -m pip wheel --no-deps` with the interpreter `python`.
pub fn build_wheel(
    installer: &Installer,
    python: &Path,
    dir: &Path,
    out: &Path,
) -> Result<PathBuf> {
    let mut command = match installer.kind() {
        InstallerKind::Uv { binary, .. } => {
            let mut c = Command::new(binary);
            c.args(["build", "--wheel", "--no-config", "--python"])
                .arg(python)
                .arg("--out-dir")
                .arg(out)
                .arg(dir)
                .env("UV_CACHE_DIR", installer.cache_dir())
                .env("UV_PYTHON_DOWNLOADS", "never");
            c
        }
        _ => {
            let mut c = Command::new(python);
            c.args([
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-input",
                "--wheel-dir",
            ])
            .arg(out)
            .arg(dir)
            .env("PIP_CACHE_DIR", installer.cache_dir())
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
            c
        }
    };
    command.env_remove("VIRTUAL_ENV");
    let action = format!("building a wheel of {}", dir.display());
    run_tool(&mut command, &action)?;
    let wheel = std::fs::read_dir(out)
        .map_err(Error::io("listing", out))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"));
    wheel.ok_or_else(|| Error::ToolFailed {
        action,
        command: crate::installer::show_command(&command),
        status: Some(0),
        stderr_tail: format!("it left no wheel in {}", out.display()),
    })
}

/// The `Requires-Dist` entries of `wheel`'s metadata, read from the wheel by ptest itself
/// (see [`crate::wheel`]): no interpreter starts for it.
pub fn wheel_requires(wheel: &Path) -> Result<Vec<String>> {
    let text = crate::wheel::metadata(wheel, METADATA_MAX)?;
    let text = String::from_utf8_lossy(&text);
    Ok(text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.strip_prefix("Requires-Dist:"))
        .map(|r| r.trim().to_owned())
        .collect())
}

/// Of `requires` (a wheel's `Requires-Dist`), those that apply to an interpreter with
/// `markers` when `extras` are asked for, as requirements without their markers: what an
/// installer would install for `project[extras]` there.
pub fn applicable(
    requires: &[String],
    markers: &MarkerEnvironment,
    extras: &[String],
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for text in requires {
        let mut requirement = Requirement::parse(text)?;
        let applies = requirement
            .marker
            .as_ref()
            .is_none_or(|m| m.evaluate_with_extras(markers, extras));
        if applies {
            requirement.marker = None;
            out.push(requirement.to_string());
        }
    }
    Ok(out)
}
