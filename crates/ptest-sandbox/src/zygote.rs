//! The pod holder as a zygote: it forks the pod's commands itself, so a command starts already
//! inside the pod's namespaces, filesystem view and cgroup, and nothing migrates into them.
//!
//! Moving a process into a cgroup is what made entering a pod slow: on cgroup v1 the first
//! write of a pid to `cgroup.procs` waits for an RCU grace period (milliseconds on a loaded
//! host), and `CLONE_INTO_CGROUP` exists only on v2. The holder is in the cgroup from the
//! start, and a child it forks is born there.
//!
//! The holder listens on a Unix `SOCK_SEQPACKET` socket at [`SOCKET`] in the pod's own view;
//! a caller on the host connects to it through `/proc/<holder>/root`, so [`crate::Pod::attach`]
//! needs nothing more than the holder's pid. One connection is one command:
//!
//! 1. the caller sends one request: a fixed header (flags, rlimits, counts), then the working
//!    directory, argv, environment and `PATH` candidates as NUL-terminated strings, with the
//!    descriptors attached (`SCM_RIGHTS`): stdin/stdout/stderr, the prepared Landlock
//!    ruleset, and for a request larger than [`INLINE_MAX`] a memfd holding the strings;
//! 2. the holder checks that the peer is outside the pod (`SO_PEERCRED` reads pid 0 for a
//!    process outside its PID namespace), so a command cannot ask its holder for a command
//!    with fewer restrictions; it parses the request in place, forks, and the child runs
//!    [`Launch::exec`] (the same steps as a relay's child);
//! 3. the holder answers `SPAWNED` with credentials naming the command (`SCM_CREDENTIALS`:
//!    the kernel translates the pid into the caller's PID namespace, unlike a pid in the
//!    data), or `FAILED` with the step and errno;
//! 4. when the command ends the holder (with `end_group_on_exit`) SIGKILLs what it left in its
//!    process group before reaping it, and sends `EXITED` with the raw wait status. If the
//!    connection hangs up first (the caller dropped it or died), the holder SIGKILLs the
//!    command's process group, unless the command was to outlive its caller.
//!
//! The holder was forked from a possibly multi-threaded program and never execs, so it must
//! not allocate: everything it uses (request buffer, pointer array, client table, poll array,
//! seccomp filter) is allocated by [`Zygote::new`] before the fork, and its loop (one `poll`
//! over a signalfd for SIGCHLD, the listening socket and the clients) makes only system calls.

use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use crate::capability::Capabilities;
use crate::command::{CommandSpec, ExitStatus};
use crate::error::{Error, Result};
use crate::landlock::Ruleset;
use crate::launch::{self, Launch, Step, Strings};
use crate::rlimit::Rlimits;
use crate::seccomp::{Filter, Profile};
use crate::step_pipe::raw_step_pipe;
use crate::sys::{self, Errno, ZeroPages};

/// Where the holder listens, as the pod sees it. Commands see the file too; the holder
/// refuses them.
pub(crate) const SOCKET: &CStr = c"/dev/.ptest/exec.sock";
/// The directory of [`SOCKET`]: a tmpfs of its own that the holder makes read-only once it
/// listens, so that no command (root in the pod, at `medium` with `CAP_DAC_OVERRIDE`) can
/// move, remove or replace the socket.
pub(crate) const SOCKET_DIR: &CStr = c"/dev/.ptest";

/// Largest request the holder takes (strings and header): above the kernel's own limit for
/// `execve` arguments and environment (a quarter of an 8 MiB stack, at most 6 MiB).
const REQUEST_MAX: usize = 8 << 20;
/// Most strings (argv, environment, candidates) in one request: each takes at least one
/// byte and `execve` counts a pointer for each against the same limit.
const STRINGS_MAX: usize = REQUEST_MAX / 8;
/// Requests up to this size travel in the message itself (well within a socket's default
/// send buffer); larger ones in a memfd sent with it.
const INLINE_MAX: usize = 64 << 10;
/// Connections one holder serves at once (one per running command); further callers wait
/// in the listen backlog until a command ends.
const CLIENTS_MAX: usize = 1024;
/// The stack a command runs on until `execve` (Landlock and seccomp set-up included; the
/// pages it never touches cost nothing).
const STACK: usize = 256 << 10;

