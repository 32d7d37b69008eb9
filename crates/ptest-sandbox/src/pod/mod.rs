//! The pod: a long-lived holder process owning a set of namespaces, which commands enter.
//!
//! [`Pod::create`] forks twice. The first child starts a new session, joins the cgroup,
//! unshares the namespaces, forks the holder (PID 1 of the new PID namespace), reports the
//! holder's pid and exits, so the holder is not a child of the caller and outlives it. The
//! holder builds the filesystem view, `pivot_root`s into it, sets the hostname, brings `lo` up,
//! opens its command socket, reports readiness, then serves [`Pod::spawn`] requests (it forks
//! the pod's commands, see [`crate::zygote`]) and reaps orphans forever. All set-up steps are
//! computed before the first `fork` as a list of system calls ([`view::Op`]), and everything
//! the holder will use later is allocated then too; the children only execute that list.
//!
//! One file per part: [`spec`] what the caller asks for, [`view`] the filesystem view planned
//! as system calls, [`holder`] the forks that make the holder, [`userns`] the user namespace
//! of a creator that is not root; here, the running pod and what can be done with it.

mod holder;
mod program;
mod spec;
mod userns;
mod view;

pub use program::{hold_pods_in_program, hold_pods_in_this_program, serve_if_holder};
pub use spec::{Bind, HostView, NetworkMode, PodSpec, Scratch};
pub(crate) use view::check_absolute;

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cgroup::Cgroup;
use crate::child::SpawnedChild;
use crate::command::CommandSpec;
use crate::error::{Error, Result};
use crate::procfs;
use crate::sys::{self, cpath};
use crate::zygote;

/// A running pod: its holder process, identified by pid and start time.
///
/// Dropping the value leaves the pod running; [`Pod::destroy`] tears it down.
#[derive(Debug)]
pub struct Pod {
    holder_pid: i32,
    start_time: u64,
    cgroup: Option<Cgroup>,
}

impl Pod {
    /// Reopens a pod created by another process (or an earlier `Pod` value).
    ///
    /// Fails with [`Error::HolderGone`] when no such process runs (or it is a zombie), and with
    /// [`Error::HolderPidReused`] when the pid now belongs to a process started at another time,
    /// and with [`Error::NotAHolder`] when the process shares the caller's mount namespace.
    /// `cgroup` is the pod's cgroup, if it has one (reopen it with [`Cgroup::open`]); it is not
    /// inferred, so that `destroy` never kills a group it was not told about.
    pub fn attach(
        holder_pid: i32,
        expected_start_time: u64,
        cgroup: Option<Cgroup>,
    ) -> Result<Pod> {
        let stat = procfs::stat(holder_pid)
            .map_err(|e| Error::syscall(format!("read /proc/{holder_pid}/stat"), e))?
            .ok_or(Error::HolderGone { pid: holder_pid })?;
        if stat.start_time != expected_start_time {
            return Err(Error::HolderPidReused {
                pid: holder_pid,
                expected: expected_start_time,
                found: stat.start_time,
            });
        }
        if stat.state == b'Z' || stat.state == b'X' {
            return Err(Error::HolderGone { pid: holder_pid });
        }
        let theirs = fs::metadata(format!("/proc/{holder_pid}/ns/mnt"))
            .map_err(|e| Error::syscall(format!("stat /proc/{holder_pid}/ns/mnt"), e))?;
        let ours = fs::metadata("/proc/self/ns/mnt")
            .map_err(|e| Error::syscall("stat /proc/self/ns/mnt", e))?;
        if theirs.ino() == ours.ino() && theirs.dev() == ours.dev() {
            return Err(Error::NotAHolder { pid: holder_pid });
        }
        Ok(Pod {
            holder_pid,
            start_time: expected_start_time,
            cgroup,
        })
    }

    /// The holder's pid in the caller's PID namespace.
    pub fn holder_pid(&self) -> i32 {
        self.holder_pid
    }

    /// The holder's start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`); store
    /// it with the pid to [`attach`](Pod::attach) later.
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// The pod's cgroup, if it has one.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// Whether the holder still runs (same pid, same start time, not a zombie).
    pub fn is_alive(&self) -> bool {
        matches!(procfs::stat(self.holder_pid), Ok(Some(s)) if s.start_time == self.start_time && s.state != b'Z' && s.state != b'X')
    }

    /// Runs a command inside the pod: its namespaces, its filesystem view, its cgroup.
    ///
    /// The holder forks it: this connects to the holder's socket (through
    /// `/proc/<holder>/root`), sends the command with its stdio descriptors, and the holder's
    /// child does `setpgid`, stdio, `chdir`, rlimits, no_new_privs, capability drop, Landlock
    /// and seccomp when asked, then `execve`. Nothing joins a namespace or moves between
    /// cgroups. Errors up to and including `execve` are returned here. See [`SpawnedChild`]
    /// for what the pid is and what dropping the value does.
    ///
    /// A holder that is gone, or whose pid now names another process, is found when
    /// connecting ([`Error::HolderGone`]): no check comes before.
    pub fn spawn(&self, cmd: &CommandSpec) -> Result<SpawnedChild> {
        let (pid, connection) = zygote::spawn(self.holder_pid, || self.is_alive(), cmd)?;
        Ok(SpawnedChild::from_holder(pid, connection))
    }

