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
//!    [`Launch::exec`](crate::launch::Launch::exec) (the same steps as a relay's child);
//! 3. the holder answers `SPAWNED` with credentials naming the command (`SCM_CREDENTIALS`:
//!    the kernel translates the pid into the caller's PID namespace, unlike a pid in the
//!    data), or `FAILED` with the step and errno;
//! 4. when the command ends the holder (with `end_group_on_exit`) SIGKILLs what it left in its
//!    process group before reaping it, and sends `EXITED` with the raw wait status. If the
//!    connection hangs up first (the caller dropped it or died), the holder SIGKILLs the
//!    command's process group, unless the command was to outlive its caller.
//!
//! The holder was forked from a possibly multi-threaded program and, unless that program
//! opted in to a fresh image ([`crate::hold_pods_in_program`],
//! [`crate::hold_pods_in_this_program`]), never execs, so it must not allocate: everything it
//! uses (request buffer, pointer array, client table, poll array, seccomp filter) is
//! allocated by [`Zygote::new`] before the fork, and its loop (one `poll`
//! over a signalfd for SIGCHLD, the listening socket and the clients) makes only system calls.
//!
//! One file per side of the socket: [`client`] is the caller's (encode the request, read the
//! answer, wait on the [`Connection`]), [`server`] the holder's ([`Zygote`]); here, the
//! protocol both speak.

mod client;
mod server;

pub(crate) use client::{Connection, spawn};
pub(crate) use server::Zygote;

use std::ffi::CStr;

use crate::sys;

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
/// The [`Profile::Strict`](crate::seccomp::Profile::Strict) filter; with [`SECCOMP_CONTAINER`], the other one.
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

/// Closes the descriptors that came with a message (none is expected, or they have served).
fn close_received(got: &sys::Received) {
    for &fd in &got.fds[..got.fd_count] {
        // SAFETY: the kernel gave these descriptors to this process with the message; nothing
        // else holds them, and they are used no more.
        unsafe { sys::close(fd) };
    }
}
