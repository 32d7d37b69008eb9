//! Starting a command: on the host in a cgroup ([`spawn_in_cgroup`]) or inside a pod
//! ([`crate::Pod::spawn`], which hands it to the pod holder, see [`crate::zygote`]).
//!
//! Everything the child needs (argv, environment, program candidates, cgroup file descriptors)
//! is prepared before `fork`; between `fork` and `execve` only async-signal-safe system calls
//! run ([`Launch::exec`], shared by the relay here and by the pod holder), so this is safe to
//! call from a multi-threaded (tokio) program.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::capability::Capabilities;
use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::landlock::{self, FsRules, Ruleset};
use crate::rlimit::Rlimits;
use crate::seccomp::{self, Filter};
use crate::sys;
use crate::zygote::Connection;

/// Where one of the command's standard streams comes from.
#[derive(Debug, Default)]
#[non_exhaustive]
pub enum Stdio {
    /// The caller's own fd 0/1/2.
    #[default]
    Inherit,
    /// This descriptor (duplicated into the child; the caller keeps its copy and should drop
    /// it after spawning, e.g. the write end of a pipe, so it sees end-of-file).
    Fd(OwnedFd),
}

impl Stdio {
    /// `/dev/null`, opened read-write.
    pub fn null() -> io::Result<Stdio> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        Ok(Stdio::Fd(f.into()))
    }

    pub(crate) fn raw(&self) -> Option<RawFd> {
        match self {
            Stdio::Inherit => None,
            Stdio::Fd(fd) => Some(fd.as_raw_fd()),
        }
    }
}

/// A command to run.
///
/// The environment is exactly `env` (nothing is inherited). `argv[0]` is searched in the `PATH`
/// entry of `env` unless it contains a `/`; without a `PATH` entry it must contain a `/`. Inside
/// a pod the search, like `cwd`, refers to the pod's filesystem view.
#[derive(Debug)]
pub struct CommandSpec {
    /// Program and arguments; must not be empty.
    pub argv: Vec<OsString>,
    /// The complete environment, as `(name, value)` pairs.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory (must exist in the view the command runs in).
    pub cwd: PathBuf,
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
    /// Resource limits set just before `execve`.
    pub rlimits: Rlimits,
    /// Set `PR_SET_NO_NEW_PRIVS`: setuid bits and file capabilities stop working.
    pub no_new_privs: bool,
    /// Limit the command's capabilities (bounding, permitted, effective, inheritable) to
    /// this set and clear its ambient set; `None` keeps what the spawner has.
    pub capabilities: Option<Capabilities>,
    /// Confine the command with Landlock to these rules (paths as the command sees them).
    /// Implies `no_new_privs`. Fails before `fork` when the kernel has no Landlock.
    pub landlock: Option<FsRules>,
    /// Install a seccomp filter (see [`seccomp::Profile`]): mounts, namespaces, modules, kexec,
    /// BPF, keyrings, ... answer `EPERM`. It is installed before the capabilities are limited,
    /// so [`Profile::Container`](seccomp::Profile::Container) needs no `no_new_privs`;
    /// [`Profile::Strict`](seccomp::Profile::Strict) implies it.
    pub seccomp: Option<seccomp::Profile>,
    /// Kill the command's whole process group (SIGKILL) when its caller goes away before it
    /// ends. Default `true`. In a pod that is when the [`SpawnedChild`] is dropped or the
    /// caller dies (the holder sees the connection hang up). On the host it is when the
    /// thread that spawned it exits (`PR_SET_PDEATHSIG` of the relay): spawn from a thread
    /// that lives as long as the command should (not a short-lived blocking-pool thread).
    pub die_with_parent: bool,
    /// Once the command exits, SIGKILL what it left in its process group, before it is reaped
    /// (so the group id cannot have been reused). Default `false`.
    pub end_group_on_exit: bool,
}

impl CommandSpec {
    /// A command with an empty environment, `/` as working directory, inherited stdio, no
    /// limits, `die_with_parent` on and `end_group_on_exit` off.
    pub fn new<I, S>(argv: I) -> CommandSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        CommandSpec {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            rlimits: Rlimits::default(),
            no_new_privs: false,
            capabilities: None,
            landlock: None,
            seccomp: None,
            die_with_parent: true,
            end_group_on_exit: false,
        }
    }

    /// Adds or replaces one environment variable.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> CommandSpec {
        let name = name.into();
        self.env.retain(|(n, _)| *n != name);
        self.env.push((name, value.into()));
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> CommandSpec {
        self.cwd = cwd.into();
        self
    }

    /// Whether `PR_SET_NO_NEW_PRIVS` is set: asked for, or implied by Landlock or the strict
    /// seccomp profile.
    pub(crate) fn wants_no_new_privs(&self) -> bool {
        self.no_new_privs
            || self.landlock.is_some()
            || self.seccomp == Some(seccomp::Profile::Strict)
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// Decodes a raw `waitpid` status: the command's own (a pod holder reports it as it reaped
    /// it), or a relay's, which ends the same way its command did (same exit code, or killed
    /// by the same signal), so the decoding is the usual one.
    pub fn from_raw(status: i32) -> ExitStatus {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        }
    }

    /// The exit code, if it exited.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Exited(c) => Some(c),
            ExitStatus::Signaled(_) => None,
        }
    }

    /// The signal, if it was killed by one.
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Signaled(s) => Some(s),
            ExitStatus::Exited(_) => None,
        }
    }

    /// Exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

