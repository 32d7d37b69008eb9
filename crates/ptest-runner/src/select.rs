//! Which suites a run executes: names given on the command line, `--tag`, `--exclude-tag`,
//! and the suites they depend on (which run first, whether selected or not).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::config::{Command, Project, Suite};
use crate::error::SelectError;

/// What the user asked to run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Suite names (`unit` is every entry of a matrix suite, `unit[py3.11]` one); every
    /// suite when empty.
    pub names: Vec<String>,
    /// Only suites carrying at least one of these tags (all when empty).
    pub tags: Vec<String>,
    /// Leave out suites carrying any of these tags.
    pub exclude_tags: Vec<String>,
    /// Arguments given after `--` (`ptest run unit -- -k foo`): they fill each selected
    /// suite's `{posargs}`, or are appended to its `run`; suites that run only as a
    /// dependency get `{posargs}`'s defaults. `None` when none were given.
    pub args: Option<Vec<String>>,
}

/// One suite of the plan, as `ptest run --list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedSuite {
    /// The suite's name.
    pub name: String,
    /// Its environment template.
    pub env: String,
    /// The template's isolation level.
    pub level: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Number of shards.
    pub shards: u32,
    /// Suites it waits for.
    pub depends_on: Vec<String>,
    /// Whether it runs only because a selected suite depends on it.
    pub dependency_only: bool,
    /// The test command.
    pub run: String,
}

impl Selection {
    /// The suites to run, in file order: the selected ones and what they depend on.
    pub fn plan(&self, project: &Project) -> Result<Vec<PlannedSuite>, SelectError> {
        let is = |name: &str, s: &Suite| s.name == name || s.base_name() == name;
        let named = |s: &Suite| self.names.iter().any(|n| is(n, s));
        for name in &self.names {
            if !project.suites.iter().any(|s| is(name, s)) {
                return Err(SelectError::UnknownSuite {
                    name: name.clone(),
                    file: project.file.clone(),
                    known: project.suites.iter().map(|s| s.name.clone()).collect(),
                });
            }
        }
        let selected: BTreeSet<&str> = project
            .suites
            .iter()
            .filter(|s| self.names.is_empty() || named(s))
            .filter(|s| self.tags.is_empty() || s.tags.iter().any(|t| self.tags.contains(t)))
            .filter(|s| !s.tags.iter().any(|t| self.exclude_tags.contains(t)))
            .map(|s| s.name.as_str())
            .collect();
        let mut wanted = selected.clone();
        let mut stack: Vec<&str> = selected.iter().copied().collect();
        while let Some(name) = stack.pop() {
            let suite = project.suite(name).expect("names come from the project");
            for dep in &suite.depends_on {
                if wanted.insert(dep.as_str()) {
                    stack.push(dep.as_str());
                }
            }
        }
        Ok(project
            .suites
            .iter()
            .filter(|s| wanted.contains(s.name.as_str()))
            .map(|s| PlannedSuite {
                name: s.name.clone(),
                env: s.env.clone(),
                level: project.template(s).level.to_string(),
                tags: s.tags.clone(),
                shards: s.shards,
                depends_on: s.depends_on.clone(),
                dependency_only: !selected.contains(s.name.as_str()),
                run: self
                    .command(s, selected.contains(s.name.as_str()))
                    .display(),
            })
            .collect())
    }
}

impl Selection {
    /// The `run` command of `suite` in this run: with the arguments after `--` when the suite
    /// was `selected`, with only `{posargs}`'s defaults when it runs as a dependency.
    pub(crate) fn command(&self, suite: &Suite, selected: bool) -> Command {
        let args = self.args.as_deref().filter(|a| selected && !a.is_empty());
        suite.run.with_posargs(args)
    }
}

/// The plan as `ptest run --list` prints it: `NAME ENV LEVEL SHARDS TAGS DEPENDS_ON`.
pub fn list_text(plan: &[PlannedSuite]) -> String {
    let rows: Vec<[String; 6]> = plan
        .iter()
        .map(|p| {
            [
                if p.dependency_only {
                    format!("{} (dependency)", p.name)
                } else {
                    p.name.clone()
                },
                p.env.clone(),
                p.level.clone(),
                p.shards.to_string(),
                p.tags.join(","),
                p.depends_on.join(","),
            ]
        })
        .collect();
    let header = ["NAME", "ENV", "LEVEL", "SHARDS", "TAGS", "DEPENDS_ON"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
