//! A holder in a fresh image: a program that opts in ([`hold_pods_in_program`],
//! [`hold_pods_in_this_program`]) has its pod holders execute a program once their view is
//! ready, and [`serve_if_holder`], called first in that program's `main`, turns the new image
//! into the holder's command server.
//!
//! A holder that only forks keeps every page its creator had written: the creator's heap,
//! its dead stack frames, the relocated data of its image. When a short-lived `ptest env
//! create` exits, those pages become the holder's own, about 1 MB of private memory for each
//! idle environment. After `execve` the holder holds what a small process holds (its
//! command server's buffers are mapped untouched), and the smaller the program the less:
//! every page of a program's relocated data (its GOT, `.data.rel.ro`) is written at start and
//! private to each holder, so a program that links only the holder
//! ([`hold_pods_in_program`]) costs less than one that re-executes a large binary
//! ([`hold_pods_in_this_program`]). A library caller (the Python package, a test binary) does
//! not opt in: its holders fork only, as before, sharing the still-living caller's pages.
//!
//! The protocol between the two images is fixed: the new image is started with
//! [`ARG0`] as its only argument, as PID 1 of the pod, with the listening socket at
//! [`LISTENER_FD`], the SIGCHLD signalfd at [`SIGNALS_FD`] (SIGCHLD still blocked: `execve`
//! keeps the mask) and the step pipe at [`REPORT_FD`], on which it reports readiness. The
//! program must therefore be built from this same crate as its creator (the command server's
//! requests are this crate's too).

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::OnceLock;

use crate::step_pipe::StepWriter;
use crate::sys;
use crate::zygote::Zygote;

/// The holder's command line, as `ps` shows it.
pub(super) const ARG0: &CStr = c"ptest-pod-holder";
pub(super) const LISTENER_FD: RawFd = 3;
pub(super) const SIGNALS_FD: RawFd = 4;
pub(super) const REPORT_FD: RawFd = 5;

/// The program holders execute, opened once by [`hold_pods_in_program`].
static PROGRAM: OnceLock<OwnedFd> = OnceLock::new();

/// Makes the pod holders this process creates from now on execute `program`, whose `main`
/// must call [`serve_if_holder`] before anything else, so that an idle pod costs a small
/// process's memory rather than a copy of this one's. The smaller `program` is, the less each
/// idle pod holds: a program that does nothing but [`serve_if_holder`] (as ptest's
/// `ptest-pod-holder`) holds less than [`hold_pods_in_this_program`]'s re-executed caller.
///
/// `program` is opened now (`O_PATH`, close-on-exec) and that file is what every holder runs,
/// whatever later happens to the path; the first call that succeeds wins. Holders execute it
/// with their creator's privileges, so it must be as trusted as the caller's own binary (the
/// `ptest` CLI takes the one installed beside itself) and built from the same version of this
/// crate. Errors are those of `open(2)`: a `NotFound` leaves the caller free to fall back.
pub fn hold_pods_in_program(program: &Path) -> std::io::Result<()> {
    if PROGRAM.get().is_none() {
        let fd = rustix::fs::open(
            program,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let _ = PROGRAM.set(fd);
    }
    Ok(())
}

/// Makes the pod holders this process creates from now on re-execute its own program (which
/// must call [`serve_if_holder`] before anything else in `main`): [`hold_pods_in_program`]
/// with `/proc/self/exe`, for a program that ships no smaller holder.
pub fn hold_pods_in_this_program() -> std::io::Result<()> {
    hold_pods_in_program(Path::new("/proc/self/exe"))
}

/// The program holders execute, if this process opted in.
pub(super) fn program() -> Option<BorrowedFd<'static>> {
    PROGRAM.get().map(AsFd::as_fd)
}

/// In a holder's new image (see the module docs), serves the pod's commands and never
/// returns; in any other process, returns at once.
///
/// Call it first in `main`, before any thread or descriptor exists: the holder is recognised
/// by its only argument being `ptest-pod-holder` while it is PID 1, which no command line of a
/// program started the ordinary way has.
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
