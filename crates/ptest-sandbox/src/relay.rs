//! Running a command on the host, optionally in a cgroup and without namespaces
//! ([`spawn_in_cgroup`], the `low` level): the caller forks a relay, which joins the cgroup and
//! forks the command ([`Launch::exec`]), then waits for it, passes signals on to its process
//! group, ends that group if the caller dies, and ends the way the command did.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::capability::Capabilities;
use crate::cgroup::Cgroup;
use crate::child::SpawnedChild;
use crate::command::{CommandSpec, ExitStatus};
use crate::error::{Error, Result};
use crate::landlock::Ruleset;
use crate::launch::{Launch, Step, Strings, last_cap, spawn_error};
use crate::rlimit::Rlimits;
use crate::seccomp::Filter;
use crate::step_pipe::{StepReader, StepWriter, step_pipe};
use crate::sys;

/// Everything a relay and its command need, built before `fork`.
struct Prepared<'a> {
    strings: Strings,
    candidate_ptrs: Vec<*const libc::c_char>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    stdio: [Option<BorrowedFd<'a>>; 3],
    rlimits: Rlimits,
    no_new_privs: bool,
    caps: Option<(Capabilities, u32)>,
    landlock: Option<Ruleset>,
    seccomp: Option<Filter>,
    die_with_parent: bool,
    end_group_on_exit: bool,
    cgroup_fds: Vec<OwnedFd>,
}

/// Pointers to `strings`, NULL-terminated when `terminated`.
fn pointers(strings: &[CString], terminated: bool) -> Vec<*const libc::c_char> {
    let mut ptrs: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
    if terminated {
        ptrs.push(std::ptr::null());
    }
    ptrs
}

impl<'a> Prepared<'a> {
    fn new(spec: &'a CommandSpec, cgroup: Option<&Cgroup>) -> Result<Prepared<'a>> {
        let strings = Strings::new(spec)?;
        let mut cgroup_fds = Vec::new();
        if let Some(cg) = cgroup {
            for file in cg.procs_files() {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&file)
                    .map_err(|source| Error::CgroupIo {
                        action: "open",
                        path: file.clone(),
                        source,
                    })?;
                cgroup_fds.push(f.into());
            }
        }
        Ok(Prepared {
            candidate_ptrs: pointers(&strings.candidates, false),
            argv_ptrs: pointers(&strings.argv, true),
            envp_ptrs: pointers(&strings.envp, true),
            strings,
            stdio: [spec.stdin.fd(), spec.stdout.fd(), spec.stderr.fd()],
            rlimits: spec.rlimits,
            no_new_privs: spec.wants_no_new_privs(),
            landlock: spec
                .landlock
                .as_ref()
                .map(|rules| Ruleset::new(rules, None))
                .transpose()?,
            seccomp: spec.seccomp.map(Filter::new),
            caps: match spec.capabilities {
                Some(keep) => Some((keep, last_cap()?)),
                None => None,
            },
            die_with_parent: spec.die_with_parent,
            end_group_on_exit: spec.end_group_on_exit,
            cgroup_fds,
        })
    }

    /// In the child: join the cgroup by writing our pid to each `cgroup.procs`.
    fn join_cgroup(&self, report: &StepWriter) {
        for fd in &self.cgroup_fds {
            if let Err(e) = sys::write_own_pid(fd.as_raw_fd()) {
                report.fail(Step::JoinCgroup, e);
            }
        }
    }

    /// The command's part, for a child of `relay`.
    fn launch(&self, relay: libc::pid_t) -> Launch<'_> {
        Launch {
            candidates: &self.candidate_ptrs,
            argv: &self.argv_ptrs,
            envp: &self.envp_ptrs,
            cwd: &self.strings.cwd,
            stdio: self.stdio,
            rlimits: self.rlimits,
            no_new_privs: self.no_new_privs,
            caps: self.caps,
            landlock: self.landlock.as_ref().map(|r| r.as_fd()),
            seccomp: self.seccomp.as_ref(),
            die_with: self.die_with_parent.then_some(relay),
        }
    }
}

/// Waits for the relay's verdict: end-of-file means the command's `execve` succeeded.
fn collect(program: &str, relay: i32, reader: StepReader) -> Result<SpawnedChild> {
    let verdict = reader
        .next()
        .map_err(|e| Error::syscall("read spawn status pipe", io::Error::from_raw_os_error(e)))?;
    match verdict {
        None => Ok(SpawnedChild::from_relay(relay)),
        Some((step, errno)) => {
            // The relay failed; reap it so it does not linger as a zombie.
            let _ = sys::waitpid(relay, 0);
            Err(spawn_error(program, step, errno))
        }
    }
}

