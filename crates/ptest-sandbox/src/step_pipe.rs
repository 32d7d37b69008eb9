//! How a forked child tells its parent which step of its set-up failed: it writes one record,
//! (step, errno), on a close-on-exec pipe and `_exit`s; the parent reads end-of-file when the
//! child got through (its `execve` closed the write end, or it ended without a word). The
//! relay and the pod holder's children ([`crate::launch`]), the pod's set-up
//! ([`crate::pod`]) and the overlay's mount child ([`crate::overlay`]) all report this way;
//! each names its own steps.
//!
//! Both ends only make system calls on stack buffers (no allocation, no locks), so the write
//! end is usable between `fork` and `execve` and the read end in the pod holder.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Result};
use crate::sys::{self, Errno};

/// A record: a step number, then a value (an errno for a failure), little-endian.
const RECORD: usize = 8;

/// The exit code of a child that reported a failed step (the shell's "cannot execute").
const FAILED: i32 = 127;

/// The parent's end: the child's records, then end-of-file.
#[derive(Debug)]
pub(crate) struct StepReader(OwnedFd);

/// The child's end.
#[derive(Debug)]
pub(crate) struct StepWriter(OwnedFd);

/// A new pipe: the parent's end and the child's (both close-on-exec).
pub(crate) fn step_pipe() -> Result<(StepReader, StepWriter)> {
    raw_step_pipe().map_err(|e| Error::syscall("pipe2", io::Error::from_raw_os_error(e)))
}

/// [`step_pipe`] with a bare errno, for the pod holder, which must not allocate.
pub(crate) fn raw_step_pipe() -> std::result::Result<(StepReader, StepWriter), Errno> {
    let (r, w) = sys::pipe()?;
    // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
    unsafe {
        Ok((
            StepReader(OwnedFd::from_raw_fd(r)),
            StepWriter(OwnedFd::from_raw_fd(w)),
        ))
    }
}

impl StepReader {
    /// The next record, `None` at end-of-file. A record cut short (never seen: 8 bytes are
    /// written atomically to a pipe) is `EIO`. Async-signal-safe.
    pub(crate) fn next(&self) -> std::result::Result<Option<(u32, i32)>, Errno> {
        let mut rec = [0u8; RECORD];
        let mut got = 0;
        while got < RECORD {
            match sys::read(self.0.as_raw_fd(), &mut rec[got..])? {
                0 => break,
                n => got += n,
            }
        }
        match got {
            0 => Ok(None),
            RECORD => {
                let step = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
                let value = i32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
                Ok(Some((step, value)))
            }
            _ => Err(libc::EIO),
        }
    }
}

impl StepWriter {
    /// In the child: reports that `step` failed with `errno` and exits. Async-signal-safe.
    pub(crate) fn fail(&self, step: impl Into<u32>, errno: Errno) -> ! {
        self.send(step.into(), errno);
        sys::exit(FAILED)
    }

    /// In the child: a record that is not a failure (the pod's holder pid, its readiness).
    /// Async-signal-safe; a parent that is gone is not an error here.
    pub(crate) fn send(&self, step: u32, value: i32) {
        let mut rec = [0u8; RECORD];
        rec[..4].copy_from_slice(&step.to_le_bytes());
        rec[4..].copy_from_slice(&value.to_le_bytes());
        let _ = sys::write_all(self.0.as_raw_fd(), &rec);
    }
}

impl AsRawFd for StepWriter {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// A write end handed over across `execveat` (the pod holder's new image).
impl From<OwnedFd> for StepWriter {
    fn from(fd: OwnedFd) -> StepWriter {
        StepWriter(fd)
    }
}

impl From<StepWriter> for OwnedFd {
    fn from(writer: StepWriter) -> OwnedFd {
        writer.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_then_end_of_file() {
        let (reader, writer) = step_pipe().expect("a pipe");
        writer.send(3, libc::ENOENT);
        writer.send(u32::MAX, 4242);
        drop(writer);
        assert_eq!(reader.next(), Ok(Some((3, libc::ENOENT))));
        assert_eq!(reader.next(), Ok(Some((u32::MAX, 4242))));
        assert_eq!(reader.next(), Ok(None));
    }
}
