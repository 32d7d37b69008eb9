//! Reading process facts from `/proc`.

use std::fs;
use std::io;

/// What `/proc/<pid>/stat` says about a process: the one parser of that file in ptest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state (`R`, `S`, `Z`, ...; field 3).
    pub state: u8,
    /// Parent pid (field 4).
    pub ppid: u32,
    /// Process group (field 5).
    pub pgrp: i32,
    /// Session (field 6).
    pub session: i32,
    /// User-mode CPU time in clock ticks (field 14).
    pub utime: u64,
    /// Kernel-mode CPU time in clock ticks (field 15).
    pub stime: u64,
    /// Threads (field 20).
    pub threads: u64,
    /// Start time in clock ticks since boot (field 22): with the pid, names the process
    /// for as long as it lives and never another.
    pub start_time: u64,
    /// Resident set size in pages (field 24).
    pub rss_pages: u64,
}

impl ProcStat {
    /// Whether it is dead, waiting to be reaped (`Z`) or gone (`X`).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, b'Z' | b'X')
    }
}

/// Reads `/proc/<pid>/stat` (of the `/proc` this process sees); `Ok(None)` when no such
/// process exists.
pub fn stat(pid: i32) -> io::Result<Option<ProcStat>> {
    let text = match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    Ok(parse_stat(text.as_bytes()))
}

/// Parses the contents of `/proc/<pid>/stat` (those up to field 24 are enough). Allocates
/// nothing: the watchdog calls it in a forked child.
pub(crate) fn parse_stat(text: &[u8]) -> Option<ProcStat> {
    // The command name (field 2) may contain spaces and parentheses: fields after it start
    // behind the last ')', with field 3 (the state) first, so field n sits at index n - 3.
    let rest = &text[text.iter().rposition(|&b| b == b')')? + 1..];
    let mut fields = [""; 22];
    for (slot, field) in fields
        .iter_mut()
        .zip(std::str::from_utf8(rest).ok()?.split_ascii_whitespace())
    {
        *slot = field;
    }
    let field = |n: usize| fields[n - 3].parse().ok();
    Some(ProcStat {
        state: *fields[0].as_bytes().first()?,
        ppid: field(4)? as u32,
        pgrp: field(5)? as i32,
        session: field(6)? as i32,
        utime: field(14)?,
        stime: field(15)?,
        threads: field(20)?,
        start_time: field(22)?,
        rss_pages: field(24)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name_is_parsed() {
        let line = "42 (a) b (c)) S 1 42 43 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 98765 1000 10";
        assert_eq!(
            parse_stat(line.as_bytes()),
            Some(ProcStat {
                state: b'S',
                ppid: 1,
                pgrp: 42,
                session: 43,
                utime: 1,
                stime: 2,
                threads: 3,
                start_time: 98765,
                rss_pages: 10,
            })
        );
    }

    #[test]
    fn own_process_has_a_start_time() {
        let s = stat(std::process::id() as i32)
            .expect("read")
            .expect("exists");
        assert!(s.start_time > 0);
    }
}
