//! A holder in a fresh image: a program that opts in ([`hold_pods_in_this_program`]) has its
//! pod holders re-execute it once their view is ready, and [`serve_if_holder`], called first
//! in its `main`, turns that new image into the holder's command server.
//!
//! A holder that only forks keeps every page its creator had written: the creator's heap,
//! its dead stack frames, the relocated data of its image. When a short-lived `ptest env
//! create` exits, those pages become the holder's own, about 1 MB of private memory for each
//! idle environment. After `execve` the holder holds what a small process holds (its
//! command server's buffers are mapped untouched). A library caller (the Python package, a
//! test binary) does not opt in: its holders fork only, as before, sharing the still-living
//! caller's pages.
//!
//! The protocol between the two images is fixed: the new image is started with
//! [`ARG0`] as its only argument, as PID 1 of the pod, with the listening socket at
//! [`LISTENER_FD`], the SIGCHLD signalfd at [`SIGNALS_FD`] (SIGCHLD still blocked: `execve`
//! keeps the mask) and the step pipe at [`REPORT_FD`], on which it reports readiness.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use crate::step_pipe::StepWriter;
use crate::sys;
use crate::zygote::Zygote;

/// The holder's command line, as `ps` shows it.
pub(super) const ARG0: &CStr = c"ptest-pod-holder";
pub(super) const LISTENER_FD: RawFd = 3;
pub(super) const SIGNALS_FD: RawFd = 4;
pub(super) const REPORT_FD: RawFd = 5;

/// This program's own image, opened once by [`hold_pods_in_this_program`].
static PROGRAM: OnceLock<OwnedFd> = OnceLock::new();

/// Makes the pod holders this process creates from now on re-execute its program (which must
/// call [`serve_if_holder`] before anything else in `main`), so that an idle pod costs a
/// small process's memory rather than a copy of this one's.
pub fn hold_pods_in_this_program() -> std::io::Result<()> {
    if PROGRAM.get().is_none() {
        let exe = rustix::fs::open(
            "/proc/self/exe",
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let _ = PROGRAM.set(exe);
    }
    Ok(())
}

/// The program holders re-execute, if this process opted in.
pub(super) fn program() -> Option<BorrowedFd<'static>> {
    PROGRAM.get().map(AsFd::as_fd)
}

/// In a re-executed holder (see the module docs), serves the pod's commands and never
/// returns; in any other process, returns at once.
///
/// Call it first in `main`, before any thread or descriptor exists: the holder is recognised
/// by its only argument being `ptest-pod-holder` while it is PID 1, which no command line of a program
/// started the ordinary way has.
pub fn serve_if_holder() {
    let mut args = std::env::args_os();
    let is_holder = args
        .next()
        .is_some_and(|a| a.as_encoded_bytes() == ARG0.to_bytes())
        && args.next().is_none()
        && sys::getpid() == 1;
    if !is_holder {
        return;
    }
    // SAFETY: in this fresh image nothing owns a descriptor above the protocol's; strays
    // (descriptors the old image left without close-on-exec) are closed.
    unsafe { sys::close_from(REPORT_FD + 1) };
    // SAFETY: the old image put the step pipe's write end at REPORT_FD for this image alone.
    let report = StepWriter::from(unsafe { OwnedFd::from_raw_fd(REPORT_FD) });
    let zygote = match Zygote::new() {
        Ok(zygote) => zygote,
        Err(e) => report.fail(super::holder::PROGRAM_FAILED, e),
    };
    report.send(super::holder::READY, 0);
    drop(report);
    zygote.serve(LISTENER_FD, SIGNALS_FD)
}

/// In the holder, ready to serve: moves the listening socket, the signalfd and the step pipe
/// to the protocol's numbers and executes `program` as [`ARG0`], with no environment. Returns
/// only on failure, with the errno. Async-signal-safe.
///
/// # Safety
///
/// The caller never returns to code that owns descriptors 3 to 5 (they are replaced): a
/// forked holder that becomes the new image or exits.
pub(super) unsafe fn exec(
    program: BorrowedFd<'_>,
    listener: RawFd,
    signals: RawFd,
    report: &StepWriter,
) -> sys::Errno {
    let moved = || -> Result<RawFd, sys::Errno> {
        // Above the targets first: a source may sit on another's target number.
        // SAFETY: the three sources are open for the holder's life (created by it).
        let sources = unsafe {
            [
                BorrowedFd::borrow_raw(listener),
                BorrowedFd::borrow_raw(signals),
                BorrowedFd::borrow_raw(std::os::fd::AsRawFd::as_raw_fd(report)),
            ]
        };
        let program = sys::dup_above(program, REPORT_FD + 1)?;
        let mut high = [0; 3];
        for (slot, source) in high.iter_mut().zip(sources) {
            *slot = sys::dup_above(source, REPORT_FD + 1)?;
        }
        for (target, fd) in [LISTENER_FD, SIGNALS_FD, REPORT_FD].into_iter().zip(high) {
            // SAFETY: `fd` was just made; the caller gives the target numbers up.
            unsafe { sys::dup2(BorrowedFd::borrow_raw(fd), target)? };
        }
        Ok(program)
    };
    let program = match moved() {
        Ok(fd) => fd,
        Err(e) => return e,
    };
    let argv = [ARG0.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: `program` is open (just duplicated, close-on-exec: gone in the new image).
    sys::execveat(unsafe { BorrowedFd::borrow_raw(program) }, &argv, &envp)
}
