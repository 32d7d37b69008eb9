//! Starting a command: on the host in a cgroup ([`spawn_in_cgroup`]) or inside a pod
//! ([`crate::Pod::spawn`]).
//!
//! Everything the child needs (argv, environment, program candidates, namespace and cgroup file
//! descriptors) is prepared before `fork`; between `fork` and `execve` only async-signal-safe
//! system calls run, so this is safe to call from a multi-threaded (tokio) program.

use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::landlock::{FsRules, Ruleset};
use crate::rlimit::Rlimits;
use crate::seccomp::Filter;
use crate::sys;

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

    fn raw(&self) -> Option<RawFd> {
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
    /// Drop every capability (bounding, ambient, effective, permitted, inheritable).
    pub drop_capabilities: bool,
    /// Confine the command with Landlock to these rules (paths as the command sees them).
    /// Implies `no_new_privs`. Fails before `fork` when the kernel has no Landlock.
    pub landlock: Option<FsRules>,
    /// Install the deny-list seccomp filter (mounts, namespaces, modules, kexec, BPF, ptrace,
    /// keyrings, ... answer `EPERM`). Implies `no_new_privs`.
    pub seccomp: bool,
    /// Kill the command (SIGKILL) when the thread that spawned it exits (`PR_SET_PDEATHSIG`).
    /// Default `true`. Note it is the spawning *thread*, not process: spawn from a thread that
    /// lives as long as the command should (not a short-lived blocking-pool thread). The
    /// relay process that waits for the command (see [`SpawnedChild`]) then kills the
    /// command's whole process group, not only the command.
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
            drop_capabilities: false,
            landlock: None,
            seccomp: false,
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
    /// Decodes a raw `waitpid` status of the pid [`SpawnedChild::pid`] returns. For pod
    /// commands that pid is the relay process, which ends the same way the command did (same
    /// exit code, or killed by the same signal), so the decoding is the usual one.
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

/// A started command: a direct child of the caller.
///
/// The pid is a relay process (outside the pod's PID namespace for [`crate::Pod::spawn`]) that
/// waits for the command and ends the same way; signals SIGTERM, SIGINT, SIGHUP, SIGQUIT,
/// SIGUSR1 and SIGUSR2 sent to it are forwarded to the command, SIGKILL kills the command
/// through `PR_SET_PDEATHSIG` (when `die_with_parent`). The relay exists so that something
/// outlives the caller long enough to end the command's process group when the caller dies. The caller must reap it (`wait`, `waitpid` or a pidfd); the value does not
/// reap on drop.
#[derive(Debug)]
pub struct SpawnedChild {
    pid: i32,
}

impl SpawnedChild {
    /// The pid to wait for and signal.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Blocks until it ends and reaps it.
    pub fn wait(&self) -> Result<ExitStatus> {
        sys::waitpid(self.pid, 0)
            .map(|(_, status)| ExitStatus::from_raw(status))
            .map_err(|e| {
                Error::syscall(
                    format!("waitpid {}", self.pid),
                    io::Error::from_raw_os_error(e),
                )
            })
    }

    /// Reaps it if it has ended, without blocking.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        match sys::waitpid(self.pid, libc::WNOHANG) {
            Ok((0, _)) => Ok(None),
            Ok((_, status)) => Ok(Some(ExitStatus::from_raw(status))),
            Err(e) => Err(Error::syscall(
                format!("waitpid {}", self.pid),
                io::Error::from_raw_os_error(e),
            )),
        }
    }

    /// A pidfd for it (`pidfd_open`, Linux 5.3+), readable when it ends; usable with an async
    /// reactor.
    pub fn pidfd(&self) -> Result<OwnedFd> {
        // SAFETY: pidfd_open takes a pid and flags; on success it returns a new fd we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        if fd < 0 {
            return Err(Error::last_os(format!("pidfd_open {}", self.pid)));
        }
        // SAFETY: fd is a freshly created descriptor owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// Steps reported back to the parent when a child fails before `execve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Step {
    JoinCgroup,
    Setns,
    Chroot,
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
    const ALL: [Step; 14] = [
        Step::JoinCgroup,
        Step::Setns,
        Step::Chroot,
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
            Step::Setns => "setns",
            Step::Chroot => "chroot into pod root",
            Step::Fork => "fork into pid namespace",
            Step::Pdeathsig => "set parent-death signal",
            Step::Setpgid => "setpgid",
            Step::Stdio => "set up stdin/stdout/stderr",
            Step::Chdir => "chdir to working directory",
            Step::Rlimits => "setrlimit",
            Step::NoNewPrivs => "set no_new_privs",
            Step::DropCaps => "drop capabilities",
            Step::Landlock => "enforce Landlock rules",
            Step::Seccomp => "install seccomp filter",
            Step::Execve => "execve",
        }
    }
}

