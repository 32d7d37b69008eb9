//! A background process's output files: written with a size cap (one rotated `.1` file is
//! kept), read back as a tail or followed as they grow.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::{PollFd, PollFlags, Timespec};

/// Size at which a log file is rotated to `<name>.1`.
pub const LOG_CAP: u64 = 10 * 1024 * 1024;

/// An append-only log file rotated at [`LOG_CAP`].
pub(crate) struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
}

impl RotatingLog {
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
        })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.size + bytes.len() as u64 > LOG_CAP && self.size > 0 {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, &old)?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
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
pub(crate) fn pump(mut input: File, path: PathBuf, done: Arc<AtomicBool>) {
    let Ok(mut log) = RotatingLog::open(&path) else {
        return;
    };
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
                if log.write(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The last `n` lines of the file at `path` (all of it when `n` is `None`); empty when it
/// does not exist.
pub fn tail(path: &Path, n: Option<usize>) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    match n {
        None => text.into_owned(),
        Some(n) => {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            lines[lines.len().saturating_sub(n)..].concat()
        }
    }
}

/// Reads what was appended to a file since the last call (starting at its current end, or
/// at its start), and notices rotation.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    offset: u64,
}

impl Follower {
    /// Follows `path` from byte `offset`.
    pub fn new(path: &Path, offset: u64) -> Self {
        Self {
            path: path.to_owned(),
            offset,
        }
    }

    /// The current size of `path` (0 when missing).
    pub fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// The bytes appended since the last call.
    pub fn read_new(&mut self) -> Vec<u8> {
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            self.offset = 0; // rotated
        }
        let mut out = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_ok() {
            let _ = file.read_to_end(&mut out);
        }
        self.offset += out.len() as u64;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_and_rotation_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.log");
        let mut log = RotatingLog::open(&path).unwrap();
        log.write(b"a\nb\nc\n").unwrap();
        assert_eq!(tail(&path, Some(2)), "b\nc\n");
        log.size = LOG_CAP;
        log.write(b"d\n").unwrap();
        assert_eq!(tail(&path, None), "d\n");
        assert_eq!(tail(&dir.path().join("p.log.1"), None), "a\nb\nc\n");
    }
}
