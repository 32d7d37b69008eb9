//! What `pyproject.toml` tells `ptest init`: whether the project installs itself, its test
//! dependencies (`[project.optional-dependencies]` and `[dependency-groups]` named for tests or
//! development), and whether pytest is configured there.

use toml::Value;

/// Extras and dependency groups taken as the test dependencies, in this order of preference.
const TEST_GROUPS: [&str; 5] = ["test", "tests", "testing", "dev", "develop"];

/// A project's test dependencies.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TestDeps {
    /// Where they are: `[dependency-groups] test`.
    pub from: String,
    /// The requirements.
    pub deps: Vec<String>,
    /// The extra they are (installed as `.[test]`), when they are one.
    pub extra: Option<String>,
}

/// What `pyproject.toml` says.
#[derive(Debug, Default)]
pub(crate) struct Pyproject {
    /// A `[project]` table or a build system: `pip install .` works.
    pub installable: bool,
    /// The test dependencies found.
    pub test_deps: Option<TestDeps>,
    /// `[tool.pytest.ini_options]` exists.
    pub pytest_config: bool,
}

impl Pyproject {
    /// Reads the text of a `pyproject.toml`; `Err` with the parser's message when it is not
    /// TOML.
    pub(crate) fn parse(text: &str) -> Result<Pyproject, String> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let project = doc.get("project").and_then(Value::as_table);
        let extras: Vec<(String, Vec<String>)> = project
            .and_then(|p| p.get("optional-dependencies"))
            .and_then(Value::as_table)
            .map(|t| {
                t.iter()
                    .map(|(name, deps)| (name.clone(), strings(deps)))
                    .collect()
            })
            .unwrap_or_default();
        let groups = doc.get("dependency-groups").and_then(Value::as_table);
        let from_group = TEST_GROUPS.iter().find_map(|name| {
            Some(TestDeps {
                from: format!("[dependency-groups] {name}"),
                deps: group(groups?, name, 0)?,
                extra: None,
            })
        });
        let from_extra = || {
            TEST_GROUPS.iter().find_map(|name| {
                let (_, deps) = extras.iter().find(|(extra, _)| extra == name)?;
                Some(TestDeps {
                    from: format!("[project.optional-dependencies] {name}"),
                    deps: deps.clone(),
                    extra: Some((*name).to_owned()),
                })
            })
        };
        Ok(Pyproject {
            installable: project.is_some() || doc.contains_key("build-system"),
            test_deps: from_group.or_else(from_extra),
            pytest_config: doc
                .get("tool")
                .and_then(|t| t.get("pytest"))
                .and_then(|t| t.get("ini_options"))
                .is_some(),
        })
    }
}

/// The strings of an array (anything else is left out).
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Dependency group `name`, its `{include-group = "..."}` entries expanded (PEP 735), at most
/// a few levels deep.
fn group(groups: &toml::Table, name: &str, depth: usize) -> Option<Vec<String>> {
    if depth > 8 {
        return None;
    }
    let mut out = Vec::new();
    for entry in groups.get(name)?.as_array()? {
        match entry {
            Value::String(dep) => out.push(dep.clone()),
            Value::Table(t) => {
                if let Some(included) = t.get("include-group").and_then(Value::as_str) {
                    out.extend(group(groups, included, depth + 1).unwrap_or_default());
                }
            }
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn test_dependencies_come_from_groups_then_extras() {
        let p = Pyproject::parse(
            "[project]\nname = 'x'\n[project.optional-dependencies]\n\
             test = ['pytest', 'freezegun']\ndocs = ['sphinx']\n\
             [dependency-groups]\nlint = ['ruff']\n\
             dev = [{include-group = 'lint'}, 'pytest>=8']\n\
             [tool.pytest.ini_options]\ntestpaths = ['tests']\n",
        )
        .unwrap();
        assert!(p.installable && p.pytest_config);
        let found = p.test_deps.clone().unwrap();
        assert_eq!(found.from, "[dependency-groups] dev");
        assert_eq!(found.deps, ["ruff", "pytest>=8"]);
        assert_eq!(found.extra, None);

        let p = Pyproject::parse("[project.optional-dependencies]\ntesting = ['hypothesis']\n")
            .unwrap();
        let found = p.test_deps.unwrap();
        assert_eq!(found.from, "[project.optional-dependencies] testing");
        assert_eq!(found.deps, ["hypothesis"]);
        assert_eq!(found.extra.as_deref(), Some("testing"));
        assert!(Pyproject::parse("[project").is_err());
    }
}
