//! The caller's side of the holder's socket: [`spawn`] encodes a command as one request,
//! sends it with its descriptors, reads whether it started, and hands back the
//! [`Connection`] its end is reported on.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use super::{
    CAPS, END_GROUP, EXITED, FAILED, HEADER, INLINE_MAX, KILL_ON_HANGUP, LANDLOCK, MAGIC, NO_LIMIT,
    NO_NEW_PRIVS, PAYLOAD_FD, REPLY, SECCOMP, SECCOMP_CONTAINER, SOCKET, SPAWNED, close_received,
    word,
};
use crate::capability::Capabilities;
use crate::command::{CommandSpec, ExitStatus};
use crate::error::{Error, Result};
use crate::landlock::Ruleset;
use crate::launch::{self, Strings};
use crate::seccomp::Profile;
use crate::sys::{self, Errno};

fn syscall_error(call: impl Into<String>, errno: Errno) -> Error {
    Error::syscall(call, io::Error::from_raw_os_error(errno))
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass a descriptor they just created and own alone.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The request for `spec`: header and strings.
fn encode(spec: &CommandSpec, strings: &Strings, flags: u32, stdio_mask: u32) -> Vec<u8> {
    let limit = |v: Option<u64>| v.unwrap_or(NO_LIMIT);
    let mut out = Vec::with_capacity(HEADER + 4096);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&limit(spec.rlimits.open_files).to_le_bytes());
    out.extend_from_slice(&limit(spec.rlimits.file_size).to_le_bytes());
    for count in [
        strings.argv.len(),
        strings.envp.len(),
        strings.candidates.len(),
    ] {
        out.extend_from_slice(&(count as u32).to_le_bytes());
    }
    out.extend_from_slice(&stdio_mask.to_le_bytes());
    let caps = spec.capabilities.map_or(0, Capabilities::mask);
    out.extend_from_slice(&caps.to_le_bytes());
    out.extend_from_slice(strings.cwd.to_bytes_with_nul());
    for s in strings
        .argv
        .iter()
        .chain(&strings.envp)
        .chain(&strings.candidates)
    {
        out.extend_from_slice(s.to_bytes_with_nul());
    }
    out
}

/// Runs `spec` through the pod holder `holder` (see the module docs): the command's pid, in
/// the caller's PID namespace, and the connection its end is reported on. `holder_alive`
/// says whether the holder still runs (same pid, same start time), to tell a holder that is
/// gone from one that failed.
pub(crate) fn spawn(
    holder: i32,
    holder_alive: impl Fn() -> bool,
    spec: &CommandSpec,
) -> Result<(i32, Connection)> {
    let strings = Strings::new(spec)?;
    let mut flags = 0;
    for (on, flag) in [
        (spec.wants_no_new_privs(), NO_NEW_PRIVS),
        (spec.capabilities.is_some(), CAPS),
        (spec.seccomp == Some(Profile::Strict), SECCOMP),
        (spec.seccomp == Some(Profile::Container), SECCOMP_CONTAINER),
        (spec.end_group_on_exit, END_GROUP),
        (spec.die_with_parent, KILL_ON_HANGUP),
    ] {
        if on {
            flags |= flag;
        }
    }
    // Descriptors in the order the holder takes them: stdio, Landlock ruleset, payload.
    let mut fds = Vec::with_capacity(5);
    let mut stdio_mask = 0;
    for (i, stdio) in [&spec.stdin, &spec.stdout, &spec.stderr].iter().enumerate() {
        // Inherit: the caller's own descriptor, when it has one.
        let fd = stdio
            .fd()
            .map(|fd| fd.as_raw_fd())
            .or_else(|| sys::is_open(i as RawFd).then_some(i as RawFd));
        if let Some(fd) = fd {
            fds.push(fd);
            stdio_mask |= 1 << i;
        }
    }
    // The rules attach to what the pod sees: its paths, opened through the holder's root.
    let ruleset = match &spec.landlock {
        Some(rules) => {
            let root_path = format!("/proc/{holder}/root");
            let root = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(&root_path)
                .map_err(|e| match holder_alive() {
                    true => Error::syscall(format!("open {root_path}"), e),
                    false => Error::HolderGone { pid: holder },
                })?;
            let view = PathBuf::from(format!("/proc/self/fd/{}", root.as_raw_fd()));
            Some(Ruleset::new(rules, Some(&view))?)
        }
        None => None,
    };
    if let Some(r) = &ruleset {
        flags |= LANDLOCK;
        fds.push(r.as_fd().as_raw_fd());
    }
    let body = encode(spec, &strings, flags, stdio_mask);
    let mut payload = None;
    let message = if body.len() > INLINE_MAX {
        let fd =
            owned(sys::memfd(c"ptest-exec-request").map_err(|e| syscall_error("memfd_create", e))?);
        let mut file = File::from(fd);
        file.write_all(&body[HEADER..])
            .map_err(|e| Error::syscall("write request memfd", e))?;
        let mut header = body[..HEADER].to_vec();
        header[4..8].copy_from_slice(&(flags | PAYLOAD_FD).to_le_bytes());
        fds.push(file.as_raw_fd());
        payload = Some(file);
        header
    } else {
        body
    };

    let sock = owned(sys::seqpacket_socket(0).map_err(|e| syscall_error("socket", e))?);
    // The holder names the command in its credentials; the kernel gives us its pid here.
    sys::set_socket_option(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 1)
        .map_err(|e| syscall_error("setsockopt SO_PASSCRED", e))?;
    let path = format!("/proc/{holder}/root{}", SOCKET.to_string_lossy());
    let cpath = CString::new(path.as_str()).expect("a path built from numbers has no NUL");
    if let Err(e) = sys::connect(sock.as_raw_fd(), &cpath) {
        if !holder_alive() {
            return Err(Error::HolderGone { pid: holder });
        }
        // A live holder without a socket was made before holders started commands.
        let hint = if e == libc::ENOENT {
            " (the pod was made by an older version whose holder does not start commands: \
             make the pod again)"
        } else {
            ""
        };
        return Err(syscall_error(
            format!("connect to the pod holder at {path}{hint}"),
            e,
        ));
    }
    // The listener is the holder (its pid, as it listened), and the holder is still the
    // process started at the recorded time: not another pod's holder on a reused pid.
    let listener =
        sys::peer_pid(sock.as_raw_fd()).map_err(|e| syscall_error("getsockopt SO_PEERCRED", e))?;
    if !holder_alive() {
        return Err(Error::HolderGone { pid: holder });
    }
    if listener != holder {
        return Err(Error::NotAHolder { pid: holder });
    }
    sys::send_message(sock.as_raw_fd(), &message, &fds, None, 0).map_err(|e| {
        syscall_error(
            format!(
                "send the command ({} bytes) to the pod holder",
                message.len()
            ),
            e,
        )
    })?;
    drop(payload);
    drop(ruleset);
    let mut buf = [0u8; 16];
    let got = sys::recv_message(sock.as_raw_fd(), &mut buf, 0)
        .map_err(|e| syscall_error("read the pod holder's answer", e))?;
    close_received(&got);
    if got.len == 0 {
        return Err(Error::HolderGone { pid: holder });
    }
    let reply = &buf[..got.len.min(buf.len())];
    match (reply.len() == REPLY).then(|| word(reply, 0)) {
        Some(SPAWNED) => {
            let pid = got
                .sender
                .filter(|&pid| pid > 0)
                .ok_or_else(|| bad_reply(holder))?;
            Ok((pid, Connection::new(sock)))
        }
        Some(FAILED) => Err(launch::spawn_error(
            &strings.program,
            word(reply, 4),
            word(reply, 8) as i32,
        )),
        _ => Err(bad_reply(holder)),
    }
}

