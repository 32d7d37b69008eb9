//! Answers of slow probes (an interpreter describing itself, `uv --version`), kept on disk
//! per binary so that creating an environment starts no subprocess just to learn them again.
//!
//! An answer is trusted only while everything it came from is unchanged: the binary as
//! named and the real file it resolves to (device, inode, size, modification and change
//! times), the files the caller says it also depends on (present or absent, and their state),
//! and a context string (for interpreters: the running kernel, which shows in the markers).
//! Anything else means probing again. The caller says which answers may be kept at all: one
//! that depends on more than those files (a wrapper script that runs another program, whose
//! choice may change while the script does not) is never saved. A cache that cannot be read
//! or written only costs the probe: it never fails the caller.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::Result;

/// Bumped when the entry layout changes, so older entries are probed again.
const FORMAT: u32 = 1;

/// A directory of probe answers, shared by every process using the same directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCache {
    /// `None`: keep nothing, probe every time.
    dir: Option<PathBuf>,
}

/// The state of one file an answer depends on; `None` fields mean absent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct FileState {
    path: PathBuf,
    real: Option<PathBuf>,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileState {
    fn of(path: &Path) -> FileState {
        let real = std::fs::canonicalize(path).ok();
        let meta = real.as_deref().and_then(|r| std::fs::metadata(r).ok());
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileState {
            path: path.to_owned(),
            dev: meta.as_ref().map_or(0, |m| m.dev()),
            ino: meta.as_ref().map_or(0, |m| m.ino()),
            size: meta.as_ref().map_or(0, |m| m.size()),
            mtime_ns: meta.as_ref().map_or(0, |m| ns(m.mtime(), m.mtime_nsec())),
            ctime_ns: meta.as_ref().map_or(0, |m| ns(m.ctime(), m.ctime_nsec())),
            real: meta.and(real),
        }
    }
}

/// Everything an answer was made from; equal stamps mean the answer still holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    format: u32,
    kind: String,
    context: String,
    files: Vec<FileState>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry<T> {
    stamp: Stamp,
    answer: T,
}

impl ProbeCache {
    /// A cache in `dir` (created when the first answer is saved).
    pub fn new(dir: &Path) -> ProbeCache {
        ProbeCache {
            dir: Some(dir.to_owned()),
        }
    }

    /// A cache that keeps nothing, for callers that want every answer fresh.
    pub fn none() -> ProbeCache {
        ProbeCache { dir: None }
    }

    /// The saved answer of probe `kind` for `binary`, if `binary`, `depends_on` and `context`
    /// are as they were when it was saved; otherwise runs `probe` and saves what it answers
    /// when `keep` says the answer depends on nothing else (it gets the answer and the real
    /// path of `binary`). A failed probe is not saved.
    pub(crate) fn answer<T: Serialize + DeserializeOwned>(
        &self,
        kind: &str,
        binary: &Path,
        depends_on: &[PathBuf],
        context: &str,
        probe: impl FnOnce() -> Result<T>,
        keep: impl FnOnce(&T, &Path) -> bool,
    ) -> Result<T> {
        let Some(dir) = &self.dir else {
            return probe();
        };
        // Taken before probing: a binary replaced while it is probed is probed again next time.
        let stamp = Stamp {
            format: FORMAT,
            kind: kind.to_owned(),
            context: context.to_owned(),
            files: std::iter::once(binary)
                .chain(depends_on.iter().map(PathBuf::as_path))
                .map(FileState::of)
                .collect(),
        };
        let file = entry_path(dir, kind, binary);
        if let Some(answer) = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Entry<T>>(&bytes).ok())
            .filter(|entry| entry.stamp == stamp)
            .map(|entry| entry.answer)
        {
            tracing::debug!(kind, binary = %binary.display(), "probe answered from cache");
            return Ok(answer);
        }
        let answer = probe()?;
        if let Some(real) = &stamp.files[0].real
            && keep(&answer, real)
        {
            let entry = Entry { stamp, answer };
            if let Err(e) = save(dir, &file, &entry) {
                tracing::debug!(error = %e, file = %file.display(), "could not save a probe answer");
            }
            return Ok(entry.answer);
        }
        Ok(answer)
    }
}

/// `<kind>-<hash of the binary's name>.json`: one entry per binary as named.
fn entry_path(dir: &Path, kind: &str, binary: &Path) -> PathBuf {
    let digest = Sha256::digest(binary.as_os_str().as_encoded_bytes());
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{kind}-{short}.json"))
}

/// Written aside and renamed, so a reader never sees half an entry.
fn save<T: Serialize>(dir: &Path, file: &Path, entry: &Entry<T>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let staging = file.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&staging, serde_json::to_vec(entry)?)?;
    std::fs::rename(&staging, file).inspect_err(|_| {
        let _ = std::fs::remove_file(&staging);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn answers_again_only_while_the_binary_is_unchanged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = ProbeCache::new(&dir.path().join("cache"));
        let binary = dir.path().join("tool");
        std::fs::write(&binary, "one").expect("write");
        let runs = Cell::new(0);
        let ask = |answer: &str| {
            cache
                .answer(
                    "t",
                    &binary,
                    &[],
                    "",
                    || {
                        runs.set(runs.get() + 1);
                        Ok(answer.to_owned())
                    },
                    |_, _| true,
                )
                .expect("probe")
        };
        assert_eq!(ask("first"), "first");
        assert_eq!(ask("second"), "first");
        assert_eq!(runs.get(), 1);
        std::fs::write(&binary, "two, longer").expect("write");
        assert_eq!(ask("third"), "third");
        assert_eq!(runs.get(), 2);
    }
}
