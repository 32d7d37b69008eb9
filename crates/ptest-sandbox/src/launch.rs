//! The fork/exec core both starters share: a relay's child on the host ([`crate::relay`]) and
//! the pod holder's child ([`crate::zygote`]) run the same [`Launch::exec`] between `fork`
//! and `execve`, over [`Strings`] prepared before the fork, and name a failing [`Step`] the
//! same way. Kept apart from both so that neither depends on the other.
//!
//! Everything the child needs (argv, environment, program candidates) is prepared before
//! `fork`; between `fork` and `execve` only async-signal-safe system calls run, so this is safe
//! to use from a multi-threaded (tokio) program.

use std::ffi::{CStr, CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use crate::capability::Capabilities;
use crate::command::CommandSpec;
use crate::error::{Error, Result};
use crate::landlock;
use crate::rlimit::Rlimits;
use crate::seccomp::Filter;
use crate::step_pipe::StepWriter;
use crate::sys;

/// Steps reported back when a child fails before `execve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    JoinCgroup,
    Request,
    Fork,
    Pdeathsig,
    Setpgid,
    Stdio,
    Chdir,
    Rlimits,
    NoNewPrivs,
    DropCaps,
    Landlock,
    Seccomp,
    Execve,
}

impl Step {
    const ALL: [Step; 13] = [
        Step::JoinCgroup,
        Step::Request,
        Step::Fork,
        Step::Pdeathsig,
        Step::Setpgid,
        Step::Stdio,
        Step::Chdir,
        Step::Rlimits,
        Step::NoNewPrivs,
        Step::DropCaps,
        Step::Landlock,
        Step::Seccomp,
        Step::Execve,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::JoinCgroup => "join cgroup",
            Step::Request => "hand the command to the pod holder",
            Step::Fork => "fork",
            Step::Pdeathsig => "set parent-death signal",
            Step::Setpgid => "setpgid",
            Step::Stdio => "set up stdin/stdout/stderr",
            Step::Chdir => "chdir to working directory",
            Step::Rlimits => "setrlimit",
            Step::NoNewPrivs => "set no_new_privs",
            Step::DropCaps => "limit capabilities",
            Step::Landlock => "enforce Landlock rules",
            Step::Seccomp => "install seccomp filter",
            Step::Execve => "execve",
        }
    }
}

impl From<Step> for u32 {
    fn from(step: Step) -> u32 {
        step as u32
    }
}

/// The error for a child that failed at step number `step` (as its [`StepWriter`] reported
/// it) with `errno`.
pub(crate) fn spawn_error(program: &str, step: u32, errno: sys::Errno) -> Error {
    let step = Step::ALL
        .get(step as usize)
        .copied()
        .unwrap_or(Step::Execve);
    Error::Spawn {
        program: program.into(),
        step: step.name(),
        source: io::Error::from_raw_os_error(errno),
    }
}

/// A command's strings, checked and NUL-terminated: what is sent to a pod holder, or pointed
/// at by a relay.
pub(crate) struct Strings {
    /// `argv[0]`, for messages.
    pub(crate) program: String,
    pub(crate) argv: Vec<CString>,
    /// `NAME=value` entries.
    pub(crate) envp: Vec<CString>,
    /// Paths to try in turn with `execve` (the `PATH` search, done in the child).
    pub(crate) candidates: Vec<CString>,
    pub(crate) cwd: CString,
}

impl Strings {
    pub(crate) fn new(spec: &CommandSpec) -> Result<Strings> {
        let Some(arg0) = spec.argv.first() else {
            return Err(Error::InvalidSpec {
                what: "argv",
                reason: "empty".into(),
            });
        };
        let program = arg0.to_string_lossy().into_owned();
        let argv = spec
            .argv
            .iter()
            .map(|a| sys::c_string("argv", a))
            .collect::<Result<Vec<_>>>()?;
        let mut envp = Vec::with_capacity(spec.env.len());
        let mut path_var = None;
        for (name, value) in &spec.env {
            if name.is_empty() || name.as_bytes().contains(&b'=') {
                return Err(Error::InvalidSpec {
                    what: "env",
                    reason: format!("bad variable name {name:?}"),
                });
            }
            if name == "PATH" {
                path_var = Some(value.clone());
            }
            let mut kv = name.clone();
            kv.push("=");
            kv.push(value);
            envp.push(sys::c_string("env", &kv)?);
        }
        let candidates = if arg0.as_bytes().contains(&b'/') {
            vec![sys::c_string("argv", arg0)?]
        } else {
            let Some(path_var) = path_var else {
                return Err(Error::InvalidSpec {
                    what: "argv",
                    reason: format!(
                        "{program:?} has no '/' and the environment has no PATH to search"
                    ),
                });
            };
            path_var
                .as_bytes()
                .split(|&b| b == b':')
                .map(|dir| {
                    let dir = if dir.is_empty() { &b"."[..] } else { dir };
                    let mut full = dir.to_vec();
                    full.push(b'/');
                    full.extend_from_slice(arg0.as_bytes());
                    sys::c_string("PATH", OsStr::from_bytes(&full))
                })
                .collect::<Result<Vec<_>>>()?
        };
        Ok(Strings {
            program,
            argv,
            envp,
            candidates,
            cwd: sys::c_string("cwd", spec.cwd.as_os_str())?,
        })
    }
}