/// First word of a request: the protocol and its version.
const MAGIC: u32 = 0x7a79_6702;
/// Header: magic, flags, open-files limit, file-size limit, argc, envc, candidate count,
/// stdio mask (bit i: descriptor i is attached), capabilities to keep (with [`CAPS`]), as
/// little-endian u32/u64.
const HEADER: usize = 48;
const NO_LIMIT: u64 = u64::MAX;

const NO_NEW_PRIVS: u32 = 1 << 0;
const CAPS: u32 = 1 << 1;
/// The [`Profile::Strict`] filter; with [`SECCOMP_CONTAINER`], the other one.
const SECCOMP: u32 = 1 << 2;
const SECCOMP_CONTAINER: u32 = 1 << 7;
const LANDLOCK: u32 = 1 << 3;
const END_GROUP: u32 = 1 << 4;
const KILL_ON_HANGUP: u32 = 1 << 5;
const PAYLOAD_FD: u32 = 1 << 6;
/// Not a request flag: the holder marks a connection from inside the pod with it.
const INSIDE: u32 = 1 << 31;

/// Replies: kind, a, b (i32 each).
const SPAWNED: u32 = 1;
const FAILED: u32 = 2;
const EXITED: u32 = 3;
const REPLY: usize = 12;

fn reply_bytes(kind: u32, a: i32, b: i32) -> [u8; REPLY] {
    let mut msg = [0u8; REPLY];
    msg[..4].copy_from_slice(&kind.to_le_bytes());
    msg[4..8].copy_from_slice(&a.to_le_bytes());
    msg[8..].copy_from_slice(&b.to_le_bytes());
    msg
}

fn word(buf: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(w)
}

fn long(buf: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(w)
}