/// A started command.
///
/// - From [`crate::Pod::spawn`] the command is a child of the pod holder, and this value is
///   the connection on which the holder reports how it ended. [`pid`](SpawnedChild::pid) is
///   the command's own, in the caller's PID namespace: signal it, or its process group, which
///   it leads. Dropping the value (or the caller dying) hangs the connection up: the holder
///   then SIGKILLs the command's process group, unless `die_with_parent` was off. If the pod
///   is destroyed while the command runs, the holder's death takes it along:
///   [`wait`](SpawnedChild::wait) reports SIGKILL.
/// - From [`spawn_in_cgroup`] the caller's child, and [`pid`](SpawnedChild::pid), is a relay
///   process that waits for the command and ends the same way. It exists so that something
///   outlives the caller long enough to end the command's process group when the caller dies
///   (`die_with_parent`); SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to it are
///   passed on to that group. The caller must reap it ([`wait`](SpawnedChild::wait)); the
///   value does not reap on drop.
#[derive(Debug)]
pub struct SpawnedChild {
    pid: i32,
    via: Via,
}

/// Where the command's end is learnt.
#[derive(Debug)]
enum Via {
    /// From the relay process, the caller's child, whose pid [`SpawnedChild::pid`] is.
    Relay,
    /// From the pod holder, on this connection.
    Holder(Connection),
}

impl SpawnedChild {
    pub(crate) fn from_holder(pid: i32, conn: Connection) -> SpawnedChild {
        SpawnedChild {
            pid,
            via: Via::Holder(conn),
        }
    }

    /// The pid to signal and to record: the command's in a pod, the relay's on the host.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Blocks until the command has ended (and, with `end_group_on_exit`, what it left in its
    /// process group was killed).
    pub fn wait(&self) -> Result<ExitStatus> {
        match &self.via {
            Via::Relay => sys::waitpid(self.pid, 0)
                .map(|(_, status)| ExitStatus::from_raw(status))
                .map_err(|e| {
                    Error::syscall(
                        format!("waitpid {}", self.pid),
                        io::Error::from_raw_os_error(e),
                    )
                }),
            Via::Holder(conn) => conn.wait(),
        }
    }

    /// How the command ended, if it has, without blocking.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        match &self.via {
            Via::Relay => match sys::waitpid(self.pid, libc::WNOHANG) {
                Ok((0, _)) => Ok(None),
                Ok((_, status)) => Ok(Some(ExitStatus::from_raw(status))),
                Err(e) => Err(Error::syscall(
                    format!("waitpid {}", self.pid),
                    io::Error::from_raw_os_error(e),
                )),
            },
            Via::Holder(conn) => conn.try_wait(),
        }
    }

    /// A descriptor that becomes readable once [`wait`](SpawnedChild::wait) would not block,
    /// for an async reactor: a copy of the connection to the pod holder, or a pidfd of the
    /// relay (`pidfd_open`, Linux 5.3+).
    pub fn exit_fd(&self) -> Result<OwnedFd> {
        match &self.via {
            Via::Relay => crate::sys::pidfd_open(self.pid).map_err(|e| {
                Error::syscall(
                    format!("pidfd_open {}", self.pid),
                    std::io::Error::from_raw_os_error(e),
                )
            }),
            Via::Holder(conn) => conn.try_clone(),
        }
    }
}

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

/// The error for a child that failed at step number `step` (as [`fail`] wrote it) with
/// `errno`.
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

/// Writes a failure record (step, errno) to the status pipe and exits with 127.
pub(crate) fn fail(err_fd: RawFd, step: Step, errno: sys::Errno) -> ! {
    let mut rec = [0u8; 8];
    rec[..4].copy_from_slice(&(step as u32).to_le_bytes());
    rec[4..].copy_from_slice(&errno.to_le_bytes());
    let _ = sys::write_all(err_fd, &rec);
    sys::exit(127)
}

