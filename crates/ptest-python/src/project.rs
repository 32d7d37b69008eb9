//! The project under test, as tox installs it: built once into a wheel, its dependencies
//! installed like any other requirement (so that an environment's template, reused by hash,
//! holds them), the wheel itself installed without dependencies into each environment. Tests
//! then import the environment's own copy of the project, never the user's tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::installer::{Installer, InstallerKind, run_tool};
use crate::pep::marker::MarkerEnvironment;
use crate::pep::requirement::{PackageName, Requirement};

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

/// The dependencies of the project in `dir` with `extras`, as its `pyproject.toml` states
/// them (`[project] dependencies` and `optional-dependencies`, PEP 621), when it states
/// them statically: a backend must then write the same into the wheel, so environments can
/// be made with them while the wheel is still being built. `None` where the wheel has to
/// be asked: no `[project]` table, the lists named in `dynamic`, an extra it does not
/// declare, an entry that is not a valid requirement, or one naming the project itself
/// (`all = ["proj[a,b]"]`).
pub fn declared_requires(dir: &Path, extras: &[String]) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("pyproject.toml")).ok()?;
    let document: toml::Table = text.parse().ok()?;
    let project = document.get("project")?.as_table()?;
    let own_name = PackageName::new(project.get("name")?.as_str()?);
    let dynamic: Vec<&str> = match project.get("dynamic") {
        Some(d) => d
            .as_array()?
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<_>>()?,
        None => Vec::new(),
    };
    if dynamic.contains(&"dependencies")
        || (!extras.is_empty() && dynamic.contains(&"optional-dependencies"))
    {
        return None;
    }
    let strings = |value: Option<&toml::Value>| -> Option<Vec<String>> {
        match value {
            None => Some(Vec::new()),
            Some(v) => v
                .as_array()?
                .iter()
                .map(|r| r.as_str().map(str::to_owned))
                .collect(),
        }
    };
    let mut requires = strings(project.get("dependencies"))?;
    let optional = project
        .get("optional-dependencies")
        .and_then(|o| o.as_table());
    for extra in extras {
        let declared = optional?
            .iter()
            .find(|(name, _)| PackageName::new(name) == PackageName::new(extra))?;
        requires.extend(strings(Some(declared.1))?);
    }
    for text in &requires {
        let requirement = Requirement::parse(text).ok()?;
        if requirement.name == own_name {
            return None;
        }
    }
    Some(requires)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(pyproject: &str, extras: &[&str]) -> Option<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pyproject.toml"), pyproject).unwrap();
        let extras: Vec<String> = extras.iter().map(|e| e.to_string()).collect();
        declared_requires(dir.path(), &extras)
    }

    #[test]
    fn static_dependencies_and_the_asked_extras_are_declared() {
        let text = "[project]\nname = 'My_Proj'\nversion = '1'\n\
                    dependencies = ['attrs>=22', 'tomli; python_version < \"3.11\"']\n\
                    [project.optional-dependencies]\nTest = ['pytest']\ndocs = ['sphinx']\n";
        assert_eq!(
            declared(text, &["test"]).unwrap(),
            ["attrs>=22", "tomli; python_version < \"3.11\"", "pytest"]
        );
        assert_eq!(
            declared(text, &[]).unwrap(),
            ["attrs>=22", "tomli; python_version < \"3.11\""]
        );
        // No `dependencies` at all is none, when not dynamic.
        assert_eq!(
            declared("[project]\nname = 'p'\n", &[]).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_wheel_is_asked_wherever_the_file_does_not_settle_it() {
        for (text, extras) in [
            // setup.py projects and Poetry's own table: no [project].
            ("[tool.poetry]\nname = 'p'\n", &[][..]),
            ("[project]\nname = 'p'\ndynamic = ['dependencies']\n", &[]),
            (
                "[project]\nname = 'p'\ndynamic = ['optional-dependencies']\n",
                &["test"][..],
            ),
            ("[project]\nname = 'p'\n", &["test"]),
            (
                "[project]\nname = 'p'\ndependencies = ['not a requirement!']\n",
                &[],
            ),
            (
                "[project]\nname = 'p'\n[project.optional-dependencies]\n\
                 a = ['x']\nall = ['P[a]']\n",
                &["all"],
            ),
            ("not toml", &[]),
        ] {
            assert_eq!(declared(text, extras), None, "{text}");
        }
        let none = tempfile::tempdir().unwrap();
        assert_eq!(declared_requires(none.path(), &[]), None);
    }
}
