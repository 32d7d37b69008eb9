//! Per-process resource limits applied in a child just before `execve`.

use crate::sys::{self, Errno};

/// Resource limits (soft = hard) set on a command before it starts. `None` keeps the inherited
/// limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rlimits {
    /// `RLIMIT_NOFILE`: highest file descriptor number + 1 the command may open.
    pub open_files: Option<u64>,
    /// `RLIMIT_FSIZE`: largest file, in bytes, the command may write (beyond it: `SIGXFSZ`, or
    /// `EFBIG` when the signal is ignored).
    pub file_size: Option<u64>,
}

impl Rlimits {
    /// Applies the limits to the calling process. Async-signal-safe (only `setrlimit`), so it is
    /// safe between `fork` and `execve`.
    pub(crate) fn apply(&self) -> Result<(), Errno> {
        if let Some(n) = self.open_files {
            sys::setrlimit(libc::RLIMIT_NOFILE, n)?;
        }
        if let Some(n) = self.file_size {
            sys::setrlimit(libc::RLIMIT_FSIZE, n)?;
        }
        Ok(())
    }

    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        self.open_files.is_none() && self.file_size.is_none()
    }
}
