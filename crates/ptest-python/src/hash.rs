//! Content hash of an environment spec, for reusing a built venv: interpreter version and
//! real path, the requirements (normalized and sorted), and the constraints files' contents.
//! The hash keeps the list of inputs it was made from, so comparing two hashes says which
//! input changed and why an environment was rebuilt.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::interpreter::Interpreter;
use crate::pep::requirement::Requirement;

/// Bumped whenever the way inputs are written changes, so old hashes never match new ones.
const FORMAT: &str = "ptest-python spec v1";

/// One input of the hash: a key naming it and the value hashed for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HashInput {
    /// `python.version`, `python.path`, `requirement:<name>` or `constraints:<path>`.
    pub key: String,
    /// The value: the text itself, or for a file `sha256:<hex>` of its contents.
    pub value: String,
}

/// The hash of an environment spec with the inputs that made it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpecHash {
    /// Hex SHA-256 over the format tag and every input.
    pub digest: String,
    /// The inputs, sorted by key.
    pub inputs: Vec<HashInput>,
}

/// How one input differs between two hashes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InputChange {
    /// The input's key.
    pub key: String,
    /// The value before (`None`: the input is new).
    pub before: Option<String>,
    /// The value now (`None`: the input is gone).
    pub after: Option<String>,
}

impl fmt::Display for InputChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.before, &self.after) {
            (None, Some(after)) => write!(f, "{} added: {after}", self.key),
            (Some(before), None) => write!(f, "{} removed (was {before})", self.key),
            (Some(before), Some(after)) => write!(f, "{} changed: {before} -> {after}", self.key),
            (None, None) => write!(f, "{} unchanged", self.key),
        }
    }
}

impl SpecHash {
    /// Hashes a spec: `interpreter`'s version and real path, `requirements` (PEP 508 text, or
    /// paths/URLs kept as written; normalized and sorted, so order and spelling of names do
    /// not matter) and the contents of `constraint_files`.
    pub fn compute(
        interpreter: &Interpreter,
        requirements: &[String],
        constraint_files: &[PathBuf],
    ) -> Result<SpecHash> {
        let mut inputs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        inputs
            .entry("python.version".to_owned())
            .or_default()
            .push(interpreter.version.to_string());
        inputs
            .entry("python.path".to_owned())
            .or_default()
            .push(interpreter.path.display().to_string());
        for text in requirements {
            let (key, value) = match Requirement::parse(text) {
                Ok(req) => (
                    format!("requirement:{}", req.name),
                    normalized_requirement(&req),
                ),
                Err(_) => (
                    format!("requirement:{}", text.trim()),
                    text.trim().to_owned(),
                ),
            };
            inputs.entry(key).or_default().push(value);
        }
        for file in constraint_files {
            inputs
                .entry(format!("constraints:{}", file.display()))
                .or_default()
                .push(file_digest(file)?);
        }
        let inputs: Vec<HashInput> = inputs
            .into_iter()
            .map(|(key, mut values)| {
                values.sort();
                values.dedup();
                HashInput {
                    key,
                    value: values.join(" | "),
                }
            })
            .collect();
        let mut hasher = Sha256::new();
        hasher.update(FORMAT.as_bytes());
        for input in &inputs {
            hasher.update(b"\n");
            hasher.update(input.key.as_bytes());
            hasher.update(b"\0");
            hasher.update(input.value.as_bytes());
        }
        Ok(SpecHash {
            digest: hex(&hasher.finalize()),
            inputs,
        })
    }

    /// The first 16 hex digits, enough to name a cached environment.
    pub fn short(&self) -> &str {
        &self.digest[..16]
    }

    /// The inputs that differ from `previous`, by key: what made this hash differ from it.
    /// Empty exactly when the digests are equal.
    pub fn changes_since(&self, previous: &SpecHash) -> Vec<InputChange> {
        let before: BTreeMap<&str, &str> = previous
            .inputs
            .iter()
            .map(|i| (i.key.as_str(), i.value.as_str()))
            .collect();
        let after: BTreeMap<&str, &str> = self
            .inputs
            .iter()
            .map(|i| (i.key.as_str(), i.value.as_str()))
            .collect();
        let mut keys: Vec<&str> = before.keys().chain(after.keys()).copied().collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .filter_map(|key| {
                let (b, a) = (before.get(key), after.get(key));
                (b != a).then(|| InputChange {
                    key: key.to_owned(),
                    before: b.map(|s| (*s).to_owned()),
                    after: a.map(|s| (*s).to_owned()),
                })
            })
            .collect()
    }
}

impl fmt::Display for SpecHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.digest)
    }
}

/// `name[extras]specs; marker` with the normalized name and sorted extras and specifiers.
fn normalized_requirement(req: &Requirement) -> String {
    let mut normalized = req.clone();
    normalized.written_name = req.name.to_string();
    normalized.to_string()
}

fn file_digest(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(Error::io("reading constraints file", path))?;
    Ok(format!("sha256:{}", hex(&Sha256::digest(&bytes))))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
