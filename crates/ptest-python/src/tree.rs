//! The dependency tree of installed distributions, from `Requires-Dist` with markers evaluated
//! for one interpreter. A requirement guarded by `extra == "x"` applies only where a parent
//! asked for `pkg[x]`. Cycles end in a node marked `cycle` instead of recursing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::error::RequirementError;
use crate::metadata::Distribution;
use crate::pep::marker::MarkerEnvironment;
use crate::pep::requirement::{PackageName, Requirement};

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TreeNode {
    /// The normalized name.
    pub name: PackageName,
    /// Installed version; `None` when it is not installed.
    pub installed_version: Option<String>,
    /// The requirement that led here from the parent (`None` for a root).
    pub required_as: Option<String>,
    /// Extras the parent requested (their dependencies are included below).
    pub extras: Vec<String>,
    /// The installed version satisfies `required_as` (true for roots).
    pub satisfied: bool,
    /// This package is already on the path from the root: its children are not repeated.
    pub cycle: bool,
    /// Its dependencies.
    pub children: Vec<TreeNode>,
}

/// Why a tree could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// The root asked for is not installed.
    #[error("{0} is not installed; `ptest pkg list` shows what is")]
    NotInstalled(PackageName),
    /// The root is not a valid requirement.
    #[error(transparent)]
    BadRoot(#[from] RequirementError),
}

/// Builds the tree. With `root` (a name, optionally with extras: `pkg[fast]`) there is one
/// root; without, the roots are the distributions nothing else requires, followed by any left
/// unreached (members of pure cycles), by name.
pub fn tree(
    dists: &[Distribution],
    env: &MarkerEnvironment,
    root: Option<&str>,
) -> Result<Vec<TreeNode>, TreeError> {
    let graph = Graph::new(dists, env);
    if let Some(root) = root {
        let req = Requirement::parse(root)?;
        if !graph.dists.contains_key(&req.name) {
            return Err(TreeError::NotInstalled(req.name));
        }
        let mut path = Vec::new();
        return Ok(vec![graph.node(&req.name, None, &req.extras, &mut path)]);
    }
    let mut required: BTreeSet<PackageName> = BTreeSet::new();
    for name in graph.dists.keys() {
        for req in graph.dependencies(name, &[]) {
            if req.name != *name {
                required.insert(req.name.clone());
            }
        }
    }
    let mut roots: Vec<TreeNode> = Vec::new();
    let mut reached: BTreeSet<PackageName> = BTreeSet::new();
    for name in graph.dists.keys().filter(|n| !required.contains(*n)) {
        let node = graph.node(name, None, &[], &mut Vec::new());
        collect_names(&node, &mut reached);
        roots.push(node);
    }
    for name in graph.dists.keys() {
        if !reached.contains(name) {
            let node = graph.node(name, None, &[], &mut Vec::new());
            collect_names(&node, &mut reached);
            roots.push(node);
        }
    }
    Ok(roots)
}

fn collect_names(node: &TreeNode, into: &mut BTreeSet<PackageName>) {
    into.insert(node.name.clone());
    for child in &node.children {
        collect_names(child, into);
    }
}

struct Graph<'a> {
    dists: BTreeMap<PackageName, &'a Distribution>,
    parsed: BTreeMap<PackageName, Vec<Requirement>>,
    env: &'a MarkerEnvironment,
}

impl<'a> Graph<'a> {
    fn new(dists: &'a [Distribution], env: &'a MarkerEnvironment) -> Graph<'a> {
        let parsed = dists
            .iter()
            .map(|d| {
                let reqs = d
                    .requirements()
                    .into_iter()
                    .filter_map(|r| {
                        r.map_err(|err| tracing::warn!(package = %d.name, %err, "ignoring invalid requirement"))
                            .ok()
                    })
                    .collect();
                (d.name.clone(), reqs)
            })
            .collect();
        Graph {
            dists: dists.iter().map(|d| (d.name.clone(), d)).collect(),
            parsed,
            env,
        }
    }

    /// Requirements of `name` installed with `extras`, those whose markers hold.
    fn dependencies(&self, name: &PackageName, extras: &[String]) -> Vec<&Requirement> {
        self.parsed
            .get(name)
            .map(|reqs| {
                reqs.iter()
                    .filter(|r| {
                        r.marker
                            .as_ref()
                            .is_none_or(|m| m.evaluate_with_extras(self.env, extras))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn node(
        &self,
        name: &PackageName,
        required_as: Option<&Requirement>,
        extras: &[String],
        path: &mut Vec<PackageName>,
    ) -> TreeNode {
        let dist = self.dists.get(name);
        let installed_version = dist.map(|d| d.version.clone());
        let satisfied = match (required_as, dist) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(req), Some(d)) => d
                .parsed_version()
                .is_some_and(|v| req.specifiers().contains(&v)),
        };
        let cycle = path.contains(name);
        let mut node = TreeNode {
            name: name.clone(),
            installed_version,
            required_as: required_as.map(ToString::to_string),
            extras: extras.to_vec(),
            satisfied,
            cycle,
            children: Vec::new(),
        };
        if cycle || dist.is_none() {
            return node;
        }
        path.push(name.clone());
        for req in self.dependencies(name, extras) {
            node.children
                .push(self.node(&req.name, Some(req), &req.extras, path));
        }
        path.pop();
        node
    }
}

/// Renders the tree as indented text, one package a line (`name==version`, then notes).
pub struct TreeDisplay<'a>(pub &'a [TreeNode]);

impl fmt::Display for TreeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn walk(node: &TreeNode, depth: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:indent$}", "", indent = depth * 2)?;
            if depth > 0 {
                f.write_str("- ")?;
            }
            match &node.installed_version {
                Some(v) => write!(f, "{}=={v}", node.name)?,
                None => write!(f, "{} (not installed)", node.name)?,
            }
            if let Some(req) = &node.required_as {
                write!(f, " [required: {req}]")?;
            }
            if !node.satisfied && node.installed_version.is_some() {
                f.write_str(" (conflict)")?;
            }
            if node.cycle {
                f.write_str(" (cycle)")?;
            }
            writeln!(f)?;
            for child in &node.children {
                walk(child, depth + 1, f)?;
            }
            Ok(())
        }
        for node in self.0 {
            walk(node, 0, f)?;
        }
        Ok(())
    }
}