/// Writes a failure record to the error pipe and exits with 127.
fn fail(err_fd: RawFd, step: Step, errno: sys::Errno) -> ! {
    let mut rec = [0u8; 8];
    rec[..4].copy_from_slice(&(step as u32).to_le_bytes());
    rec[4..].copy_from_slice(&errno.to_le_bytes());
    let _ = sys::write_all(err_fd, &rec);
    sys::exit(127)
}

/// A namespace to join: fd of `/proc/<holder>/ns/<name>` and its `CLONE_NEW*` type.
pub(crate) struct NsFd {
    pub(crate) fd: OwnedFd,
    pub(crate) nstype: libc::c_int,
}

/// The holder's namespaces that differ from the caller's, in the order `setns` must use
/// (user first, mnt last, as nsenter does), plus its root directory.
pub(crate) struct PodTarget {
    pub(crate) namespaces: Vec<NsFd>,
    pub(crate) root: OwnedFd,
}

impl PodTarget {
    pub(crate) fn open(holder: i32) -> Result<PodTarget> {
        const ORDER: [(&str, libc::c_int); 7] = [
            ("user", libc::CLONE_NEWUSER),
            ("cgroup", libc::CLONE_NEWCGROUP),
            ("ipc", libc::CLONE_NEWIPC),
            ("uts", libc::CLONE_NEWUTS),
            ("net", libc::CLONE_NEWNET),
            ("pid", libc::CLONE_NEWPID),
            ("mnt", libc::CLONE_NEWNS),
        ];
        let mut namespaces = Vec::new();
        for (name, nstype) in ORDER {
            let theirs = format!("/proc/{holder}/ns/{name}");
            let their_meta = match fs::metadata(&theirs) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound && name == "cgroup" => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::HolderGone { pid: holder });
                }
                Err(e) => return Err(Error::syscall(format!("stat {theirs}"), e)),
            };
            let ours = fs::metadata(format!("/proc/self/ns/{name}"))
                .map_err(|e| Error::syscall(format!("stat /proc/self/ns/{name}"), e))?;
            if ours.ino() == their_meta.ino() && ours.dev() == their_meta.dev() {
                continue;
            }
            let file =
                File::open(&theirs).map_err(|e| Error::syscall(format!("open {theirs}"), e))?;
            namespaces.push(NsFd {
                fd: file.into(),
                nstype,
            });
        }
        let root_path = format!("/proc/{holder}/root");
        let root = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(&root_path)
            .map_err(|e| Error::syscall(format!("open {root_path}"), e))?;
        Ok(PodTarget {
            namespaces,
            root: root.into(),
        })
    }
}

/// Everything the child needs, built before `fork`.
struct Prepared {
    program: String,
    candidates: Vec<CString>,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: CString,
    stdio: [Option<RawFd>; 3],
    rlimits: Rlimits,
    no_new_privs: bool,
    drop_caps: Option<u32>,
    landlock: Option<Ruleset>,
    seccomp: Option<Filter>,
    die_with_parent: bool,
    end_group_on_exit: bool,
    cgroup_fds: Vec<OwnedFd>,
}

fn cstring(what: &'static str, s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| Error::InvalidSpec {
        what,
        reason: format!("{s:?} contains a NUL byte"),
    })
}

fn last_cap() -> Result<u32> {
    let text = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .map_err(|e| Error::syscall("read /proc/sys/kernel/cap_last_cap", e))?;
    text.trim().parse().map_err(|_| Error::InvalidSpec {
        what: "drop_capabilities",
        reason: format!("/proc/sys/kernel/cap_last_cap holds {text:?}"),
    })
}

