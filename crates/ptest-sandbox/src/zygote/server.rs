//! The holder's side of the socket: [`Zygote`], allocated before the holder is forked, then
//! its loop — accept callers from outside the pod, parse each request in place, start its
//! command on a borrowed stack ([`Launch::exec`]), report its end, reap every child.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use super::{
    CAPS, CLIENTS_MAX, END_GROUP, EXITED, FAILED, HEADER, INSIDE, KILL_ON_HANGUP, LANDLOCK, MAGIC,
    NO_LIMIT, NO_NEW_PRIVS, PAYLOAD_FD, REPLY, REQUEST_MAX, SECCOMP, SECCOMP_CONTAINER, SOCKET,
    SOCKET_DIR, SPAWNED, STACK, STRINGS_MAX, close_received, long, reply_bytes, word,
};
use crate::capability::Capabilities;
use crate::launch::{self, Launch, Step};
use crate::rlimit::Rlimits;
use crate::seccomp::{Filter, Profile};
use crate::step_pipe::raw_step_pipe;
use crate::sys::{self, Errno, ZeroPages};

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
    clients: ZeroPages<Client>,
    /// signalfd, listener, then one per client in `clients` order.
    pollfds: ZeroPages<libc::pollfd>,
    /// The [`Profile::Strict`] filter.
    seccomp: Filter,
    /// The [`Profile::Container`] filter.
    seccomp_container: Filter,
    /// For limiting capabilities; `None` if unreadable (such requests then fail).
    last_cap: Option<u32>,
    /// Where a command runs from its start to `execve` ([`sys::vfork_on`]).
    stack: ZeroPages<u8>,
}

// SAFETY: three integers; all-zero is a valid (unused) entry.
unsafe impl sys::Zeroable for Client {}

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
            // Entries are written before they are read (the first `n`), so they need no
            // filling: a table's pages are touched only as far as connections reach.
            clients: ZeroPages::new(CLIENTS_MAX)?,
            pollfds: ZeroPages::new(CLIENTS_MAX + 2)?,
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
