//! A host control socket handed to an environment on request (`--expose-socket`): pods get a
//! fresh `/run` without the host's sockets (docker.sock, containerd, dbus), so a test that
//! drives one of them must ask for it by path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An absolute, normalised host path of a Unix socket to show inside an environment at the
/// same path. Whether a socket is there is checked when the environment is created.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExposedSocket(PathBuf);

impl ExposedSocket {
    /// The socket's host path (also its path inside the environment).
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl FromStr for ExposedSocket {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let path = Path::new(s);
        // Checked on the text: `Path::components` drops `.` and repeated slashes.
        let clean = s.starts_with('/')
            && s.len() > 1
            && s[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !clean {
            return Err(format!(
                "invalid socket path {s:?}: give the socket's absolute host path without . or .. \
                 (e.g. /var/run/docker.sock)"
            ));
        }
        Ok(ExposedSocket(path.to_owned()))
    }
}

impl TryFrom<String> for ExposedSocket {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ExposedSocket> for String {
    fn from(s: ExposedSocket) -> String {
        s.0.display().to_string()
    }
}

impl fmt::Display for ExposedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_absolute_paths_are_sockets() {
        assert_eq!(
            "/var/run/docker.sock"
                .parse::<ExposedSocket>()
                .unwrap()
                .path(),
            Path::new("/var/run/docker.sock")
        );
        for bad in [
            "docker.sock",
            "/",
            "/run/../etc/x",
            "/run/./x",
            "/run//x",
            "/run/",
            "",
        ] {
            assert!(bad.parse::<ExposedSocket>().is_err(), "{bad}");
        }
    }
}