fn bad_reply(holder: i32) -> Error {
    unexpected(format!("read the answer of pod holder {holder}"))
}

/// The holder sent something the protocol does not have.
fn unexpected(action: impl Into<String>) -> Error {
    Error::syscall(
        action,
        io::Error::new(io::ErrorKind::InvalidData, "unexpected message"),
    )
}

/// The caller's end of one command's connection to its pod holder: where its end is learnt.
#[derive(Debug)]
pub(crate) struct Connection {
    fd: OwnedFd,
    /// How it ended, once read (the holder sends it once).
    status: Mutex<Option<ExitStatus>>,
}

impl Connection {
    fn new(fd: OwnedFd) -> Connection {
        Connection {
            fd,
            status: Mutex::new(None),
        }
    }

    /// Blocks until the holder reports the command's end.
    pub(crate) fn wait(&self) -> Result<ExitStatus> {
        Ok(self
            .status(0)?
            .expect("a blocking read returns a message or end-of-file"))
    }

    /// The command's end, if the holder has reported it.
    pub(crate) fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.status(libc::MSG_DONTWAIT)
    }

    fn status(&self, flags: libc::c_int) -> Result<Option<ExitStatus>> {
        let mut known = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(status) = *known {
            return Ok(Some(status));
        }
        let mut buf = [0u8; 16];
        let got = match sys::recv_message(self.fd.as_raw_fd(), &mut buf, flags) {
            Ok(got) => got,
            Err(libc::EAGAIN) if flags & libc::MSG_DONTWAIT != 0 => return Ok(None),
            Err(e) => return Err(syscall_error("read from the pod holder", e)),
        };
        close_received(&got);
        let status = if got.len == 0 {
            // The holder died (the pod was destroyed): as PID 1 of the pod it took the
            // command with it.
            ExitStatus::Signaled(libc::SIGKILL)
        } else if got.len == REPLY && word(&buf, 0) == EXITED {
            ExitStatus::from_raw(word(&buf, 4) as i32)
        } else {
            return Err(unexpected("read from the pod holder"));
        };
        *known = Some(status);
        Ok(Some(status))
    }

    /// A copy of the connection, readable once the status is there.
    pub(crate) fn try_clone(&self) -> Result<OwnedFd> {
        self.fd
            .try_clone()
            .map_err(|e| Error::syscall("duplicate the pod holder connection", e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::long;
    use super::*;

    #[test]
    fn requests_carry_counts_and_strings_in_order() {
        let mut spec = CommandSpec::new(["prog", "arg"])
            .env("PATH", "/bin:/usr/bin")
            .cwd("/work");
        spec.rlimits.open_files = Some(64);
        let strings = Strings::new(&spec).expect("valid spec");
        let body = encode(&spec, &strings, END_GROUP, 0b101);
        assert_eq!(word(&body, 0), MAGIC);
        assert_eq!(word(&body, 4), END_GROUP);
        assert_eq!(long(&body, 8), 64);
        assert_eq!(long(&body, 16), NO_LIMIT);
        assert_eq!(
            (word(&body, 24), word(&body, 28), word(&body, 32)),
            (2, 1, 2)
        );
        assert_eq!(word(&body, 36), 0b101);
        assert_eq!(
            &body[HEADER..],
            b"/work\0prog\0arg\0PATH=/bin:/usr/bin\0/bin/prog\0/usr/bin/prog\0"
        );
    }
}
