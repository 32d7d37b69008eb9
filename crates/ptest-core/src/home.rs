//! `PTEST_HOME`: where the state database, environment roots and caches live.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The directory holding `state.db`, `envs/` and `cache/`.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$PTEST_HOME`, else `$XDG_DATA_HOME/ptest`, else `~/.local/share/ptest`.
    pub fn from_env() -> Result<Self> {
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = var("PTEST_HOME")
            .or_else(|| var("XDG_DATA_HOME").map(|d| d.join("ptest")))
            .or_else(|| var("HOME").map(|h| h.join(".local/share/ptest")))
            .ok_or_else(|| {
                Error::Usage("cannot find a home for ptest: set PTEST_HOME or HOME".into())
            })?;
        Ok(Self::at(root))
    }

    /// A home at `root` (made absolute).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            root: std::path::absolute(&root).unwrap_or(root),
        }
    }

    /// Creates the directories if missing.
    pub fn ensure(&self) -> Result<()> {
        for dir in [self.root.clone(), self.envs_dir(), self.cache_dir()] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        }
        Ok(())
    }

    /// The home directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The state database.
    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// Where environment roots go unless `--path` is given.
    pub fn envs_dir(&self) -> PathBuf {
        self.root.join("envs")
    }

    /// Shared download and build caches.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// A short stable hash of the home's path (12 hex digits of its SHA-256): what host
    /// objects shared by its environments (a Docker network, a bridge) are named or labelled
    /// with, so that each home finds its own and never another's.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.root.as_os_str().as_encoded_bytes());
        digest[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}
