//! Making the holder: [`Pod::create`] forks the first child (new session, cgroup, user
//! namespace when not root, the other namespaces), which forks the holder; the holder runs
//! the planned view ([`super::view`]) and starts serving commands ([`crate::zygote`]), in
//! this image or, when the caller opted in, in a fresh one ([`super::program`]). They report
//! over one [`crate::step_pipe`]: the holder's pid, then readiness or the step that failed.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use super::program;
use super::userns::{UserNsSetup, check_user_namespaces};
use super::view::build_ops;
use super::{NetworkMode, Pod, PodSpec};
use crate::error::{Error, Result};
use crate::landlock::{self, Ruleset};
use crate::procfs;
use crate::step_pipe::step_pipe;
use crate::sys;
use crate::zygote::Zygote;

/// Records on the step pipe that are not failures (every other step number names the op, or
/// the fixed step, that failed): the holder's pid, sent by the first child...
const HOLDER_PID: u32 = u32::MAX;
/// ...and the holder's readiness.
pub(super) const READY: u32 = u32::MAX - 1;
/// The re-executed holder could not start serving ([`program::serve_if_holder`]).
pub(super) const PROGRAM_FAILED: u32 = u32::MAX - 2;

/// Fixed steps of the first child and the holder, numbered after the ops.
const STEP_NAMES: [&str; 9] = [
    "setsid",
    "join cgroup",
    "unshare user namespace",
    "write uid/gid map",
    "unshare namespaces",
    "fork holder",
    "listen for commands on /dev/.ptest/exec.sock",
    "scope abstract Unix sockets (Landlock)",
    "re-execute the holder's program",
];

