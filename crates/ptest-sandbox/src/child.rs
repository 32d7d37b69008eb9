//! A started command, [`SpawnedChild`], whichever way it was started: waited for through the
//! relay process on the host, or through the connection to the pod holder that forked it.

use std::io;
use std::os::fd::OwnedFd;

use crate::command::ExitStatus;
use crate::error::{Error, Result};
use crate::sys;
use crate::zygote::Connection;

/// A started command.
///
/// - From [`crate::Pod::spawn`] the command is a child of the pod holder, and this value is
///   the connection on which the holder reports how it ended. [`pid`](SpawnedChild::pid) is
///   the command's own, in the caller's PID namespace: signal it, or its process group, which
///   it leads. Dropping the value (or the caller dying) hangs the connection up: the holder
///   then SIGKILLs the command's process group, unless `die_with_parent` was off. If the pod
///   is destroyed while the command runs, the holder's death takes it along:
///   [`wait`](SpawnedChild::wait) reports SIGKILL.
/// - From [`crate::spawn_in_cgroup`] the caller's child, and [`pid`](SpawnedChild::pid), is a relay
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
    pub(crate) fn from_relay(pid: i32) -> SpawnedChild {
        SpawnedChild {
            pid,
            via: Via::Relay,
        }
    }

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
