//! [`Watchdog`]: a small host process that kills another process, its process group and its
//! descendants when the handle to it is dropped or the process holding the handle dies, even
//! by `SIGKILL`.
//!
//! Some commands are started on ptest's behalf by a third party (a Docker exec is started by
//! the engine, not by ptest), so nothing ties their life to the program that asked for them:
//! kill that program and the command runs on. A watchdog is that tie. [`Watchdog::new`] opens
//! a pidfd for the target (naming it for good: no pid-reuse race), reads whether it leads a
//! process group, creates a pipe (close-on-exec, so no program the caller execs holds its
//! write end) and forks. The child keeps only the pipe's read end and the pidfd, moves into a
//! process group of its own (a terminal's Ctrl-C is not for it) and blocks in `read`.
//!
//! - End-of-file: every copy of the write end is closed, so the handle was dropped or its
//!   process died. The watchdog stops the target, its group and every descendant it finds in
//!   `/proc` (also one that left the group with `setsid`: found through the parent links
//!   while the target still lives, stopped so it forks no more), kills them all, and exits.
//! - One byte ([`Watchdog::disarm`]): the target ended as it should; the watchdog exits and
//!   kills nothing.
//!
//! Everything the child runs is async-signal-safe system calls on stack buffers (no
//! allocation, no locks), so a multi-threaded caller (a tokio runtime) may create watchdogs.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags, RawDir};
use rustix::io::fcntl_dupfd_cloexec;
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Pid, getpgid};

use crate::error::{Error, Result};
use crate::procfs;
use crate::sys;

/// The most descendants of the target a watchdog kills by pid (beyond its process group,
/// which one `kill` reaches whatever its size). A tree larger than this is a fork bomb the
/// group kill and the container or cgroup around it must deal with.
const MAX_TREE: usize = 1024;

/// A process that kills process X (and its group and descendants) when this handle is
/// dropped or the process that holds it dies.
///
/// Drop it to kill the target now; [`disarm`](Watchdog::disarm) it once the target has ended
/// normally. Either way the watchdog process is reaped before the call returns (it only has
/// a few system calls left to make).
#[derive(Debug)]
pub struct Watchdog {
    /// The watchdog process.
    pid: libc::pid_t,
    /// The pipe's write end; closing it is the order to kill.
    release: Option<OwnedFd>,
}

impl Watchdog {
    /// Starts a watchdog over host process `target`. Its process group is killed with it
    /// when `target` leads one (a shell job, a Docker exec); otherwise only it and its
    /// descendants are.
    ///
    /// Blocks for one `fork`: call it from a thread that may block, not an async task.
    ///
    /// The pidfd names whatever process has pid `target` now: a caller that learned the pid
    /// from elsewhere should check afterwards that its process still runs (then the pidfd is
    /// certainly it) and [`disarm`](Watchdog::disarm) the watchdog if not.
    pub fn new(target: u32) -> Result<Watchdog> {
        let target = libc::pid_t::try_from(target)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                Error::syscall("pidfd_open", io::Error::from_raw_os_error(libc::EINVAL))
            })?;
        let pidfd = sys::pidfd_open(target)
            .map_err(|e| Error::syscall("pidfd_open", io::Error::from_raw_os_error(e)))?;
        // A leader's group is killed along; any other group is not the target's own.
        let leads_group = Pid::from_raw(target)
            .and_then(|pid| getpgid(Some(pid)).ok())
            .is_some_and(|pgid| pgid.as_raw_nonzero().get() == target);
        let (read_end, write_end) = pipe_with(PipeFlags::CLOEXEC)
            .map_err(|e| Error::syscall("pipe2", io::Error::from(e)))?;
        let null = rustix::fs::open(c"/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::syscall("open /dev/null", io::Error::from(e)))?;
        // Above the standard descriptors, so that pointing those at /dev/null in the child
        // cannot overwrite them (a caller with stdin closed gets fd 0 from pipe2).
        let keep = [
            above_stdio(read_end)?,
            above_stdio(pidfd)?,
            above_stdio(null)?,
        ];
        let guarded = Guarded {
            read_end: keep[0].as_fd(),
            pidfd: keep[1].as_fd(),
            null: keep[2].as_fd(),
            target,
            leads_group,
        };
        let pid =
            sys::fork().map_err(|e| Error::syscall("fork", io::Error::from_raw_os_error(e)))?;
        if pid == 0 {
            // The watchdog: async-signal-safe calls only from here on.
            guarded.watch();
        }
        // The parent keeps only the write end; `keep` is closed here.
        drop(keep);
        Ok(Watchdog {
            pid,
            release: Some(write_end),
        })
    }

    /// The watchdog process's pid.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Ends the watchdog without killing anything: the target ended as it should. Blocks
    /// until the watchdog has exited (immediately).
    pub fn disarm(mut self) {
        if let Some(release) = self.release.take() {
            // A failed write (the watchdog is gone already) leaves nothing to disarm.
            let _ = sys::write_all(release.as_raw_fd(), b"x");
        }
        // `drop` closes nothing more and reaps the watchdog.
    }
}