/// Runs a command on the host (no namespaces), in `cgroup` when given: joins the cgroup,
/// `setpgid`, rlimits, working directory, stdio, optional no_new_privs / capability drop, then
/// `execve`. This is the `low` security level. See [`SpawnedChild`] for the relay between the
/// caller and the command.
pub fn spawn_in_cgroup(spec: &CommandSpec, cgroup: Option<&Cgroup>) -> Result<SpawnedChild> {
    let prepared = Prepared::new(spec, cgroup)?;
    let (reader, writer) = step_pipe()?;
    let caller = sys::getpid();
    let pid = sys::fork().map_err(|e| Error::syscall("fork", io::Error::from_raw_os_error(e)))?;
    if pid == 0 {
        // Relay ("middle") process: async-signal-safe calls only from here on.
        let report = &writer;
        sys::reset_signals();
        if prepared.die_with_parent {
            // The relay learns of its caller's death by a signal it can catch, so that it
            // ends the command's whole process group, not just the command (see
            // `end_command_group`).
            sys::set_handler(RELAY_DEATH_SIGNAL, end_command_group);
            if let Err(e) = sys::set_pdeathsig(RELAY_DEATH_SIGNAL) {
                report.fail(Step::Pdeathsig, e);
            }
            if sys::getppid() != caller {
                sys::exit(137);
            }
        }
        prepared.join_cgroup(report);
        let relay_pid = sys::getpid();
        let child = match sys::fork() {
            Ok(c) => c,
            Err(e) => report.fail(Step::Fork, e),
        };
        if child == 0 {
            prepared.launch(relay_pid).exec(report);
        }
        // The relay never execs, so its CLOEXEC copies of the caller's descriptors would stay
        // open as long as the command runs: a file another thread of the caller was writing
        // at fork time would stay open for writing, and running it fails with ETXTBSY.
        // Closed before the status pipe (the caller goes on at its end-of-file), which is
        // closed last in case it is numbered below 3.
        let report = OwnedFd::from(writer).into_raw_fd();
        // SAFETY: the relay never returns to the code owning its descriptors (it ends in
        // `relay`), and the status pipe's write end is its own (taken from `writer`).
        unsafe {
            sys::close_from(3);
            sys::close(report);
        }
        GRANDCHILD.store(child, Ordering::Relaxed);
        for sig in FORWARDED {
            sys::set_handler(sig, forward_signal);
        }
        if prepared.end_group_on_exit && sys::wait_exited(child).is_ok() {
            let _ = sys::kill(-child, libc::SIGKILL);
        }
        let status = match sys::waitpid(child, 0) {
            Ok((_, status)) => status,
            Err(_) => sys::exit(125),
        };
        relay(status);
    }
    drop(writer);
    collect(&prepared.strings.program, pid, reader)
}

/// The grandchild the relay process waits for; read by the forwarding signal handler.
static GRANDCHILD: AtomicI32 = AtomicI32::new(0);

/// Passes `sig` on to the command's process group (the command leads it, as a shell's job
/// would), or to the command alone if it has left it.
extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = GRANDCHILD.load(Ordering::Relaxed);
    if pid > 0 && sys::kill(-pid, sig).is_err() {
        let _ = sys::kill(pid, sig);
    }
}

/// The parent-death signal of a relay: one the command is never sent otherwise.
const RELAY_DEATH_SIGNAL: libc::c_int = libc::SIGPWR;

/// Runs in the relay when its caller died (a SIGKILLed `ptest env exec`): kills the command's
/// process group (the command leads it), so what the command forked dies with it, then ends
/// the relay. Async-signal-safe: `kill` and `_exit` only.
extern "C" fn end_command_group(_sig: libc::c_int) {
    let pid = GRANDCHILD.load(Ordering::Relaxed);
    if pid > 0 {
        let _ = sys::kill(-pid, libc::SIGKILL);
        let _ = sys::kill(pid, libc::SIGKILL);
    }
    sys::exit(137);
}

const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Ends the relay process the way the command ended.
fn relay(status: i32) -> ! {
    match ExitStatus::from_raw(status) {
        ExitStatus::Signaled(sig) => {
            // No core dump from the relay, whatever the signal.
            let _ = sys::setrlimit(libc::RLIMIT_CORE, 0);
            sys::reset_signals();
            let _ = sys::kill(sys::getpid(), sig);
            sys::exit(128 + sig)
        }
        ExitStatus::Exited(code) => sys::exit(code),
    }
}
