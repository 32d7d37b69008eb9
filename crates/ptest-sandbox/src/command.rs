//! What a command is: [`CommandSpec`] (argv, environment, working directory, stdio, limits,
//! confinement), where its standard streams come from ([`Stdio`]) and how it ended
//! ([`ExitStatus`]). Plain data shared by both ways of starting one: on the host
//! ([`crate::spawn_in_cgroup`]) and in a pod ([`crate::Pod::spawn`]).

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use crate::capability::Capabilities;
use crate::landlock::FsRules;
use crate::rlimit::Rlimits;
use crate::seccomp;

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

    /// The descriptor to put in place, if any.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Stdio::Inherit => None,
            Stdio::Fd(fd) => Some(fd.as_fd()),
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
    /// ends. Default `true`. In a pod that is when the [`crate::SpawnedChild`] is dropped or the
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
}