impl Drop for Watchdog {
    /// Closes the write end (the watchdog kills the target) unless disarmed, and reaps the
    /// watchdog.
    fn drop(&mut self) {
        drop(self.release.take());
        let _ = sys::waitpid(self.pid, 0);
    }
}

/// What the forked watchdog needs, prepared before `fork`.
struct Guarded<'a> {
    read_end: BorrowedFd<'a>,
    pidfd: BorrowedFd<'a>,
    null: BorrowedFd<'a>,
    target: libc::pid_t,
    leads_group: bool,
}

impl Guarded<'_> {
    /// The watchdog's whole life, in the forked child.
    fn watch(&self) -> ! {
        sys::reset_signals();
        // Out of the caller's process group: a terminal's signals are for the caller.
        let _ = sys::setpgid_self();
        // Only the read end and the pidfd stay open: a copy of the caller's write end of
        // another watchdog (forked by another thread) would keep that one from seeing EOF.
        let mut keep = [self.read_end.as_raw_fd(), self.pidfd.as_raw_fd()];
        keep.sort_unstable();
        // SAFETY: the watchdog never returns to the code owning its descriptors (it ends in
        // `exit` below); all it uses are the two it keeps and /dev/null, which is above the
        // standard descriptors it replaces and is used before it is closed.
        unsafe {
            for fd in 0..3 {
                let _ = sys::dup2(self.null, fd);
            }
            sys::close_all_but(3, &keep);
        }
        let mut byte = [0u8; 1];
        let disarmed = matches!(sys::read(self.read_end.as_raw_fd(), &mut byte), Ok(n) if n > 0);
        if !disarmed {
            self.kill_tree();
        }
        sys::exit(0)
    }

    /// Stops the target, its group and its descendants, then kills them all.
    fn kill_tree(&self) {
        let alive = sys::pidfd_send_signal(self.pidfd, libc::SIGSTOP).is_ok();
        let group = self.leads_group && self.group_is_the_targets(alive);
        if group {
            let _ = sys::kill(-self.target, libc::SIGSTOP);
        }
        let mut tree = [0 as libc::pid_t; MAX_TREE];
        let mut found = 0;
        // A dead target's children were handed to a reaper (and its pid may name another
        // process now): only a live one's are its own.
        if alive {
            tree[0] = self.target;
            found = 1;
            // Stopped processes fork no more: a pass that finds nobody new finds the tree.
            loop {
                let before = found;
                found = descendants(&mut tree, found);
                if found == before || found == MAX_TREE {
                    break;
                }
            }
        }
        let _ = sys::pidfd_send_signal(self.pidfd, libc::SIGKILL);
        if group {
            let _ = sys::kill(-self.target, libc::SIGKILL);
        }
        for &pid in &tree[1..found.max(1)] {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
    }

    /// Whether process group `target` is still the one the target led: true while the target
    /// exists (zombie or not, its pid is taken); after it is reaped, true only if no process
    /// has its pid. The kernel never hands out a pid that is still some group's id, so a
    /// process with that pid means the old group emptied and the number went to someone else.
    fn group_is_the_targets(&self, alive: bool) -> bool {
        alive
            || sys::pidfd_send_signal(self.pidfd, 0).is_ok()
            || sys::kill(self.target, 0) == Err(libc::ESRCH)
    }
}