/// Reads a child's verdict from the read end of its status pipe: `None` at end-of-file (the
/// write end closed by `execve`), else the step number and errno [`fail`] wrote.
/// Async-signal-safe.
pub(crate) fn read_verdict(
    fd: RawFd,
) -> std::result::Result<Option<(u32, sys::Errno)>, sys::Errno> {
    let mut rec = [0u8; 8];
    let mut got = 0;
    while got < rec.len() {
        match sys::read(fd, &mut rec[got..])? {
            0 => break,
            n => got += n,
        }
    }
    if got == 0 {
        return Ok(None);
    }
    let step = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
    let errno = i32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
    Ok(Some((step, errno)))
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

fn cstring(what: &'static str, s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| Error::InvalidSpec {
        what,
        reason: format!("{s:?} contains a NUL byte"),
    })
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
            .map(|a| cstring("argv", a))
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
            envp.push(cstring("env", &kv)?);
        }
        let candidates = if arg0.as_bytes().contains(&b'/') {
            vec![cstring("argv", arg0)?]
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
                    cstring("PATH", OsStr::from_bytes(&full))
                })
                .collect::<Result<Vec<_>>>()?
        };
        Ok(Strings {
            program,
            argv,
            envp,
            candidates,
            cwd: cstring("cwd", spec.cwd.as_os_str())?,
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
/// prepared before `fork`: a relay's [`Prepared`], or a request the pod holder parsed in
/// place. Every pointer points at a NUL-terminated string that outlives the child's `execve`.
pub(crate) struct Launch<'a> {
    /// Paths to `execve` in turn.
    pub(crate) candidates: &'a [*const libc::c_char],
    /// NULL-terminated.
    pub(crate) argv: &'a [*const libc::c_char],
    /// NULL-terminated.
    pub(crate) envp: &'a [*const libc::c_char],
    pub(crate) cwd: &'a CStr,
    /// Descriptors to become 0, 1 and 2; `None` keeps what the child has.
    pub(crate) stdio: [Option<RawFd>; 3],
    pub(crate) rlimits: Rlimits,
    pub(crate) no_new_privs: bool,
    /// The capabilities to keep and `cap_last_cap`, when they are to be limited.
    pub(crate) caps: Option<(Capabilities, u32)>,
    /// A Landlock ruleset descriptor to enforce.
    pub(crate) landlock: Option<RawFd>,
    pub(crate) seccomp: Option<&'a Filter>,
    /// Arm `PR_SET_PDEATHSIG` (SIGKILL) against this parent pid.
    pub(crate) die_with: Option<libc::pid_t>,
}

impl Launch<'_> {
    /// In the child that becomes the command: everything from the parent-death signal to
    /// `execve`. Async-signal-safe. A failing step is reported on `err_fd` (see [`fail`]).
    pub(crate) fn exec(&self, err_fd: RawFd) -> ! {
        if let Some(parent) = self.die_with {
            if let Err(e) = sys::set_pdeathsig(libc::SIGKILL) {
                fail(err_fd, Step::Pdeathsig, e);
            }
            if sys::getppid() != parent {
                // The parent died before the death signal was armed.
                sys::exit(137);
            }
        }
        if let Err(e) = sys::setpgid_self() {
            fail(err_fd, Step::Setpgid, e);
        }
        sys::reset_signals();
        // Move the sources out of the way first so that dup2 onto 0..2 cannot clobber a source
        // that happens to be numbered 0..2; the copies are CLOEXEC and vanish at execve.
        let mut moved = [None; 3];
        for (i, src) in self.stdio.iter().enumerate() {
            if let Some(fd) = src {
                match sys::dup_above(*fd, 10) {
                    Ok(copy) => moved[i] = Some(copy),
                    Err(e) => fail(err_fd, Step::Stdio, e),
                }
            }
        }
        for (i, copy) in moved.iter().enumerate() {
            if let Some(fd) = copy
                && let Err(e) = sys::dup2(*fd, i as RawFd)
            {
                fail(err_fd, Step::Stdio, e);
            }
        }
        sys::cloexec_from(3);
        if let Err(e) = sys::chdir(self.cwd) {
            fail(err_fd, Step::Chdir, e);
        }
        if let Err(e) = self.rlimits.apply() {
            fail(err_fd, Step::Rlimits, e);
        }
        if self.no_new_privs
            && let Err(e) = sys::set_no_new_privs()
        {
            fail(err_fd, Step::NoNewPrivs, e);
        }
        // Landlock and seccomp while CAP_SYS_ADMIN may still be held (a filter without
        // no_new_privs needs it), then the capabilities: nothing after that but execve.
        if let Some(ruleset) = self.landlock
            && let Err(e) = landlock::restrict_self(ruleset)
        {
            fail(err_fd, Step::Landlock, e);
        }
        if let Some(filter) = self.seccomp
            && let Err(e) = filter.install()
        {
            fail(err_fd, Step::Seccomp, e);
        }
        if let Some((keep, last)) = self.caps
            && let Err(e) = sys::limit_capabilities(keep.mask(), last)
        {
            fail(err_fd, Step::DropCaps, e);
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
        fail(err_fd, Step::Execve, err)
    }
}

/// Everything a relay and its command need, built before `fork`.
struct Prepared {
    strings: Strings,
    candidate_ptrs: Vec<*const libc::c_char>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    stdio: [Option<RawFd>; 3],
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

impl Prepared {
    fn new(spec: &CommandSpec, cgroup: Option<&Cgroup>) -> Result<Prepared> {
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
            stdio: [spec.stdin.raw(), spec.stdout.raw(), spec.stderr.raw()],
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
    fn join_cgroup(&self, err_fd: RawFd) {
        for fd in &self.cgroup_fds {
            if let Err(e) = sys::write_own_pid(fd.as_raw_fd()) {
                fail(err_fd, Step::JoinCgroup, e);
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
            landlock: self.landlock.as_ref().map(|r| r.as_fd().as_raw_fd()),
            seccomp: self.seccomp.as_ref(),
            die_with: self.die_with_parent.then_some(relay),
        }
    }
}

fn error_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) =
        sys::pipe().map_err(|e| Error::syscall("pipe2", io::Error::from_raw_os_error(e)))?;
    // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
    unsafe { Ok((OwnedFd::from_raw_fd(r), OwnedFd::from_raw_fd(w))) }
}

/// Waits for the relay's verdict: end-of-file means the command's `execve` succeeded.
fn collect(program: &str, relay: i32, reader: OwnedFd) -> Result<SpawnedChild> {
    let verdict = read_verdict(reader.as_raw_fd())
        .map_err(|e| Error::syscall("read spawn status pipe", io::Error::from_raw_os_error(e)))?;
    match verdict {
        None => Ok(SpawnedChild {
            pid: relay,
            via: Via::Relay,
        }),
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
    let (reader, writer) = error_pipe()?;
    let caller = sys::getpid();
    let pid = sys::fork().map_err(|e| Error::syscall("fork", io::Error::from_raw_os_error(e)))?;
    if pid == 0 {
        // Relay ("middle") process: async-signal-safe calls only from here on.
        let err_fd = writer.as_raw_fd();
        sys::reset_signals();
        if prepared.die_with_parent {
            // The relay learns of its caller's death by a signal it can catch, so that it
            // ends the command's whole process group, not just the command (see
            // `end_command_group`).
            sys::set_handler(RELAY_DEATH_SIGNAL, end_command_group);
            if let Err(e) = sys::set_pdeathsig(RELAY_DEATH_SIGNAL) {
                fail(err_fd, Step::Pdeathsig, e);
            }
            if sys::getppid() != caller {
                sys::exit(137);
            }
        }
        prepared.join_cgroup(err_fd);
        let relay_pid = sys::getpid();
        let child = match sys::fork() {
            Ok(c) => c,
            Err(e) => fail(err_fd, Step::Fork, e),
        };
        if child == 0 {
            prepared.launch(relay_pid).exec(err_fd);
        }
        // The relay never execs, so its CLOEXEC copies of the caller's descriptors would stay
        // open as long as the command runs: a file another thread of the caller was writing
        // at fork time would stay open for writing, and running it fails with ETXTBSY.
        // Closed before the status pipe (the caller goes on at its end-of-file), which is
        // closed last in case it is numbered below 3.
        sys::close_from(3);
        sys::close(err_fd);
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
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // No core dump from the relay, whatever the signal.
        let _ = sys::setrlimit(libc::RLIMIT_CORE, 0);
        sys::reset_signals();
        let _ = sys::kill(sys::getpid(), sig);
        sys::exit(128 + sig);
    }
    sys::exit(libc::WEXITSTATUS(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_decodes_code_and_signal() {
        assert_eq!(ExitStatus::from_raw(3 << 8), ExitStatus::Exited(3));
        assert_eq!(
            ExitStatus::from_raw(libc::SIGKILL),
            ExitStatus::Signaled(libc::SIGKILL)
        );
        assert!(ExitStatus::from_raw(0).success());
    }

    #[test]
    fn argv_without_slash_needs_path() {
        let spec = CommandSpec::new(["true"]);
        let err = Strings::new(&spec).err().expect("no PATH must be rejected");
        assert!(err.to_string().contains("no PATH"), "{err}");
    }
}
