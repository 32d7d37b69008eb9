//! A background process's output files: written with a size cap (one rotated `.1` file is
//! kept), read back as a tail or followed as they grow.
//!
//! They live in the environment's `logs/`, which its command can change: every open goes
//! through [`Beneath`] on the environment's root (no symlink followed, regular files of one
//! name only, a FIFO never blocks, at most [`LOG_CAP`] bytes read), and the writer holds the
//! `logs/` directory open, so rotation renames within it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ptest_core::beneath::{self, Beneath};
use rustix::event::{PollFd, PollFlags, Timespec};

/// Size at which a log file is rotated to `<name>.1`.
pub const LOG_CAP: u64 = 10 * 1024 * 1024;

/// An append-only log file rotated at [`LOG_CAP`].
pub(crate) struct RotatingLog {
    /// The directory of the log, held open.
    dir: Beneath,
    name: PathBuf,
    file: File,
    size: u64,
}

/// Mode of new log files.
const LOG_MODE: u32 = 0o644;

impl RotatingLog {
    /// Opens the log at `path` beneath the environment root `root` for appending.
    pub(crate) fn open(root: &Path, path: &Path) -> beneath::Result<Self> {
        let root = Beneath::open(root)?;
        let rel = root.relative(path)?;
        let (dir, name) = match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) => (root.dir(parent)?, PathBuf::from(name)),
            _ => return Err(root.outside(rel)),
        };
        let file = dir.append(&name, LOG_MODE)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            dir,
            name,
            file,
            size,
        })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.size + bytes.len() as u64 > LOG_CAP && self.size > 0 {
            let mut old = self.name.clone().into_os_string();
            old.push(".1");
            self.dir.rename(&self.name, Path::new(&old))?;
            self.file = self.dir.append(&self.name, LOG_MODE)?;
            self.size = 0;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

/// Copies everything readable from `input` into the log at `path` until end-of-file, or until
/// `done` is set and nothing more is waiting: a process forked elsewhere in the same program
/// (another command's relay) may hold a copy of the write end long after the command is gone.
pub(crate) fn pump(mut input: File, log: RotatingLog, path: PathBuf, done: Arc<AtomicBool>) {
    // After a failed write (a full disk) the output is still read and dropped, so the command
    // does not block on a full pipe.
    let mut log = Some(log);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds = [PollFd::new(&input, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) if done.load(Ordering::Acquire) => return,
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        match input.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Some(l) = &mut log
                    && let Err(e) = l.write(&buf[..n])
                {
                    tracing::warn!("writing the output to {}: {e}", path.display());
                    log = None;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The last `n` lines of the log at `path` beneath the environment root `root` (all of its
/// last [`LOG_CAP`] bytes when `n` is `None`); empty when it does not exist. A log the
/// command replaced by a symlink, a FIFO or a hard link is refused, not read.
pub fn tail(root: &Path, path: &Path, n: Option<usize>) -> beneath::Result<String> {
    let root = Beneath::open(root)?;
    let text = match root.read_tail(root.relative(path)?, LOG_CAP) {
        Ok((bytes, _)) => bytes,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e),
    };
    let text = String::from_utf8_lossy(&text);
    Ok(match n {
        None => text.into_owned(),
        Some(n) => {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            lines[lines.len().saturating_sub(n)..].concat()
        }
    })
}

/// [`tail`], or the refusal in its place, for showing.
pub fn tail_or_refusal(root: &Path, path: &Path, n: Option<usize>) -> String {
    tail(root, path, n).unwrap_or_else(|e| format!("({e})\n"))
}

/// Reads what was appended to a log since the last call (starting at its current end, or
/// at its start), and notices rotation; opened beneath the environment root like [`tail`].
#[derive(Debug)]
pub struct Follower {
    root: PathBuf,
    path: PathBuf,
    offset: u64,
}

impl Follower {
    /// Follows `path` (beneath the environment root `root`) from byte `offset`.
    pub fn new(root: &Path, path: &Path, offset: u64) -> Self {
        Self {
            root: root.to_owned(),
            path: path.to_owned(),
            offset,
        }
    }

    /// The current size of `path` beneath `root` (0 when missing or refused).
    pub fn size(root: &Path, path: &Path) -> u64 {
        Beneath::open(root)
            .and_then(|r| r.open_regular(r.relative(path)?))
            .map_or(0, |(_, size)| size)
    }

    /// The bytes appended since the last call (at most [`LOG_CAP`]); a refusal when the log
    /// was replaced by something ptest does not read.
    pub fn read_new(&mut self) -> beneath::Result<Vec<u8>> {
        let root = Beneath::open(&self.root)?;
        let (mut file, len) = match root.open_regular(root.relative(&self.path)?) {
            Ok(opened) => opened,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if len < self.offset {
            self.offset = 0; // rotated
        }
        let mut out = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_ok() {
            let _ = file.take(LOG_CAP).read_to_end(&mut out);
        }
        self.offset += out.len() as u64;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_and_rotation_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("logs")).unwrap();
        let path = root.join("logs/p.log");
        let mut log = RotatingLog::open(root, &path).unwrap();
        log.write(b"a\nb\nc\n").unwrap();
        assert_eq!(tail(root, &path, Some(2)).unwrap(), "b\nc\n");
        log.size = LOG_CAP;
        log.write(b"d\n").unwrap();
        assert_eq!(tail(root, &path, None).unwrap(), "d\n");
        assert_eq!(
            tail(root, &root.join("logs/p.log.1"), None).unwrap(),
            "a\nb\nc\n"
        );
    }

    #[test]
    fn a_planted_log_link_is_neither_written_nor_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("logs")).unwrap();
        let canary = dir.path().join("canary");
        std::fs::write(&canary, "secret\n").unwrap();
        let path = root.join("logs/p.log");
        std::os::unix::fs::symlink(&canary, &path).unwrap();
        assert!(RotatingLog::open(&root, &path).is_err());
        let e = tail(&root, &path, None).unwrap_err();
        assert!(e.to_string().contains("logs/p.log is a symlink"), "{e}");
        assert!(Follower::new(&root, &path, 0).read_new().is_err());
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "secret\n");
    }
}