/// One pass over `/proc`: every process whose parent is among `tree[..found]` and that is not
/// there yet is stopped and added. Returns the new count. No allocation: rustix is given C
/// strings and a stack buffer for the directory entries.
fn descendants(tree: &mut [libc::pid_t; MAX_TREE], mut found: usize) -> usize {
    let Ok(proc) = rustix::fs::open(
        c"/proc",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return found;
    };
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let mut entries = RawDir::new(&proc, &mut buf);
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name().to_bytes_with_nul();
        let Some(pid) = parse_pid(name) else {
            continue;
        };
        if tree[..found].contains(&pid) {
            continue;
        }
        match parent_of(proc.as_fd(), name) {
            Some(ppid) if tree[..found].contains(&ppid) => {
                let _ = sys::kill(pid, libc::SIGSTOP);
                tree[found] = pid;
                found += 1;
                if found == MAX_TREE {
                    break;
                }
            }
            _ => {}
        }
    }
    found
}

/// The pid a `/proc` entry's NUL-terminated name spells, if it is one.
fn parse_pid(name: &[u8]) -> Option<libc::pid_t> {
    let digits = &name[..name.iter().position(|b| *b == 0)?];
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |n, d| n * 10 + libc::pid_t::from(d - b'0')),
    )
}

/// The parent pid of the process whose `/proc` entry is `name` (NUL-terminated), from its
/// `stat`.
fn parent_of(proc: BorrowedFd<'_>, name: &[u8]) -> Option<libc::pid_t> {
    let mut path = [0u8; 32];
    let len = name.iter().position(|b| *b == 0)?;
    let suffix = b"/stat\0";
    path.get_mut(..len)?.copy_from_slice(&name[..len]);
    path.get_mut(len..len + suffix.len())?
        .copy_from_slice(suffix);
    let path = CStr::from_bytes_until_nul(&path).ok()?;
    let fd =
        rustix::fs::openat(proc, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut stat = [0u8; 1024];
    let read = sys::read(fd.as_raw_fd(), &mut stat);
    drop(fd);
    let stat = procfs::parse_stat(stat.get(..read.ok()?)?)?;
    libc::pid_t::try_from(stat.ppid).ok()
}

/// `fd` itself when it is above the standard descriptors, else a close-on-exec copy that is.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    fcntl_dupfd_cloexec(&fd, 3)
        .map_err(|e| Error::syscall("fcntl(F_DUPFD_CLOEXEC)", io::Error::from(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    /// `sh -c` in a process group of its own with a `setsid` sleep that left the group and a
    /// sleep in the group: sh and the pids of both sleeps.
    fn tree() -> (std::process::Child, [u32; 2]) {
        use std::io::BufRead;
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "setsid sleep 301 & echo $!; sleep 302 & echo $!; wait",
            ])
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut pid = || -> u32 {
            let line = lines.next().expect("sh prints a pid").expect("readable");
            line.trim().parse().expect("a pid")
        };
        let pids = [pid(), pid()];
        (child, pids)
    }

    /// Whether `pid` is gone (or a zombie waiting for its parent) within 10 s.
    fn gone(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match crate::procfs::stat(pid as i32) {
                Ok(Some(stat)) if !stat.is_dead() => {}
                _ => return true,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn alive(pid: u32) -> bool {
        // Signal 0 only checks that the process exists.
        sys::kill(pid as i32, 0).is_ok()
    }

    #[test]
    fn dropping_the_handle_kills_the_group_and_a_descendant_that_left_it() {
        let (mut sh, [escaped, member]) = tree();
        let watchdog = Watchdog::new(sh.id()).unwrap();
        drop(watchdog);
        let status = sh.wait().unwrap();
        assert!(!status.success(), "{status:?}");
        assert!(gone(escaped), "the setsid sleep {escaped} survived");
        assert!(gone(member), "the group's sleep {member} survived");
    }

    #[test]
    fn disarming_kills_nothing() {
        let (mut sh, [escaped, member]) = tree();
        Watchdog::new(sh.id()).unwrap().disarm();
        assert!(sh.try_wait().unwrap().is_none(), "sh was killed");
        assert!(alive(escaped) && alive(member));
        // Clean up what the test started.
        for pid in [-(sh.id() as i32), escaped as i32] {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
        sh.wait().unwrap();
    }

    #[test]
    fn a_missing_target_is_an_error() {
        assert!(Watchdog::new(0).is_err());
        assert!(Watchdog::new(i32::MAX as u32).is_err());
    }
}