fn syscall_error(call: impl Into<String>, errno: Errno) -> Error {
    Error::syscall(call, io::Error::from_raw_os_error(errno))
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass a descriptor they just created and own alone.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

// --- the caller's side -------------------------------------------------------------------------

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

/// Closes the descriptors that came with a message (none is expected, or they have served).
fn close_received(got: &sys::Received) {
    for &fd in &got.fds[..got.fd_count] {
        // SAFETY: the kernel gave these descriptors to this process with the message; nothing
        // else holds them, and they are used no more.
        unsafe { sys::close(fd) };
    }
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

// --- the holder's side -------------------------------------------------------------------------

/// One connection the holder serves: waiting for its request (`pid` 0), or its command's.
#[derive(Debug, Clone, Copy)]
struct Client {
    fd: RawFd,
    pid: libc::pid_t,
    flags: u32,
}

/// The holder's command server, allocated before the holder is forked (see the module docs).
pub(crate) struct Zygote {
    /// One request at a time, parsed in place.
    buf: ZeroPages<u8>,
    /// argv, NULL, environment, NULL, candidates: pointers into `buf`.
    ptrs: ZeroPages<*const libc::c_char>,
    clients: Box<[Client]>,
    /// signalfd, listener, then one per client in `clients` order.
    pollfds: Box<[libc::pollfd]>,
    /// The [`Profile::Strict`] filter.
    seccomp: Filter,
    /// The [`Profile::Container`] filter.
    seccomp_container: Filter,
    /// For limiting capabilities; `None` if unreadable (such requests then fail).
    last_cap: Option<u32>,
    /// Where a command runs from its start to `execve` ([`sys::vfork_on`]).
    stack: ZeroPages<u8>,
}

/// The failing step (a [`Step`] number) and errno.
type Failure = (u32, Errno);

fn refused(errno: Errno) -> Failure {
    (Step::Request as u32, errno)
}

/// The NUL-terminated string at `*pos` in `buf`; moves `*pos` past it.
fn next_string(buf: &[u8], pos: &mut usize) -> std::result::Result<*const libc::c_char, Failure> {
    let rest = buf.get(*pos..).ok_or(refused(libc::EINVAL))?;
    let len = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(refused(libc::EINVAL))?;
    *pos += len + 1;
    Ok(rest.as_ptr().cast())
}

impl Zygote {
    /// Allocates everything the holder will need. In the caller, before the fork.
    pub(crate) fn new() -> std::result::Result<Zygote, Errno> {
        // The large buffers are mapped straight from the kernel: their pages stay untouched
        // (and unshared with the caller) until a request needs them.
        Ok(Zygote {
            buf: ZeroPages::new(REQUEST_MAX)?,
            ptrs: ZeroPages::new(STRINGS_MAX + 2)?,
            clients: vec![
                Client {
                    fd: -1,
                    pid: 0,
                    flags: 0,
                };
                CLIENTS_MAX
            ]
            .into_boxed_slice(),
            pollfds: vec![
                libc::pollfd {
                    fd: -1,
                    events: 0,
                    revents: 0,
                };
                CLIENTS_MAX + 2
            ]
            .into_boxed_slice(),
            seccomp: Filter::new(Profile::Strict),
            seccomp_container: Filter::new(Profile::Container),
            last_cap: launch::last_cap().ok(),
            stack: ZeroPages::new(STACK)?,
        })
    }

    /// In the holder, once its view is ready and SIGCHLD is blocked: the listening socket at
    /// [`SOCKET`] and a signalfd for SIGCHLD.
    pub(crate) fn listen() -> std::result::Result<(RawFd, RawFd), Errno> {
        // Non-blocking: the holder accepts until none is left waiting.
        let sock = sys::seqpacket_socket(libc::SOCK_NONBLOCK)?;
        sys::bind_listen(sock, SOCKET)?;
        sys::mount(
            None,
            SOCKET_DIR,
            None,
            libc::MS_REMOUNT
                | libc::MS_BIND
                | libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC,
            None,
        )?;
        let signals = sys::signalfd(&[libc::SIGCHLD])?;
        Ok((sock, signals))
    }

    /// The holder's life after set-up: serve requests and reap every child (it is PID 1 of
    /// the pod), forever. Dies only by SIGKILL (from the cgroup kill or [`crate::Pod::destroy`]); as
    /// PID 1 of its namespace it ignores other signals. Async-signal-safe.
    pub(crate) fn serve(mut self, listener: RawFd, signals: RawFd) -> ! {
        let mut n = 0;
        loop {
            self.pollfds[0] = libc::pollfd {
                fd: signals,
                events: libc::POLLIN,
                revents: 0,
            };
            self.pollfds[1] = libc::pollfd {
                fd: listener,
                events: libc::POLLIN,
                revents: 0,
            };
            for (p, c) in self.pollfds[2..].iter_mut().zip(&self.clients[..n]) {
                *p = libc::pollfd {
                    fd: c.fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
            }
            // A full table leaves callers waiting in the backlog.
            if n == self.clients.len() {
                self.pollfds[1].events = 0;
            }
            if sys::poll(&mut self.pollfds[..n + 2]).is_err() {
                continue;
            }
            // From the last client down: removing one moves the last into its place, which
            // has been handled already.
            for i in (0..n).rev() {
                if self.pollfds[i + 2].revents != 0 {
                    self.readable(i, &mut n);
                }
            }
            if self.pollfds[0].revents != 0 {
                sys::drain(signals);
                self.reap(&mut n);
            }
            if self.pollfds[1].revents != 0 {
                self.admit(listener, &mut n);
            }
        }
    }

    /// Accepts waiting connections while the table has room. A peer inside the pod (its pid
    /// reads other than 0 in the pod's PID namespace) is marked, to be refused once its
    /// request has been read (closing with the request unread would reset the connection
    /// before the caller reads why).
    fn admit(&mut self, listener: RawFd, n: &mut usize) {
        while *n < self.clients.len() {
            let Ok(fd) = sys::accept(listener) else {
                return;
            };
            let flags = match sys::peer_pid(fd) {
                Ok(0) => 0,
                _ => INSIDE,
            };
            self.clients[*n] = Client { fd, pid: 0, flags };
            *n += 1;
        }
    }

    /// Client `i` sent something: its request, or its hang-up.
    fn readable(&mut self, i: usize, n: &mut usize) {
        let client = self.clients[i];
        if client.pid != 0 {
            // The command runs: anything here is the caller hanging up (or breaking the
            // protocol, which ends the connection all the same).
            let mut scrap = [0u8; REPLY];
            match sys::recv_message(client.fd, &mut scrap, libc::MSG_DONTWAIT) {
                Err(libc::EAGAIN) => return,
                Ok(got) => close_received(&got),
                Err(_) => {}
            }
            if client.flags & KILL_ON_HANGUP != 0 {
                let _ = sys::kill(-client.pid, libc::SIGKILL);
                let _ = sys::kill(client.pid, libc::SIGKILL);
            }
            self.remove(i, n);
            return;
        }
        let got = match sys::recv_message(client.fd, &mut self.buf, libc::MSG_DONTWAIT) {
            Ok(got) => got,
            Err(libc::EAGAIN) => return,
            Err(_) => {
                self.remove(i, n);
                return;
            }
        };
        if got.len == 0 {
            close_received(&got);
            self.remove(i, n);
            return;
        }
        let outcome = if client.flags & INSIDE != 0 {
            // A command of the pod asking for another, maybe with fewer restrictions.
            Err(refused(libc::EPERM))
        } else {
            self.start(&got)
        };
        close_received(&got);
        match outcome {
            Ok((pid, flags)) => match send_reply(client.fd, SPAWNED, pid, 0, Some(pid)) {
                Ok(()) => {
                    self.clients[i].pid = pid;
                    self.clients[i].flags = flags;
                }
                // The caller is gone, or cannot be told which process it got: the command
                // would run with nobody to wait for it. Not reaped yet, so the group id is
                // still its own.
                Err(errno) => {
                    let _ = sys::kill(-pid, libc::SIGKILL);
                    let _ = sys::kill(pid, libc::SIGKILL);
                    let _ = send_reply(client.fd, FAILED, Step::Request as i32, errno, None);
                    self.remove(i, n);
                }
            },
            Err((step, errno)) => {
                let _ = send_reply(client.fd, FAILED, step as i32, errno, None);
                self.remove(i, n);
            }
        }
    }

    /// Parses the request in `buf` and forks its command: its pid and the request's flags.
    fn start(&mut self, got: &sys::Received) -> std::result::Result<(libc::pid_t, u32), Failure> {
        if got.truncated {
            return Err(refused(libc::E2BIG));
        }
        if got.len < HEADER || word(&self.buf, 0) != MAGIC {
            return Err(refused(libc::EINVAL));
        }
        let flags = word(&self.buf, 4);
        let limit = |v: u64| (v != NO_LIMIT).then_some(v);
        let rlimits = Rlimits {
            open_files: limit(long(&self.buf, 8)),
            file_size: limit(long(&self.buf, 16)),
        };
        let argc = word(&self.buf, 24) as usize;
        let envc = word(&self.buf, 28) as usize;
        let candc = word(&self.buf, 32) as usize;
        let stdio_mask = word(&self.buf, 36);
        let keep_caps = Capabilities::from_mask(long(&self.buf, 40));
        // The descriptors, in the order the caller attached them.
        let fds = &got.fds[..got.fd_count];
        let mut taken = 0;
        let mut take = || {
            let fd = fds.get(taken).copied().ok_or(refused(libc::EINVAL));
            taken += 1;
            // SAFETY: a descriptor received with the request: the holder's own, open until
            // `readable` closes it after this returns (the command's child has exec'd or
            // ended by then).
            fd.map(|fd| unsafe { BorrowedFd::borrow_raw(fd) })
        };
        let mut stdio = [None; 3];
        for (i, slot) in stdio.iter_mut().enumerate() {
            if stdio_mask & (1 << i) != 0 {
                *slot = Some(take()?);
            }
        }
        let landlock = if flags & LANDLOCK != 0 {
            Some(take()?)
        } else {
            None
        };
        let len = if flags & PAYLOAD_FD != 0 {
            let memfd = take()?;
            HEADER + sys::pread_all(memfd.as_raw_fd(), &mut self.buf[HEADER..]).map_err(refused)?
        } else {
            got.len
        };
        if taken != fds.len() {
            return Err(refused(libc::EINVAL));
        }
        if argc == 0 || argc + envc + candc > STRINGS_MAX {
            return Err(refused(if argc == 0 { libc::EINVAL } else { libc::E2BIG }));
        }
        let buf = &self.buf[..len];
        let mut pos = HEADER;
        let cwd = next_string(buf, &mut pos)?;
        let env_at = argc + 1;
        let cand_at = env_at + envc + 1;
        for k in 0..argc {
            self.ptrs[k] = next_string(buf, &mut pos)?;
        }
        self.ptrs[argc] = std::ptr::null();
        for k in env_at..env_at + envc {
            self.ptrs[k] = next_string(buf, &mut pos)?;
        }
        self.ptrs[env_at + envc] = std::ptr::null();
        for k in cand_at..cand_at + candc {
            self.ptrs[k] = next_string(buf, &mut pos)?;
        }
        if pos != len {
            return Err(refused(libc::EINVAL));
        }
        let caps = if flags & CAPS != 0 {
            let last = self.last_cap.ok_or((Step::DropCaps as u32, libc::EINVAL))?;
            Some((keep_caps, last))
        } else {
            None
        };
        let seccomp = if flags & SECCOMP != 0 {
            Some(&self.seccomp)
        } else if flags & SECCOMP_CONTAINER != 0 {
            Some(&self.seccomp_container)
        } else {
            None
        };
        let launch = Launch {
            candidates: &self.ptrs[cand_at..cand_at + candc],
            argv: &self.ptrs[..=argc],
            envp: &self.ptrs[env_at..=env_at + envc],
            // SAFETY: next_string found the NUL that ends it, inside `buf`.
            cwd: unsafe { CStr::from_ptr(cwd) },
            stdio,
            rlimits,
            no_new_privs: flags & NO_NEW_PRIVS != 0,
            caps,
            landlock,
            seccomp,
            // The holder is the parent; its death ends the pod's PID namespace anyway.
            die_with: None,
        };
        let (reader, writer) = raw_step_pipe().map_err(|e| (Step::Fork as u32, e))?;
        // The holder maps everything its creator had mapped: copying that for a fork would
        // cost more than the command's own start.
        // SAFETY: `Launch::exec` only makes system calls on memory prepared before (the request
        // parsed in place, the filters, this stack), drops nothing, and ends in `execve` or
        // `_exit`.
        let pid = unsafe { sys::vfork_on(&mut self.stack, || launch.exec(&writer)) }
            .map_err(|e| (Step::Fork as u32, e))?;
        drop(writer);
        let verdict = reader.next();
        drop(reader);
        match verdict {
            Ok(None) => Ok((pid, flags)),
            Ok(Some(failure)) => {
                let _ = sys::waitpid(pid, libc::__WALL);
                Err(failure)
            }
            Err(e) => {
                let _ = sys::kill(pid, libc::SIGKILL);
                let _ = sys::waitpid(pid, libc::__WALL);
                Err((Step::Fork as u32, e))
            }
        }
    }

    /// Reaps every ended child: a client's command after killing what it left in its group
    /// (when asked; the pid is not reaped yet, so the group id cannot have been reused), then
    /// reports its status; anything else (orphans the pod's PID 1 inherits) silently.
    fn reap(&mut self, n: &mut usize) {
        while let Some(pid) = sys::ended_child() {
            let owner = self.clients[..*n].iter().position(|c| c.pid == pid);
            if let Some(i) = owner
                && self.clients[i].flags & END_GROUP != 0
            {
                let _ = sys::kill(-pid, libc::SIGKILL);
            }
            let Ok((_, status)) = sys::waitpid(pid, libc::__WALL) else {
                return;
            };
            if let Some(i) = owner {
                let _ = send_reply(self.clients[i].fd, EXITED, status, 0, None);
                self.remove(i, n);
            }
        }
    }

    /// Closes client `i`'s connection and frees its slot.
    fn remove(&mut self, i: usize, n: &mut usize) {
        // SAFETY: the connection is the holder's own (accepted in `admit`), and its slot is
        // overwritten below: nothing uses the descriptor again.
        unsafe { sys::close(self.clients[i].fd) };
        *n -= 1;
        self.clients[i] = self.clients[*n];
    }
}

/// Sends one reply, naming `pid` in the credentials when given.
fn send_reply(
    fd: RawFd,
    kind: u32,
    a: i32,
    b: i32,
    pid: Option<libc::pid_t>,
) -> std::result::Result<(), Errno> {
    sys::send_message(fd, &reply_bytes(kind, a, b), &[], pid, libc::MSG_DONTWAIT)
}

#[cfg(test)]
mod tests {
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