    /// Tears the pod down: SIGKILLs the holder, PID 1 of the pod's PID namespace, so the
    /// kernel kills every process of the namespace with it (daemons that double-forked or
    /// called `setsid` included) and ends the holder only once they are all gone; waits for
    /// that, then kills whatever is left in the cgroup (a process that joined it from outside
    /// the namespace) and removes the cgroup. The mounts vanish with the mount namespace.
    pub fn destroy(self) -> Result<()> {
        self.kill_holder()?;
        if let Some(cg) = self.cgroup {
            cg.remove()?;
        }
        tracing::debug!(holder = self.holder_pid, "pod destroyed");
        Ok(())
    }

    /// SIGKILLs the holder and waits until it has ended, through a pidfd (woken by the exit
    /// itself, and never signalling a process that reused the pid); by polling `/proc` on
    /// kernels without pidfds.
    fn kill_holder(&self) -> Result<()> {
        let timed_out = || {
            Error::syscall(
                format!("kill pod holder {}", self.holder_pid),
                io::Error::new(io::ErrorKind::TimedOut, "still alive 10s after SIGKILL"),
            )
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let pidfd = match sys::pidfd_open(self.holder_pid) {
            Ok(fd) => Some(fd),
            Err(libc::ESRCH) => return Ok(()),
            Err(_) => None,
        };
        // Checked after opening: the descriptor then names the holder, not a pid's next owner.
        if !self.is_alive() {
            return Ok(());
        }
        let Some(pidfd) = pidfd else {
            let _ = sys::kill(self.holder_pid, libc::SIGKILL);
            while self.is_alive() {
                if Instant::now() > deadline {
                    return Err(timed_out());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            return Ok(());
        };
        match sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL) {
            Ok(()) | Err(libc::ESRCH) => {}
            Err(e) => {
                return Err(Error::syscall(
                    format!("kill pod holder {}", self.holder_pid),
                    io::Error::from_raw_os_error(e),
                ));
            }
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            match sys::wait_readable(pidfd.as_raw_fd(), ms) {
                Ok(true) => return Ok(()),
                Ok(false) | Err(libc::EINTR) => {}
                Err(e) => {
                    return Err(Error::syscall(
                        format!("wait for pod holder {}", self.holder_pid),
                        io::Error::from_raw_os_error(e),
                    ));
                }
            }
        }
    }

    /// The holder's root directory, opened through `/proc/<holder>/root` and checked to be
    /// this holder's after opening (so a reused pid cannot stand in for it).
    fn view_root(&self) -> Result<fs::File> {
        let root_path = format!("/proc/{}/root", self.holder_pid);
        let root = fs::File::open(&root_path)
            .map_err(|e| Error::syscall(format!("open {root_path}"), e))?;
        if !self.is_alive() {
            return Err(Error::HolderGone {
                pid: self.holder_pid,
            });
        }
        Ok(root)
    }

    /// Device and inode of what the pod shows at `path` (absolute, as the pod sees it), and
    /// whether it is a directory: to tell whether the pod still sees what the host has
    /// there. Read through the holder's root, following no symlink a command made.
    pub fn identify(&self, path: &Path) -> Result<(u64, u64, bool)> {
        check_absolute("path", path)?;
        let root = self.view_root()?;
        let relative = path.strip_prefix("/").unwrap_or(path);
        let fd = if relative.as_os_str().is_empty() {
            sys::open_beneath(root.as_raw_fd(), c".", libc::O_PATH)
        } else {
            sys::open_beneath(root.as_raw_fd(), &cpath(relative)?, libc::O_PATH)
        }
        .map_err(|e| {
            Error::syscall(
                format!("open {} in the pod", path.display()),
                io::Error::from_raw_os_error(e),
            )
        })?;
        let meta = fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| Error::syscall(format!("stat {} in the pod", path.display()), e))?;
        Ok((meta.dev(), meta.ino(), meta.is_dir()))
    }

    /// Bytes in use in the pod's `/tmp` and `/dev/shm`, for a pod made with
    /// [`Scratch::Tmpfs`] (with [`Scratch::Dirs`] the space is counted where the directories
    /// live). Read through the holder's root without following anything a command made there.
    pub fn scratch_usage(&self) -> Result<u64> {
        let root = self.view_root()?;
        let root_path = format!("/proc/{}/root", self.holder_pid);
        let mut used = 0;
        for dir in [c"tmp", c"dev/shm"] {
            let fd = sys::open_beneath(root.as_raw_fd(), dir, libc::O_PATH | libc::O_DIRECTORY)
                .map_err(|e| {
                    Error::syscall(
                        format!("open {root_path}/{}", dir.to_string_lossy()),
                        io::Error::from_raw_os_error(e),
                    )
                })?;
            let st = rustix::fs::fstatfs(&fd)
                .map_err(|e| Error::syscall("fstatfs", io::Error::from(e)))?;
            if st.f_type == libc::TMPFS_MAGIC as _ {
                used += (st.f_blocks - st.f_bfree) as u64 * st.f_bsize as u64;
            }
        }
        Ok(used)
    }

    /// Inode numbers of the holder's namespaces, `(name, inode)`, for diagnostics and tests.
    pub fn namespaces(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut out = Vec::new();
        for name in ["ipc", "mnt", "net", "pid", "user", "uts"] {
            let path = format!("/proc/{}/ns/{name}", self.holder_pid);
            let meta =
                fs::metadata(&path).map_err(|e| Error::syscall(format!("stat {path}"), e))?;
            out.push((name, meta.ino()));
        }
        Ok(out)
    }
}