/// `/proc/sys/kernel/cap_last_cap`: the highest capability number, to drop all others.
pub(crate) fn last_cap() -> Result<u32> {
    let text = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .map_err(|e| Error::syscall("read /proc/sys/kernel/cap_last_cap", e))?;
    text.trim().parse().map_err(|_| Error::InvalidSpec {
        what: "capabilities",
        reason: format!("/proc/sys/kernel/cap_last_cap holds {text:?}"),
    })
}

/// What the child that becomes the command does between `fork` and `execve`, over memory
/// prepared before `fork`: what a relay prepared ([`crate::relay`]), or a request the pod
/// holder parsed in place. Every pointer points at a NUL-terminated string that outlives the
/// child's `execve`.
pub(crate) struct Launch<'a> {
    /// Paths to `execve` in turn.
    pub(crate) candidates: &'a [*const libc::c_char],
    /// NULL-terminated.
    pub(crate) argv: &'a [*const libc::c_char],
    /// NULL-terminated.
    pub(crate) envp: &'a [*const libc::c_char],
    pub(crate) cwd: &'a CStr,
    /// Descriptors to become 0, 1 and 2; `None` keeps what the child has.
    pub(crate) stdio: [Option<BorrowedFd<'a>>; 3],
    pub(crate) rlimits: Rlimits,
    pub(crate) no_new_privs: bool,
    /// The capabilities to keep and `cap_last_cap`, when they are to be limited.
    pub(crate) caps: Option<(Capabilities, u32)>,
    /// A Landlock ruleset descriptor to enforce.
    pub(crate) landlock: Option<BorrowedFd<'a>>,
    pub(crate) seccomp: Option<&'a Filter>,
    /// Arm `PR_SET_PDEATHSIG` (SIGKILL) against this parent pid.
    pub(crate) die_with: Option<libc::pid_t>,
}

impl Launch<'_> {
    /// In the child that becomes the command: everything from the parent-death signal to
    /// `execve`. Async-signal-safe. A failing step is reported on `report`.
    pub(crate) fn exec(&self, report: &StepWriter) -> ! {
        if let Some(parent) = self.die_with {
            if let Err(e) = sys::set_pdeathsig(libc::SIGKILL) {
                report.fail(Step::Pdeathsig, e);
            }
            if sys::getppid() != parent {
                // The parent died before the death signal was armed.
                sys::exit(137);
            }
        }
        if let Err(e) = sys::setpgid_self() {
            report.fail(Step::Setpgid, e);
        }
        sys::reset_signals();
        // Move the sources out of the way first so that dup2 onto 0..2 cannot clobber a source
        // that happens to be numbered 0..2; the copies are CLOEXEC and vanish at execve.
        let mut moved = [None; 3];
        for (i, src) in self.stdio.iter().enumerate() {
            if let Some(fd) = src {
                match sys::dup_above(fd.as_fd(), 10) {
                    Ok(copy) => moved[i] = Some(copy),
                    Err(e) => report.fail(Step::Stdio, e),
                }
            }
        }
        for (i, copy) in moved.iter().enumerate() {
            if let Some(fd) = copy {
                // SAFETY: the copy was made just above and is this child's own (close-on-exec,
                // left open until execve); 0..2 belong to nothing else in a child about to exec.
                let moved = unsafe { BorrowedFd::borrow_raw(*fd) };
                // SAFETY: as just said, nothing else in this child uses descriptor `i`.
                if let Err(e) = unsafe { sys::dup2(moved, i as RawFd) } {
                    report.fail(Step::Stdio, e);
                }
            }
        }
        sys::cloexec_from(3);
        if let Err(e) = sys::chdir(self.cwd) {
            report.fail(Step::Chdir, e);
        }
        if let Err(e) = self.rlimits.apply() {
            report.fail(Step::Rlimits, e);
        }
        if self.no_new_privs
            && let Err(e) = sys::set_no_new_privs()
        {
            report.fail(Step::NoNewPrivs, e);
        }
        // Landlock and seccomp while CAP_SYS_ADMIN may still be held (a filter without
        // no_new_privs needs it), then the capabilities: nothing after that but execve.
        if let Some(ruleset) = self.landlock
            && let Err(e) = landlock::restrict_self(ruleset)
        {
            report.fail(Step::Landlock, e);
        }
        if let Some(filter) = self.seccomp
            && let Err(e) = filter.install()
        {
            report.fail(Step::Seccomp, e);
        }
        if let Some((keep, last)) = self.caps
            && let Err(e) = sys::limit_capabilities(keep.mask(), last)
        {
            report.fail(Step::DropCaps, e);
        }
        let mut err = libc::ENOENT;
        let mut saw_eacces = false;
        for &path in self.candidates {
            // SAFETY: every candidate points at a NUL-terminated string (see the type's docs);
            // from_ptr only measures it.
            err = sys::execve(unsafe { CStr::from_ptr(path) }, self.argv, self.envp);
            match err {
                libc::EACCES => saw_eacces = true,
                libc::ENOENT | libc::ENOTDIR => {}
                _ => break,
            }
        }
        if saw_eacces && (err == libc::ENOENT || err == libc::ENOTDIR) {
            err = libc::EACCES;
        }
        report.fail(Step::Execve, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_without_slash_needs_path() {
        let spec = CommandSpec::new(["true"]);
        let err = Strings::new(&spec).err().expect("no PATH must be rejected");
        assert!(err.to_string().contains("no PATH"), "{err}");
    }
}