impl Prepared {
    /// `view_root` is where the command's filesystem view starts, seen from here (a pod's
    /// root through `/proc`), for the Landlock rules; `None` on the host.
    fn new(
        spec: &CommandSpec,
        cgroup: Option<&Cgroup>,
        view_root: Option<&Path>,
    ) -> Result<Prepared> {
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
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<_> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
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
            program,
            candidates,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            cwd: cstring("cwd", spec.cwd.as_os_str())?,
            stdio: [spec.stdin.raw(), spec.stdout.raw(), spec.stderr.raw()],
            rlimits: spec.rlimits,
            no_new_privs: spec.no_new_privs || spec.landlock.is_some() || spec.seccomp,
            landlock: spec
                .landlock
                .as_ref()
                .map(|rules| Ruleset::new(rules, view_root))
                .transpose()?,
            seccomp: spec.seccomp.then(Filter::deny_list),
            drop_caps: if spec.drop_capabilities {
                Some(last_cap()?)
            } else {
                None
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

    /// In the child that becomes the command: everything from the parent-death signal to
    /// `execve`. Async-signal-safe.
    fn exec(&self, err_fd: RawFd, expected_ppid: libc::pid_t) -> ! {
        if self.die_with_parent {
            if let Err(e) = sys::set_pdeathsig(libc::SIGKILL) {
                fail(err_fd, Step::Pdeathsig, e);
            }
            if sys::getppid() != expected_ppid {
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
        if let Err(e) = sys::chdir(&self.cwd) {
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
        if let Some(last) = self.drop_caps
            && let Err(e) = sys::drop_all_capabilities(last)
        {
            fail(err_fd, Step::DropCaps, e);
        }
        // Landlock, then seccomp last: nothing after it but execve.
        if let Some(ruleset) = &self.landlock
            && let Err(e) = ruleset.restrict_self()
        {
            fail(err_fd, Step::Landlock, e);
        }
        if let Some(filter) = &self.seccomp
            && let Err(e) = filter.install()
        {
            fail(err_fd, Step::Seccomp, e);
        }
        let mut err = libc::ENOENT;
        let mut saw_eacces = false;
        for path in &self.candidates {
            err = sys::execve(path, &self.argv_ptrs, &self.envp_ptrs);
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

fn error_pipe() -> Result<(File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(Error::last_os("pipe2"));
    }
    // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
    unsafe { Ok((File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

/// Waits for the child's verdict: end-of-file means `execve` succeeded.
fn collect(program: &str, pid: i32, mut reader: File) -> Result<SpawnedChild> {
    let mut rec = [0u8; 8];
    let mut got = 0;
    while got < rec.len() {
        match reader.read(&mut rec[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::syscall("read spawn status pipe", e)),
        }
    }
    if got == 0 {
        return Ok(SpawnedChild { pid });
    }
    // The child failed; reap it so it does not linger as a zombie.
    let _ = sys::waitpid(pid, 0);
    let step_index = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
    let errno = i32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
    let step = Step::ALL
        .get(step_index as usize)
        .copied()
        .unwrap_or(Step::Execve);
    Err(Error::Spawn {
        program: program.into(),
        step: step.name(),
        source: io::Error::from_raw_os_error(errno),
    })
}

/// Runs a command on the host (no namespaces), in `cgroup` when given: joins the cgroup,
/// `setpgid`, rlimits, working directory, stdio, optional no_new_privs / capability drop, then
/// `execve`. This is the `low` security level. See [`SpawnedChild`] for what the pid is.
pub fn spawn_in_cgroup(spec: &CommandSpec, cgroup: Option<&Cgroup>) -> Result<SpawnedChild> {
    spawn_relayed(spec, cgroup, None)
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

/// Runs a command inside a pod's namespaces and cgroup (see [`crate::Pod::spawn`]).
pub(crate) fn spawn_in_pod(
    spec: &CommandSpec,
    target: &PodTarget,
    cgroup: Option<&Cgroup>,
) -> Result<SpawnedChild> {
    spawn_relayed(spec, cgroup, Some(target))
}

/// Forks the relay, which joins `cgroup` and, given a pod, its namespaces and root, then forks
/// the command and waits for it (see [`SpawnedChild`]).
fn spawn_relayed(
    spec: &CommandSpec,
    cgroup: Option<&Cgroup>,
    pod: Option<&PodTarget>,
) -> Result<SpawnedChild> {
    // The rules attach to what the pod sees: its paths, opened through the holder's root.
    let view_root =
        pod.map(|target| PathBuf::from(format!("/proc/self/fd/{}", target.root.as_raw_fd())));
    let prepared = Prepared::new(spec, cgroup, view_root.as_deref())?;
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
        if let Some(target) = pod {
            for ns in &target.namespaces {
                if let Err(e) = sys::setns(ns.fd.as_raw_fd(), ns.nstype) {
                    fail(err_fd, Step::Setns, e);
                }
            }
            if let Err(e) = sys::fchdir(target.root.as_raw_fd()).and_then(|()| sys::chroot(c".")) {
                fail(err_fd, Step::Chroot, e);
            }
        }
        let relay_pid = sys::getpid();
        let child = match sys::fork() {
            Ok(c) => c,
            Err(e) => fail(err_fd, Step::Fork, e),
        };
        if child == 0 {
            // The command. In a pod it is inside the pod's PID namespace and its parent (the
            // relay) outside it, so getppid() reads 0 until the relay dies and the holder
            // adopts it.
            prepared.exec(err_fd, if pod.is_some() { 0 } else { relay_pid });
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
    collect(&prepared.program, pid, reader)
}

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
        let err = Prepared::new(&spec, None, None)
            .err()
            .expect("no PATH must be rejected");
        assert!(err.to_string().contains("no PATH"), "{err}");
    }
}
