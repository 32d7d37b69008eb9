//! Reading process facts from `/proc`.

use std::fs;
use std::io;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// One-letter state (`R`, `S`, `Z`, ...).
    pub(crate) state: u8,
    /// Start time in clock ticks since boot (field 22).
    pub(crate) start_time: u64,
}

/// Reads `/proc/<pid>/stat`; `Ok(None)` when no such process exists.
pub(crate) fn stat(pid: i32) -> io::Result<Option<ProcStat>> {
    let text = match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    Ok(parse_stat(&text))
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) may contain spaces and parentheses: fields after it start
    // behind the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = *fields.first()?.as_bytes().first()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name_is_parsed() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: b'S',
                start_time: 98765
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
