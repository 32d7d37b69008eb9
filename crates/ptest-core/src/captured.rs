//! Captured output with bounded memory, whatever a command prints: the first
//! [`CAPTURE_LIMIT`] bytes of a stream stay in memory (they become the result's `stdout` or
//! `stderr`); past that, the whole stream goes to a file in the environment's `logs/`
//! (`exec-<id>.stdout.log`), and the result says `truncated` and where the file is.
//!
//! The file is made by ptest, on the host, in a tree the command can change: it is created
//! beneath the root's directory descriptor ([`crate::beneath`]: no symlink, no magic link, no
//! other mount followed, `O_EXCL`), so a planted `logs -> /etc` makes the capture fail
//! instead of writing a host file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bytes of each stream kept in memory: 8 MiB.
pub const CAPTURE_LIMIT: usize = 8 << 20;

/// One captured stream.
#[derive(Debug)]
pub struct BoundedOutput {
    head: Vec<u8>,
    root: PathBuf,
    name: String,
    spill: Option<(File, PathBuf)>,
    /// Why the spill file could not be written, when it could not (the rest is dropped).
    failed: Option<String>,
}

/// What a stream left: its head as text, and the file holding all of it when it was longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The first [`CAPTURE_LIMIT`] bytes, as text (invalid UTF-8 replaced).
    pub text: String,
    /// Whether the stream was longer than that.
    pub truncated: bool,
    /// The whole stream, when it was truncated and the file could be written.
    pub file: Option<PathBuf>,
}

impl BoundedOutput {
    /// A stream of a command in the environment rooted at `root`; `name` names its file
    /// (`exec-<id>.stdout.log`) should it overflow.
    pub fn new(root: &Path, name: String) -> BoundedOutput {
        BoundedOutput {
            head: Vec::new(),
            root: root.to_owned(),
            name,
            spill: None,
            failed: None,
        }
    }

    /// Takes more of the stream.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.spill.is_none() && self.failed.is_none() {
            let room = CAPTURE_LIMIT - self.head.len();
            let take = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            if take == bytes.len() {
                return;
            }
            match spill_file(&self.root, &self.name) {
                Ok((mut file, path)) => match file.write_all(&self.head) {
                    Ok(()) => self.spill = Some((file, path)),
                    Err(e) => self.failed = Some(e.to_string()),
                },
                Err(e) => self.failed = Some(e),
            }
            bytes = &bytes[take..];
        }
        if let Some((file, _)) = &mut self.spill
            && let Err(e) = file.write_all(bytes)
        {
            self.failed = Some(e.to_string());
            self.spill = None;
        }
    }

    /// Whether more than [`CAPTURE_LIMIT`] bytes came.
    fn overflowed(&self) -> bool {
        self.spill.is_some() || self.failed.is_some()
    }

    /// The stream as it ended.
    pub fn finish(self) -> Captured {
        let truncated = self.overflowed();
        if let Some(why) = &self.failed {
            tracing::warn!(
                "output past {} MiB of {} was dropped: {why}",
                CAPTURE_LIMIT >> 20,
                self.name
            );
        }
        Captured {
            text: String::from_utf8_lossy(&self.head).into_owned(),
            truncated,
            file: self.spill.map(|(_, path)| path),
        }
    }
}

/// Creates `logs/<name>` beneath `root`, following nothing the environment's command made
/// (see [`crate::beneath`]).
fn spill_file(root: &Path, name: &str) -> Result<(File, PathBuf), String> {
    let rel = Path::new("logs").join(name);
    let file = crate::beneath::Beneath::open(root)
        .and_then(|dir| dir.create_new(&rel, 0o644))
        .map_err(|e| e.to_string())?;
    Ok((file, root.join(rel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        dir
    }

    #[test]
    fn a_short_stream_stays_in_memory() {
        let dir = root();
        let mut out = BoundedOutput::new(dir.path(), "x.log".into());
        out.push(b"hello ");
        out.push(b"world");
        let c = out.finish();
        assert_eq!(
            (c.text.as_str(), c.truncated, c.file),
            ("hello world", false, None)
        );
    }

    #[test]
    fn a_long_stream_keeps_its_head_and_spills_all_of_it() {
        let dir = root();
        let mut out = BoundedOutput::new(dir.path(), "x.log".into());
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..(CAPTURE_LIMIT >> 20) + 3 {
            out.push(&chunk);
        }
        let c = out.finish();
        assert!(c.truncated);
        assert_eq!(c.text.len(), CAPTURE_LIMIT);
        let file = c.file.unwrap();
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            (CAPTURE_LIMIT + (3 << 20)) as u64
        );
    }

    #[test]
    fn a_planted_logs_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("logs")).unwrap();
        let mut out = BoundedOutput::new(dir.path(), "x.log".into());
        out.push(&vec![b'a'; CAPTURE_LIMIT + 10]);
        let c = out.finish();
        assert!(c.truncated && c.file.is_none());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }
}
