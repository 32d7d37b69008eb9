//! Finding Python interpreters: by version (`3.11`), by path, or by command name, with pyenv
//! shims resolved to the real binary without running them, and each binary's description
//! kept in a [`ProbeCache`] so that finding it again starts no Python.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use crate::error::{Error, Result, Tried, tail};
use crate::pep::marker::MarkerEnvironment;
use crate::pep::version::Version;
use crate::probe_cache::ProbeCache;

/// What interpreter the caller asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PythonRequest {
    /// Any Python 3: `python3`, then `python`, on `PATH`.
    Default,
    /// A version prefix: `3`, `3.11` or `3.11.7`.
    Version(Vec<u64>),
    /// An interpreter binary (or shim) at this path.
    Path(PathBuf),
    /// A command looked up on `PATH`, such as `python3.12` or `pypy3`.
    Command(String),
}

impl FromStr for PythonRequest {
    type Err = std::convert::Infallible;

    /// `""` is [`PythonRequest::Default`]; digits and dots a version; anything with a `/` a
    /// path; anything else a command name.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(PythonRequest::Default);
        }
        let numbers: Option<Vec<u64>> = s.split('.').map(|p| p.parse().ok()).collect();
        if let Some(numbers) = numbers
            && (1..=3).contains(&numbers.len())
        {
            return Ok(PythonRequest::Version(numbers));
        }
        if s.contains('/') {
            return Ok(PythonRequest::Path(PathBuf::from(s)));
        }
        Ok(PythonRequest::Command(s.to_owned()))
    }
}

impl fmt::Display for PythonRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PythonRequest::Default => f.write_str("python3"),
            PythonRequest::Version(v) => {
                let parts: Vec<String> = v.iter().map(u64::to_string).collect();
                f.write_str(&parts.join("."))
            }
            PythonRequest::Path(p) => write!(f, "{}", p.display()),
            PythonRequest::Command(c) => f.write_str(c),
        }
    }
}

/// A base Python interpreter, as it described itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Interpreter {
    /// The real binary (shims and symlinks resolved; for a venv's python, its base).
    pub path: PathBuf,
    /// `python_full_version`, e.g. `3.11.7`.
    pub version: Version,
    /// `sys.implementation.name`, e.g. `cpython`.
    pub implementation: String,
    /// `sys.base_prefix`: the installation the binary belongs to.
    pub base_prefix: PathBuf,
    /// The values environment markers are evaluated against.
    pub markers: MarkerEnvironment,
}

/// The script an interpreter runs to describe itself (Python 3 only).
const QUERY_SCRIPT: &str = r#"
import json, os, platform, sys
def full(info):
    v = "%d.%d.%d" % (info.major, info.minor, info.micro)
    if info.releaselevel != "final":
        v += info.releaselevel[0] + str(info.serial)
    return v
in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
exe = sys.executable
if in_venv:
    exe = getattr(sys, "_base_executable", None) or exe