/// Where the holder serves commands: in the caller's image (forked), or in a fresh image of
/// the program that opted in ([`program`]).
enum Server {
    Here(Zygote),
    Exec(std::os::fd::BorrowedFd<'static>),
}

impl Pod {
    /// Creates the holder and waits until its namespaces and filesystem view are ready.
    ///
    /// Blocks for the set-up (a few milliseconds). Safe to call from a multi-threaded program:
    /// the children run only precomputed async-signal-safe system calls. A holder that dies
    /// during its set-up without reporting why (seen now and then under load) is started
    /// again, twice at most; a set-up step that fails is reported at once.
    pub fn create(spec: &PodSpec) -> Result<Pod> {
        let mut attempt = 1;
        loop {
            match Pod::create_once(spec) {
                Err(Error::HolderDiedEarly) if attempt < 3 => {
                    tracing::warn!(attempt, "pod holder died during set-up; starting it again");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One attempt of [`Pod::create`].
    fn create_once(spec: &PodSpec) -> Result<Pod> {
        let ops = build_ops(spec)?;
        let need_userns = !rustix::process::geteuid().is_root();
        let userns = if need_userns {
            check_user_namespaces()?;
            Some(UserNsSetup::new()?)
        } else {
            None
        };
        let mut flags =
            libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        if spec.network != NetworkMode::Host {
            flags |= libc::CLONE_NEWNET;
        }
        let cgroup_fds: Vec<OwnedFd> = match &spec.cgroup {
            Some(cg) => cg
                .procs_files()
                .into_iter()
                .map(|file| {
                    fs::OpenOptions::new()
                        .write(true)
                        .open(&file)
                        .map(OwnedFd::from)
                        .map_err(|source| Error::CgroupIo {
                            action: "open",
                            path: file,
                            source,
                        })
                })
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let devnull: OwnedFd = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| Error::syscall("open /dev/null", e))?
            .into();
        let (reader, writer) = step_pipe()?;
        // The holder keeps only the pipe, the cgroup files and the Landlock scope; every other
        // inherited descriptor is closed (it would otherwise hold the caller's sockets and
        // files open for its whole life). Sorted before fork.
        let scope = if spec.scope_abstract_sockets {
            Some(Ruleset::abstract_sockets_scoped()?)
        } else {
            None
        };
        let mut keep: Vec<RawFd> = cgroup_fds.iter().map(AsRawFd::as_raw_fd).collect();
        keep.push(writer.as_raw_fd());
        keep.extend(scope.as_ref().map(|r| r.as_fd().as_raw_fd()));
        let program = program::program();
        keep.extend(program.map(|p| p.as_raw_fd()));
        keep.sort_unstable();
        let n_ops = ops.len() as u32;
        // A holder that re-executes maps its buffers in its new image.
        let server = match program {
            Some(program) => Server::Exec(program),
            None => Server::Here(Zygote::new().map_err(|e| {
                Error::syscall(
                    "map the pod holder's buffers",
                    io::Error::from_raw_os_error(e),
                )
            })?),
        };

        let pid =
            sys::fork().map_err(|e| Error::syscall("fork", io::Error::from_raw_os_error(e)))?;
        if pid == 0 {
            // First child: async-signal-safe calls only from here on.
            let report = &writer;
            // SAFETY: this child never returns to the code owning its descriptors (it exits or
            // becomes the holder); it replaces its standard ones and closes all it does not keep.
            unsafe {
                for fd in 0..3 {
                    let _ = sys::dup2(devnull.as_fd(), fd);
                }
                sys::close_all_but(3, &keep);
            }
            sys::reset_signals();
            if let Err(e) = sys::setsid() {
                report.fail(n_ops, e);
            }
            for fd in &cgroup_fds {
                if let Err(e) = sys::write_own_pid(fd.as_raw_fd()) {
                    report.fail(n_ops + 1, e);
                }
                // SAFETY: this child never drops `cgroup_fds` (dropping the vector would free
                // memory); the file is used no more.
                unsafe { sys::close(fd.as_raw_fd()) };
            }
            if let Some(u) = &userns {
                if let Err(e) = sys::unshare(libc::CLONE_NEWUSER) {
                    report.fail(n_ops + 2, e);
                }
                if let Err(e) = u.apply() {
                    report.fail(n_ops + 3, e);
                }
            }
            if let Err(e) = sys::unshare(flags) {
                report.fail(n_ops + 4, e);
            }
            let holder = match sys::fork() {
                Ok(h) => h,
                Err(e) => report.fail(n_ops + 5, e),
            };
            if holder != 0 {
                report.send(HOLDER_PID, holder);
                sys::exit(0);
            }
            // The holder: PID 1 of the new PID namespace.
            for (i, op) in ops.iter().enumerate() {
                if let Err(e) = op.run() {
                    report.fail(i as u32, e);
                }
            }
            if let Some(ruleset) = scope {
                if let Err(e) = landlock::restrict_self(ruleset.as_fd()) {
                    report.fail(n_ops + 7, e);
                }
                // A descriptor only: dropping it frees nothing.
                drop(ruleset);
            }
            sys::set_signal_mask(&[libc::SIGCHLD], libc::SIG_BLOCK);
            let (listener, signals) = match Zygote::listen() {
                Ok(fds) => fds,
                Err(e) => report.fail(n_ops + 6, e),
            };
            match server {
                Server::Exec(program) => {
                    // SAFETY: this holder never returns to the code owning its descriptors: it
                    // becomes the new image or exits.
                    let e = unsafe { program::exec(program, listener, signals, report) };
                    report.fail(n_ops + 8, e)
                }
                Server::Here(zygote) => {
                    report.send(READY, 0);
                    drop(writer);
                    zygote.serve(listener, signals);
                }
            }
        }
        drop(server);
        drop(scope);
        drop(writer);
        drop(devnull);
        drop(cgroup_fds);
        let first_child = pid;
        let mut holder = None;
        let mut outcome: Option<Result<()>> = None;
        while outcome.is_none() {
            let (step, value) = match reader.next() {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(e) => {
                    outcome = Some(Err(Error::syscall(
                        "read pod readiness pipe",
                        io::Error::from_raw_os_error(e),
                    )));
                    break;
                }
            };
            match step {
                HOLDER_PID => holder = Some(value),
                READY => outcome = Some(Ok(())),
                PROGRAM_FAILED => {
                    outcome = Some(Err(Error::HolderSetup {
                        step: "map the pod holder's buffers".into(),
                        source: io::Error::from_raw_os_error(value),
                    }));
                }
                _ => {
                    let step = match ops.get(step as usize) {
                        Some(op) => op.describe(),
                        None => STEP_NAMES
                            .get((step - n_ops.min(step)) as usize)
                            .copied()
                            .unwrap_or("unknown")
                            .to_owned(),
                    };
                    outcome = Some(Err(Error::HolderSetup {
                        step,
                        source: io::Error::from_raw_os_error(value),
                    }));
                }
            }
        }
        let _ = sys::waitpid(first_child, 0);
        let outcome = outcome.unwrap_or(Err(Error::HolderDiedEarly));
        let holder = match (outcome, holder) {
            (Ok(()), Some(h)) => h,
            (Ok(()), None) => return Err(Error::HolderDiedEarly),
            (Err(e), h) => {
                if let Some(h) = h {
                    let _ = sys::kill(h, libc::SIGKILL);
                }
                return Err(e);
            }
        };
        let stat = procfs::stat(holder)
            .map_err(|e| Error::syscall(format!("read /proc/{holder}/stat"), e))?
            .ok_or(Error::HolderGone { pid: holder })?;
        tracing::debug!(holder, root = %spec.root.display(), "pod ready");
        Ok(Pod {
            holder_pid: holder,
            start_time: stat.start_time,
            cgroup: spec.cgroup.clone(),
        })
    }
}
