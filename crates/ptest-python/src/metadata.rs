//! Installed distributions, read straight from `site-packages/*.dist-info/METADATA` with no
//! subprocess: `list`, `show` and `freeze` in Rust.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::pep::requirement::{PackageName, Requirement};
use crate::pep::version::Version;
use crate::venv::Venv;

/// Most bytes of a `METADATA` read (long descriptions included, real ones stay far below).
const METADATA_MAX: u64 = 32 << 20;
/// One installed distribution.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Distribution {
    /// The name normalized per PEP 503.
    pub name: PackageName,
    /// The name as the metadata spells it.
    pub display_name: String,
    /// The version as the metadata spells it.
    pub version: String,
    /// `Summary`, if any.
    pub summary: Option<String>,
    /// `Requires-Dist` lines as written.
    pub requires_dist: Vec<String>,
    /// `Provides-Extra` names.
    pub provides_extra: Vec<String>,
    /// `Requires-Python`, if any.
    pub requires_python: Option<String>,
    /// The `INSTALLER` file's content (`pip`, `uv`), if any.
    pub installer: Option<String>,
    /// The `site-packages` directory it is installed in.
    pub location: PathBuf,
    /// Its `.dist-info` directory.
    pub dist_info: PathBuf,
}

impl Distribution {
    /// The version parsed per PEP 440 (`None` for a legacy, non-PEP 440 version).
    pub fn parsed_version(&self) -> Option<Version> {
        Version::parse(&self.version).ok()
    }

    /// The `Requires-Dist` entries parsed; an entry that does not parse is returned as its
    /// error, so callers can report it instead of silently dropping it.
    pub fn requirements(
        &self,
    ) -> Vec<std::result::Result<Requirement, crate::error::RequirementError>> {
        self.requires_dist
            .iter()
            .map(|r| Requirement::parse(r))
            .collect()
    }

    /// Reads one `.dist-info` directory, beneath `anchor` (the venv), following no symlink.
    fn read(anchor: &Path, dist_info: &Path) -> Result<Distribution> {
        let metadata_path = dist_info.join("METADATA");
        let bytes = crate::regular::read(anchor, &metadata_path, METADATA_MAX)
            .map_err(Error::io("reading", &metadata_path))?;
        let text = String::from_utf8_lossy(&bytes);
        let headers = parse_headers(&text);
        let get = |key: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        let all = |key: &str| -> Vec<String> {
            headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
                .collect()
        };
        let missing = |field: &str| Error::Io {
            action: "reading",
            path: metadata_path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the METADATA has no {field} field"),
            ),
        };
        let display_name = get("Name").ok_or_else(|| missing("Name"))?;
        let version = get("Version").ok_or_else(|| missing("Version"))?;
        let installer = crate::regular::read_to_string(anchor, &dist_info.join("INSTALLER"), 1024)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        Ok(Distribution {
            name: PackageName::new(&display_name),
            display_name,
            version,
            summary: get("Summary").filter(|s| !s.is_empty() && s != "UNKNOWN"),
            requires_dist: all("Requires-Dist"),
            provides_extra: all("Provides-Extra"),
            requires_python: get("Requires-Python"),
            installer,
            location: dist_info
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            dist_info: dist_info.to_owned(),
        })
    }
}

/// RFC 822-style headers up to the first blank line; continuation lines are joined.
fn parse_headers(text: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            headers.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    headers
}

/// Every distribution with a `.dist-info` directory in the venv's `site-packages`, sorted by
/// normalized name, read beneath the venv without following anything its command planted. A
/// `.dist-info` without readable `Name`/`Version` is skipped with a warning, as pip skips it.
pub fn installed(venv: &Venv) -> Result<Vec<Distribution>> {
    let site_packages = venv.site_packages();
    // pip removes an emptied `site-packages` when it uninstalls the last distribution.
    let names = match crate::regular::subdirs(venv.root(), site_packages) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        other => other.map_err(Error::io("listing", site_packages))?,
    };
    let mut dists = Vec::new();
    for name in names {
        let path = site_packages.join(name);
        if path.extension().is_none_or(|e| e != "dist-info") {
            continue;
        }
        match Distribution::read(venv.root(), &path) {
            Ok(dist) => dists.push(dist),
            Err(err) => tracing::warn!(%err, "skipping unreadable distribution"),
        }
    }
    dists.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(dists)
}

/// The installed distribution called `name` (any spelling), if any.
pub fn show(venv: &Venv, name: &str) -> Result<Option<Distribution>> {
    let wanted = PackageName::new(name);
    Ok(installed(venv)?.into_iter().find(|d| d.name == wanted))
}

/// `name==version` lines, sorted by name (normalized names).
pub fn freeze(venv: &Venv) -> Result<Vec<String>> {
    Ok(installed(venv)?
        .iter()
        .map(|d| format!("{}=={}", d.name, d.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_with_continuations_and_stops_at_body() {
        let text = "Metadata-Version: 2.1\nName: Demo_Pkg\nVersion: 1.0\nSummary: A demo\nRequires-Dist: a>=1\nRequires-Dist: b ; extra == 'x'\nLicense: line one\n        line two\n\nRequires-Dist: not-a-header\n";
        let headers = parse_headers(text);
        let requires: Vec<&str> = headers
            .iter()
            .filter(|(k, _)| k == "Requires-Dist")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(requires, vec!["a>=1", "b ; extra == 'x'"]);
        let license = headers
            .iter()
            .find(|(k, _)| k == "License")
            .map(|(_, v)| v.as_str());
        assert_eq!(license, Some("line one\nline two"));
    }
}