print(json.dumps({
    "executable": exe,
    "in_venv": in_venv,
    "base_prefix": getattr(sys, "base_prefix", sys.prefix),
    "markers": {
        "implementation_name": sys.implementation.name,
        "implementation_version": full(sys.implementation.version),
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_python_implementation": platform.python_implementation(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    },
}))
"#;

#[derive(serde::Serialize, serde::Deserialize)]
struct QueryAnswer {
    executable: PathBuf,
    base_prefix: PathBuf,
    markers: MarkerEnvironment,
}

impl Interpreter {
    /// Finds an interpreter matching `request`, trying in order: for a version, `pythonX.Y`,
    /// `pythonX` and `python` on `PATH`, then pyenv's installed versions
    /// (`$PYENV_ROOT/versions/*`, newest first); for a command, that command on `PATH`; for a
    /// path, that path. A pyenv shim is resolved to the binary it would run (see
    /// [`crate::pyenv::resolve_shim`]); each candidate is then asked for its real binary and version.
    pub fn find(request: &PythonRequest) -> Result<Interpreter> {
        Interpreter::find_cached(request, &ProbeCache::none())
    }

    /// [`Interpreter::find`], with each candidate's answer taken from `cache` while the
    /// binary is unchanged (about 20 ms of Python start-up saved per candidate).
    pub fn find_cached(request: &PythonRequest, cache: &ProbeCache) -> Result<Interpreter> {
        let mut tried = Vec::new();
        let candidates: Vec<PathBuf> = match request {
            PythonRequest::Path(path) => vec![path.clone()],
            PythonRequest::Command(name) => on_path(name, &mut tried),
            PythonRequest::Default => {
                let mut found = on_path("python3", &mut tried);
                found.extend(on_path("python", &mut tried));
                found
            }
            PythonRequest::Version(numbers) => {
                let mut names = Vec::new();
                if numbers.len() >= 2 {
                    names.push(format!("python{}.{}", numbers[0], numbers[1]));
                }
                names.push(format!("python{}", numbers[0]));
                names.push("python".to_owned());
                let mut found: Vec<PathBuf> =
                    names.iter().flat_map(|n| on_path(n, &mut tried)).collect();
                found.extend(pyenv_candidates(numbers));
                found
            }
        };
        for candidate in candidates {
            let binary =
                crate::pyenv::resolve_shim(&candidate).unwrap_or_else(|| candidate.clone());
            // Kept only when the binary is the interpreter itself (or a venv's link to it): a
            // script in between, such as a shim only pyenv can resolve, may pick another one
            // next time without changing.
            let answer = cache.answer(
                "interpreter",
                &binary,
                &venv_configs(&binary),
                &kernel(),
                || ask(&binary),
                |answer, real| std::fs::canonicalize(&answer.executable).is_ok_and(|e| e == real),
            );
            match answer.and_then(|a| Interpreter::from_answer(&binary, a)) {
                Ok(interpreter) => {
                    if request_matches(request, &interpreter) {
                        tracing::debug!(candidate = %candidate.display(), path = %interpreter.path.display(), "found interpreter");
                        return Ok(interpreter);
                    }
                    tried.push(Tried {
                        candidate: candidate.display().to_string(),
                        reason: format!(
                            "is {} {} ({})",
                            interpreter.implementation,
                            interpreter.version,
                            interpreter.path.display()
                        ),
                    });
                }
                Err(err) => tried.push(Tried {
                    candidate: candidate.display().to_string(),
                    reason: match err {
                        Error::InterpreterQuery { reason, .. } => reason,
                        other => other.to_string(),
                    },
                }),
            }
        }
        Err(Error::InterpreterNotFound {
            request: request.to_string(),
            tried,
        })
    }

    /// Asks the interpreter at `path` (a binary, symlink, shim or venv python) to describe
    /// itself; one subprocess.
    pub fn query(path: &Path) -> Result<Interpreter> {
        Interpreter::from_answer(path, ask(path)?)
    }

    fn from_answer(path: &Path, answer: QueryAnswer) -> Result<Interpreter> {
        let version = Version::parse(&answer.markers.python_full_version).map_err(|e| {
            Error::InterpreterQuery {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        })?;
        let real = std::fs::canonicalize(&answer.executable).unwrap_or(answer.executable);
        Ok(Interpreter {
            path: real,
            version,
            implementation: answer.markers.implementation_name.clone(),
            base_prefix: answer.base_prefix,
            markers: answer.markers,
        })
    }

    /// `major.minor`, e.g. `3.11`.
    pub fn major_minor(&self) -> String {
        self.markers.python_version.clone()
    }
}

/// Runs the interpreter at `path` with the query script; one subprocess.
fn ask(path: &Path) -> Result<QueryAnswer> {
    let query_error = |reason: String| Error::InterpreterQuery {
        path: path.to_owned(),
        reason,
    };
    let output = Command::new(path)
        .arg("-I")
        .arg("-c")
        .arg(QUERY_SCRIPT)
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .output()
        .map_err(|e| query_error(format!("cannot run it: {e}")))?;
    if !output.status.success() {
        let stderr = tail(&output.stderr, 3);
        return Err(query_error(if stderr.is_empty() {
            format!("exited with {}", output.status)
        } else {
            stderr
        }));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| query_error(format!("unexpected answer ({e}); is it Python 3?")))
}

/// Where Python looks for a `pyvenv.cfg` when started as `binary` (beside it and one level
/// up): a venv's python answers for its base interpreter as that file says.
fn venv_configs(binary: &Path) -> Vec<PathBuf> {
    let Some(dir) = binary.parent() else {
        return Vec::new();
    };
    let mut files = vec![dir.join("pyvenv.cfg")];
    files.extend(dir.parent().map(|up| up.join("pyvenv.cfg")));
    files
}

/// The running kernel's release and version, which an interpreter reports in its markers
/// (`platform_release`, `platform_version`).
fn kernel() -> String {
    let read = |name: &str| {
        std::fs::read_to_string(Path::new("/proc/sys/kernel").join(name)).unwrap_or_default()
    };
    format!("{} {}", read("osrelease").trim(), read("version").trim())
}

fn request_matches(request: &PythonRequest, interpreter: &Interpreter) -> bool {
    match request {
        PythonRequest::Version(numbers) => numbers
            .iter()
            .enumerate()
            .all(|(i, n)| interpreter.version.release().get(i) == Some(n)),
        PythonRequest::Default => interpreter.version.release().first() == Some(&3),
        PythonRequest::Path(_) | PythonRequest::Command(_) => true,
    }
}

/// Every executable file named `name` on `PATH`, in `PATH` order.
fn on_path(name: &str, tried: &mut Vec<Tried>) -> Vec<PathBuf> {
    let found = find_on_path(name);
    if found.is_empty() {
        tried.push(Tried {
            candidate: name.to_owned(),
            reason: "not on PATH".to_owned(),
        });
    }
    found
}

/// Every executable file named `name` in the directories of `PATH`.
pub(crate) fn find_on_path(name: &str) -> Vec<PathBuf> {
    let Some(path) = std::env::var_os("PATH") else {
        return Vec::new();
    };
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .filter(|candidate| is_executable(candidate))
        .collect()
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// pyenv's installed versions matching the prefix, newest first.
fn pyenv_candidates(numbers: &[u64]) -> Vec<PathBuf> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    let Some(root) = root else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(root.join("versions")) else {
        return Vec::new();
    };
    let mut versions: Vec<(Version, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = Version::parse(&entry.file_name().to_string_lossy()).ok()?;
            let matches = numbers
                .iter()
                .enumerate()
                .all(|(i, n)| version.release().get(i) == Some(n));
            if !matches {
                return None;
            }
            let bin = entry.path().join("bin");
            let release = version.release();
            let name = match release {
                [major, minor, ..] => format!("python{major}.{minor}"),
                _ => "python3".to_owned(),
            };
            let binary = [bin.join(name), bin.join("python3"), bin.join("python")]
                .into_iter()
                .find(|p| is_executable(p))?;
            Some((version, binary))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, path)| path).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        let parse = |s: &str| s.parse::<PythonRequest>().expect("infallible");
        assert_eq!(parse(""), PythonRequest::Default);
        assert_eq!(parse("3.11"), PythonRequest::Version(vec![3, 11]));
        assert_eq!(parse("3"), PythonRequest::Version(vec![3]));
        assert_eq!(
            parse("/usr/bin/python3"),
            PythonRequest::Path("/usr/bin/python3".into())
        );
        assert_eq!(parse("pypy3"), PythonRequest::Command("pypy3".into()));
        assert_eq!(
            parse("python3.12"),
            PythonRequest::Command("python3.12".into())
        );
    }
}
