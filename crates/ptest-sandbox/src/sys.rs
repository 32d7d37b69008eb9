//! Thin wrappers over the raw system calls this crate makes.
//!
//! Everything here is async-signal-safe: no allocation, no locks, only system calls and stack
//! buffers. That is what lets [`crate::pod`], [`crate::launch`] and [`crate::relay`] call
//! these functions between `fork` and `execve` in a child of a multi-threaded program. Errors
//! are plain `errno` values; the parent side turns them into [`std::io::Error`]s.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

/// An `errno` value.
pub(crate) type Errno = i32;

/// The calling thread's current `errno`.
pub(crate) fn errno() -> Errno {
    // SAFETY: `__errno_location` always returns a valid pointer to the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

fn check(ret: libc::c_int) -> Result<libc::c_int, Errno> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

fn check_long(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

/// `fork(2)`: `Ok(0)` in the child, `Ok(pid)` in the parent.
pub(crate) fn fork() -> Result<libc::pid_t, Errno> {
    // SAFETY: fork has no memory-safety preconditions; callers only run async-signal-safe code
    // in the child (documented on every caller).
    let pid = unsafe { libc::fork() };
    if pid < 0 { Err(errno()) } else { Ok(pid) }
}

/// `clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn` does: runs `child` on `stack` in this
/// process's memory and returns its pid once it has called `execve` or ended. No page tables
/// are copied, which makes it several times cheaper than `fork` for a process with much
/// memory mapped.
///
/// # Safety
///
/// `child` runs in this process's memory while the parent is suspended: it must only make
/// system calls on memory prepared beforehand (no allocation, no locks, nothing that drops a
/// value the parent still uses; its writes, errno included, land in the parent's memory), and
/// it must end in `execve` or `_exit` (returning would exit with its value too, but after
/// running on a borrowed stack).
pub(crate) unsafe fn vfork_on<F: FnOnce() -> libc::c_int>(
    stack: &mut [u8],
    child: F,
) -> Result<libc::pid_t, Errno> {
    extern "C" fn start<F: FnOnce() -> libc::c_int>(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` points at the parent's `ManuallyDrop<F>`, read exactly once here; the
        // parent never uses or drops it.
        let child = unsafe { std::ptr::read(arg.cast::<F>()) };
        child()
    }
    let mut child = std::mem::ManuallyDrop::new(child);
    // The stack grows down from its end, which must be 16-byte aligned.
    let end = stack.as_mut_ptr_range().end as usize & !15;
    // SAFETY: `start::<F>` matches clone's callback type; the stack is ours and outlives the
    // child's use of it (the parent is suspended until execve or exit); `arg` stays valid for
    // the same reason.
    let pid = unsafe {
        libc::clone(
            start::<F>,
            end as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut *child as *mut F).cast(),
        )
    };
    if pid < 0 { Err(errno()) } else { Ok(pid) }
}

/// Types whose all-zero bit pattern is a valid value (so [`ZeroPages`] can hold them).
///
/// # Safety
///
/// An implementor must be valid when every byte of it is zero: [`ZeroPages`] hands out
/// references to zero-filled memory as values of the type without writing one first.
pub(crate) unsafe trait Zeroable: Copy {}
// SAFETY: every bit pattern is a valid u8.
unsafe impl Zeroable for u8 {}
// SAFETY: all-zero is the null pointer, a valid raw pointer value.
unsafe impl Zeroable for *const libc::c_char {}
// SAFETY: three integers; all-zero polls descriptor 0 for nothing.
unsafe impl Zeroable for libc::pollfd {}

/// `len` zeroed values in anonymous memory straight from the kernel (`mmap`): pages that cost
/// nothing until touched, whatever state malloc's heap is in. A large `calloc` in a process
/// whose heap has grown is served from the heap and writes every page (milliseconds for a few
/// MiB), and a later `fork` then copies all those page-table entries.
pub(crate) struct ZeroPages<T: Zeroable> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
}

impl<T: Zeroable> ZeroPages<T> {
    pub(crate) fn new(len: usize) -> Result<ZeroPages<T>, Errno> {
        let bytes = len.max(1) * std::mem::size_of::<T>();
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(errno());
        }
        let ptr = std::ptr::NonNull::new(ptr.cast::<T>()).ok_or(libc::ENOMEM)?;
        Ok(ZeroPages { ptr, len })
    }
}

impl<T: Zeroable> std::ops::Deref for ZeroPages<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the mapping holds `len` values, zero-initialized (valid for `Zeroable`), and
        // lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> std::ops::DerefMut for ZeroPages<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> Drop for ZeroPages<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; nothing borrows it any more.
        unsafe {
            libc::munmap(
                self.ptr.as_ptr().cast(),
                self.len.max(1) * std::mem::size_of::<T>(),
            )
        };
    }
}

/// `_exit(2)`: leave immediately, without running atexit handlers or flushing stdio.
pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no user-space state.
    unsafe { libc::_exit(code) }
}

/// `write(2)` the whole buffer, retrying on `EINTR` and short writes.
pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid readable slice of buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// `close(2)`, ignoring errors.
///
/// # Safety
///
/// The caller owns `fd` and nothing uses it afterwards: a raw descriptor it made or received,
/// or, in a forked child that never returns to the code owning it, any descriptor.
pub(crate) unsafe fn close(fd: RawFd) {
    // SAFETY: the caller gives `fd` up (see above); errors (EBADF) are harmless here.
    unsafe { libc::close(fd) };
}

/// Moves the calling process into a cgroup by writing `0` ("the caller") to `fd`, one of
/// [`Cgroup::procs_files`](crate::Cgroup::procs_files) opened earlier. The caller must be
/// single-threaded (a forked child): on v1 that file is `tasks`, which moves one thread.
pub(crate) fn write_own_pid(fd: RawFd) -> Result<(), Errno> {
    write_all(fd, b"0")
}

/// `getpid(2)`.
pub(crate) fn getpid() -> libc::pid_t {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// `getppid(2)`.
pub(crate) fn getppid() -> libc::pid_t {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() }
}

/// `setsid(2)`.
pub(crate) fn setsid() -> Result<(), Errno> {
    // SAFETY: no pointers involved.
    check(unsafe { libc::setsid() }).map(drop)
}

/// `setpgid(0, 0)`: become leader of a new process group.
pub(crate) fn setpgid_self() -> Result<(), Errno> {
    // SAFETY: no pointers involved.
    check(unsafe { libc::setpgid(0, 0) }).map(drop)
}

/// `unshare(2)`.
pub(crate) fn unshare(flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: no pointers involved.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

/// `setns(2)`.
pub(crate) fn setns(fd: RawFd, nstype: libc::c_int) -> Result<(), Errno> {
    // SAFETY: fd is a namespace fd the caller opened; no pointers involved.
    check(unsafe { libc::setns(fd, nstype) }).map(drop)
}

/// `prctl(PR_SET_PDEATHSIG, sig)`.
pub(crate) fn set_pdeathsig(sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: PR_SET_PDEATHSIG takes a plain integer argument.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) }).map(drop)
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
pub(crate) fn set_no_new_privs() -> Result<(), Errno> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
}

/// Limits the capabilities to `keep` (bit `n`: capability `n`): drops the others from the
/// bounding set (0..=`last_cap`), clears the ambient set, then sets effective, permitted and
/// inheritable to `keep` (what the process has of it). Async-signal-safe.
pub(crate) fn limit_capabilities(keep: u64, last_cap: u32) -> Result<(), Errno> {
    for cap in 0..=last_cap {
        if cap < 64 && keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a plain integer argument.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if ret < 0 && errno() != libc::EINVAL {
            return Err(errno());
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes plain integer arguments.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if ret < 0 && errno() != libc::EINVAL {
        return Err(errno());
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // What the process has now, so that the new sets only ever shrink.
    let mut now = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and now have the layout capget(2) expects for version 3 (two data
    // structs); both live for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            now.as_mut_ptr(),
        )
    };
    check_long(ret)?;
    let halves = [keep as u32, (keep >> 32) as u32];
    let mut data = now;
    for (d, k) in data.iter_mut().zip(halves) {
        d.permitted &= k;
        d.effective = d.permitted;
        d.inheritable &= d.permitted;
    }
    // SAFETY: as for capget above.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    check_long(ret).map(drop)
}

/// `mount(2)`.
pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    // SAFETY: every pointer is either null or a NUL-terminated string that outlives the call.
    let ret = unsafe {
        libc::mount(
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast(),
        )
    };
    check(ret).map(drop)
}

/// `umount2(2)`.
pub(crate) fn umount2(target: &CStr, flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: target is a NUL-terminated string.
    check(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// `MOUNT_ATTR_*` flags of `mount_setattr(2)`.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// Sets `attrs` (`MOUNT_ATTR_*`) on the mount at `target` and every mount below it
/// (`mount_setattr(2)`, Linux 5.12+; older kernels: a bind remount of the top mount only).
pub(crate) fn set_mount_attrs(target: &CStr, attrs: u64) -> Result<(), Errno> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: target is NUL-terminated, attr is a valid mount_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    match check_long(ret) {
        Ok(_) => Ok(()),
        Err(libc::ENOSYS) => {
            let mut flags = libc::MS_BIND | libc::MS_REMOUNT;
            for (attr, flag) in [
                (MOUNT_ATTR_RDONLY, libc::MS_RDONLY),
                (MOUNT_ATTR_NOSUID, libc::MS_NOSUID),
                (MOUNT_ATTR_NODEV, libc::MS_NODEV),
                (MOUNT_ATTR_NOEXEC, libc::MS_NOEXEC),
            ] {
                if attrs & attr != 0 {
                    flags |= flag;
                }
            }
            mount(None, target, None, flags, None)
        }
        Err(e) => Err(e),
    }
}

/// `mkdir(2)`; an existing directory is success.
pub(crate) fn mkdir(path: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: path is NUL-terminated.
    match check(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Ok(_) => Ok(()),
        Err(libc::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates an empty regular file (a bind-mount target); an existing file is success.
pub(crate) fn touch(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is NUL-terminated; the returned fd is closed right away.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            // Read-only: an existing file being executed (a bound binary) refuses writers.
            libc::O_RDONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        let e = errno();
        return if e == libc::EEXIST || e == libc::EROFS || e == libc::EISDIR {
            Ok(())
        } else {
            Err(e)
        };
    }
    // SAFETY: `fd` was opened above and is used no more.
    unsafe { close(fd) };
    Ok(())
}

/// `symlink(2)`; an existing path is success.
pub(crate) fn symlink(target: &CStr, link: &CStr) -> Result<(), Errno> {
    // SAFETY: both are NUL-terminated strings.
    match check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }) {
        Ok(_) | Err(libc::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `pivot_root(2)`.
pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
    // SAFETY: both are NUL-terminated strings.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check_long(ret).map(drop)
}

/// `chdir(2)`.
pub(crate) fn chdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// `fchdir(2)`.
pub(crate) fn fchdir(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: no pointers involved.
    check(unsafe { libc::fchdir(fd) }).map(drop)
}

/// `chroot(2)`.
pub(crate) fn chroot(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
}

/// `sethostname(2)`.
pub(crate) fn sethostname(name: &[u8]) -> Result<(), Errno> {
    // SAFETY: name is a valid slice of name.len() bytes.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// Brings the loopback interface of the current network namespace up (`SIOCSIFFLAGS`).
pub(crate) fn loopback_up() -> Result<(), Errno> {
    #[repr(C)]
    struct IfReqFlags {
        name: [u8; 16],
        flags: libc::c_short,
        pad: [u8; 22],
    }
    const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
    const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
    // SAFETY: plain socket(2) call.
    let sock =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    let mut req = IfReqFlags {
        name: [0; 16],
        flags: 0,
        pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: req is a properly sized, initialised struct ifreq for these ioctls.
    let result = check(unsafe { libc::ioctl(sock, SIOCGIFFLAGS, &mut req as *mut IfReqFlags) })
        .and_then(|_| {
            req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            // SAFETY: as above.
            check(unsafe { libc::ioctl(sock, SIOCSIFFLAGS, &mut req as *mut IfReqFlags) })
        });
    // SAFETY: `sock` was made above and is used no more.
    unsafe { close(sock) };
    result.map(drop)
}

/// `dup2(2)`: `to` becomes a copy of `from`, closing what `to` was.
///
/// # Safety
///
/// Nothing else owns or uses `to` (what it named is closed under its owner's feet): the
/// standard descriptors of a forked child that is about to exec or never returns.
pub(crate) unsafe fn dup2(from: BorrowedFd<'_>, to: RawFd) -> Result<(), Errno> {
    // SAFETY: `from` is open (borrowed); the caller gives `to` up (see above).
    check(unsafe { libc::dup2(from.as_raw_fd(), to) }).map(drop)
}

/// Duplicates `fd` to a number ≥ `min`, with close-on-exec set: a descriptor the caller owns.
pub(crate) fn dup_above(fd: BorrowedFd<'_>, min: RawFd) -> Result<RawFd, Errno> {
    // SAFETY: F_DUPFD_CLOEXEC only makes a new descriptor; `fd` is open (borrowed).
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })
}

/// Whether `fd` is open in this process (a number, not a borrowed descriptor: it may not be).
pub(crate) fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; a closed number is EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Marks every fd from `first` upwards close-on-exec (`close_range(2)`, Linux 5.11+).
/// Errors are ignored: this is defence in depth, the crate's own fds are already CLOEXEC.
pub(crate) fn cloexec_from(first: RawFd) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: no pointers involved.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// Closes every fd from `first` upwards.
///
/// # Safety
///
/// Nothing uses those descriptors afterwards: a forked child that never returns to the code
/// owning them.
pub(crate) unsafe fn close_from(first: RawFd) {
    // SAFETY: the caller gives those descriptors up (see above).
    unsafe { close_all_but(first, &[]) }
}

/// Closes every fd from `first` upwards except those in `keep` (ascending), one
/// `close_range(2)` per gap, falling back to a loop where the kernel lacks it (before 5.9).
///
/// # Safety
///
/// As for [`close_from`]: nothing uses the closed descriptors afterwards.
pub(crate) unsafe fn close_all_but(first: RawFd, keep: &[RawFd]) {
    let close_range = |first: RawFd, last: libc::c_uint| {
        // SAFETY: no pointers involved; the caller gives these descriptors up.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                last,
                0 as libc::c_uint,
            )
        };
        if ret < 0 {
            for fd in first..=last.min(4095) as RawFd {
                // SAFETY: as above.
                unsafe { close(fd) };
            }
        }
    };
    let mut next = first;
    for &fd in keep {
        if fd > next {
            close_range(next, (fd - 1) as libc::c_uint);
        }
        next = next.max(fd + 1);
    }
    close_range(next, libc::c_uint::MAX);
}

/// `setrlimit(2)` with soft = hard = `value`.
pub(crate) fn setrlimit(resource: libc::__rlimit_resource_t, value: u64) -> Result<(), Errno> {
    let lim = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: lim is a valid rlimit.
    check(unsafe { libc::setrlimit(resource, &lim) }).map(drop)
}

/// Resets every catchable signal to its default action and unblocks all signals.
pub(crate) fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    set_signal_mask(&[], libc::SIG_SETMASK);
}

/// Changes the signal mask: `how` is `SIG_BLOCK`, `SIG_UNBLOCK` or `SIG_SETMASK`.
pub(crate) fn set_signal_mask(signals: &[libc::c_int], how: libc::c_int) {
    // SAFETY: set is initialised by sigemptyset before use and lives on the stack.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(how, &set, ptr::null_mut());
    }
}

/// `waitpid(2)`, retrying on `EINTR`. Returns the pid and raw status.
pub(crate) fn waitpid(pid: libc::pid_t, flags: libc::c_int) -> Result<(libc::pid_t, i32), Errno> {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok((ret, status));
    }
}

/// Waits until child `pid` has exited, leaving it unreaped (`waitid(P_PID, WEXITED |
/// WNOWAIT)`, retrying on `EINTR`): its pid, and so its process group id, stays taken.
pub(crate) fn wait_exited(pid: libc::pid_t) -> Result<(), Errno> {
    loop {
        // SAFETY: info is a valid out-pointer of the size waitid writes.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall with a valid pointer.
        let ret = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        match check(ret) {
            Err(libc::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// `kill(2)`.
pub(crate) fn kill(pid: libc::pid_t, sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: no pointers involved.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// `execve(2)`; returns only on failure.
pub(crate) fn execve(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> Errno {
    // SAFETY: argv and envp are NULL-terminated arrays of pointers to NUL-terminated strings
    // owned by the caller (built before fork and alive until exec).
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    errno()
}

/// `execveat(2)` of the file `program` is open on (`AT_EMPTY_PATH`; an `O_PATH` descriptor
/// will do); returns only on failure.
pub(crate) fn execveat(
    program: BorrowedFd<'_>,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> Errno {
    // SAFETY: argv and envp are NULL-terminated arrays of pointers to NUL-terminated strings
    // owned by the caller and alive until exec; the path is the empty string.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            program.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    errno()
}

/// Installs `handler` for `sig` (plain `sa_handler`, `SA_RESTART`).
pub(crate) fn set_handler(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: action is zero-initialised then filled; handler is a valid extern "C" fn that
    // only makes async-signal-safe calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, ptr::null_mut());
    }
}

/// `read(2)`, retrying on `EINTR`.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: buf is a valid writable slice of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Reads the whole file `fd` from offset 0 into `buf` (`pread(2)`): its length, or `E2BIG`
/// when it does not fit.
pub(crate) fn pread_all(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut got = 0;
    loop {
        let rest = &mut buf[got..];
        if rest.is_empty() {
            let mut probe = [0u8; 1];
            // SAFETY: probe is a valid writable buffer of 1 byte.
            let n = unsafe { libc::pread(fd, probe.as_mut_ptr().cast(), 1, got as libc::off_t) };
            return if n == 0 { Ok(got) } else { Err(libc::E2BIG) };
        }
        // SAFETY: rest is a valid writable slice of rest.len() bytes.
        let n =
            unsafe { libc::pread(fd, rest.as_mut_ptr().cast(), rest.len(), got as libc::off_t) };
        match n {
            0 => return Ok(got),
            n if n > 0 => got += n as usize,
            _ if errno() == libc::EINTR => {}
            _ => return Err(errno()),
        }
    }
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub(crate) fn pipe() -> Result<(RawFd, RawFd), Errno> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

/// A close-on-exec Unix `SOCK_SEQPACKET` socket: messages keep their boundaries, and the
/// peer's hang-up is seen (the pod holder's command socket, see [`crate::zygote`]). `flags`
/// may add `SOCK_NONBLOCK`.
pub(crate) fn seqpacket_socket(flags: libc::c_int) -> Result<RawFd, Errno> {
    // SAFETY: plain socket(2) call.
    check(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | flags,
            0,
        )
    })
}

/// The `sockaddr_un` of `path` and its length; `ENAMETOOLONG` past `sun_path`.
fn unix_address(path: &CStr) -> Result<(libc::sockaddr_un, libc::socklen_t), Errno> {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let bytes = path.to_bytes_with_nul();
    if bytes.len() > addr.sun_path.len() {
        return Err(libc::ENAMETOOLONG);
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len();
    Ok((addr, len as libc::socklen_t))
}

/// `bind(2)` to `path`, then `listen(2)`.
pub(crate) fn bind_listen(fd: RawFd, path: &CStr) -> Result<(), Errno> {
    let (addr, len) = unix_address(path)?;
    // SAFETY: addr is a valid sockaddr_un of length len.
    check(unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_un).cast(), len) })?;
    // SAFETY: no pointers involved.
    check(unsafe { libc::listen(fd, 128) }).map(drop)
}

/// `connect(2)` to `path`.
pub(crate) fn connect(fd: RawFd, path: &CStr) -> Result<(), Errno> {
    let (addr, len) = unix_address(path)?;
    loop {
        // SAFETY: addr is a valid sockaddr_un of length len.
        match check(unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) }) {
            Err(libc::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// `accept4(2)`: a close-on-exec, non-blocking connection.
pub(crate) fn accept(fd: RawFd) -> Result<RawFd, Errno> {
    // SAFETY: null address pointers are allowed.
    check(unsafe {
        libc::accept4(
            fd,
            ptr::null_mut(),
            ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    })
}

/// `setsockopt(2)` of an `int` option.
pub(crate) fn set_socket_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> Result<(), Errno> {
    // SAFETY: value is a valid int of the size passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The pid of a Unix socket's peer as it was when it connected (or listened), in the calling
/// process's PID namespace: 0 for a process outside it (`SO_PEERCRED`).
pub(crate) fn peer_pid(fd: RawFd) -> Result<libc::pid_t, Errno> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred is a valid ucred and len its size.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(cred.pid)
}

/// Most descriptors one message carries (`SCM_RIGHTS`).
pub(crate) const MAX_FDS: usize = 8;

/// Control-message room for [`MAX_FDS`] descriptors and one `ucred`, aligned for `cmsghdr`.
type ControlBuffer = [u64; 16];

/// Sends one message with `fds` attached (`SCM_RIGHTS`) and, given a pid, credentials naming
/// that process (`SCM_CREDENTIALS`: the kernel translates the pid into the receiver's PID
/// namespace; naming another process than oneself takes `CAP_SYS_ADMIN` there). `flags` may
/// add `MSG_DONTWAIT`; never raises SIGPIPE.
pub(crate) fn send_message(
    fd: RawFd,
    data: &[u8],
    fds: &[RawFd],
    sender: Option<libc::pid_t>,
    flags: libc::c_int,
) -> Result<(), Errno> {
    if fds.len() > MAX_FDS {
        return Err(libc::EINVAL);
    }
    let mut control: ControlBuffer = [0; 16];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the sendmsg call,
    // and the CMSG_* helpers stay within `control` (sized for MAX_FDS fds and one ucred).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        let rights_len = std::mem::size_of_val(fds) as libc::c_uint;
        let cred_len = std::mem::size_of::<libc::ucred>() as libc::c_uint;
        let mut space = 0;
        if !fds.is_empty() {
            space += libc::CMSG_SPACE(rights_len) as usize;
        }
        if sender.is_some() {
            space += libc::CMSG_SPACE(cred_len) as usize;
        }
        if space > 0 {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            if !fds.is_empty() {
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(rights_len) as _;
                ptr::copy_nonoverlapping(
                    fds.as_ptr(),
                    libc::CMSG_DATA(cmsg).cast::<RawFd>(),
                    fds.len(),
                );
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            if let Some(pid) = sender {
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_CREDENTIALS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(cred_len) as _;
                let cred = libc::ucred {
                    pid,
                    uid: libc::getuid(),
                    gid: libc::getgid(),
                };
                ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::ucred>(), cred);
            }
        }
        loop {
            let n = libc::sendmsg(fd, &msg, flags | libc::MSG_NOSIGNAL);
            if n >= 0 {
                return Ok(());
            }
            if errno() != libc::EINTR {
                return Err(errno());
            }
        }
    }
}

/// What [`recv_message`] got.
pub(crate) struct Received {
    /// Bytes of data (0: the peer hung up).
    pub(crate) len: usize,
    /// Descriptors that came with it (close-on-exec), the first `fd_count` of them.
    pub(crate) fds: [RawFd; MAX_FDS],
    pub(crate) fd_count: usize,
    /// The data or the descriptors did not fit: the message is incomplete.
    pub(crate) truncated: bool,
    /// The pid in the sender's credentials (with `SO_PASSCRED` on).
    pub(crate) sender: Option<libc::pid_t>,
}

/// Receives one message into `buf` (`recvmsg(2)`, `MSG_CMSG_CLOEXEC`); `flags` may add
/// `MSG_DONTWAIT`.
pub(crate) fn recv_message(
    fd: RawFd,
    buf: &mut [u8],
    flags: libc::c_int,
) -> Result<Received, Errno> {
    let mut control: ControlBuffer = [0; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut out = Received {
        len: 0,
        fds: [-1; MAX_FDS],
        fd_count: 0,
        truncated: false,
        sender: None,
    };
    // SAFETY: an all-zero msghdr is valid; iov and control outlive the call; the CMSG_*
    // helpers only walk what the kernel wrote within msg_controllen.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of::<ControlBuffer>() as _;
        let n = loop {
            let n = libc::recvmsg(fd, &mut msg, flags | libc::MSG_CMSG_CLOEXEC);
            if n >= 0 {
                break n as usize;
            }
            if errno() != libc::EINTR {
                return Err(errno());
            }
        };
        out.len = n;
        out.truncated = msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            let data_len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    for i in 0..data_len / std::mem::size_of::<RawFd>() {
                        let got = ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        if out.fd_count < MAX_FDS {
                            out.fds[out.fd_count] = got;
                            out.fd_count += 1;
                        } else {
                            // A descriptor the kernel just gave this process, used no more.
                            close(got);
                            out.truncated = true;
                        }
                    }
                }
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                    let cred = ptr::read_unaligned(data.cast::<libc::ucred>());
                    out.sender = Some(cred.pid);
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(out)
}

/// `poll(2)` without timeout; an interrupted call is `Ok(0)`.
pub(crate) fn poll(fds: &mut [libc::pollfd]) -> Result<usize, Errno> {
    // SAFETY: fds is a valid array of fds.len() pollfd structs.
    match check(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) }) {
        Ok(n) => Ok(n as usize),
        Err(libc::EINTR) => Ok(0),
        Err(e) => Err(e),
    }
}

/// A non-blocking, close-on-exec `signalfd(2)` for `signals` (which must be blocked).
pub(crate) fn signalfd(signals: &[libc::c_int]) -> Result<RawFd, Errno> {
    // SAFETY: set is initialised by sigemptyset before use and lives on the stack.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        check(libc::signalfd(
            -1,
            &set,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        ))
    }
}

/// Reads a non-blocking descriptor until it is empty (a signalfd's pending signals).
pub(crate) fn drain(fd: RawFd) {
    let mut buf = [0u8; 512];
    while matches!(read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// A child that has ended and is not reaped yet, left unreaped (`waitid(P_ALL, WEXITED |
/// WNOHANG | WNOWAIT | __WALL)`): its pid, and so its process group id, stays taken.
pub(crate) fn ended_child() -> Option<libc::pid_t> {
    loop {
        // SAFETY: info is a valid out-pointer of the size waitid writes.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall with a valid pointer.
        let ret = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL,
            )
        };
        match check(ret) {
            Err(libc::EINTR) => continue,
            Err(_) => return None,
            // SAFETY: waitid filled a SIGCHLD siginfo (or left it zeroed: pid 0).
            Ok(_) => return Some(unsafe { info.si_pid() }).filter(|&pid| pid > 0),
        }
    }
}

/// `memfd_create(2)`, close-on-exec.
pub(crate) fn memfd(name: &CStr) -> Result<RawFd, Errno> {
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })
}

/// `pidfd_open(2)` (Linux 5.3+): a descriptor that names process `pid` for as long as it is
/// open, immune to pid reuse, and becomes readable when the process ends.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags; on success it returns a new fd the caller owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = check_long(fd)? as RawFd;
    // SAFETY: the kernel just made `fd`; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `path` as a C string for a system call; a path with a NUL byte is refused.
pub(crate) fn cpath(path: impl AsRef<std::ffi::OsStr>) -> crate::Result<std::ffi::CString> {
    c_string("path", path.as_ref())
}

/// `s` as a C string; one with a NUL byte is refused as an invalid `what`.
pub(crate) fn c_string(
    what: &'static str,
    s: &std::ffi::OsStr,
) -> crate::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(s.as_bytes()).map_err(|_| crate::Error::InvalidSpec {
        what,
        reason: format!("{s:?} contains a NUL byte"),
    })
}

/// `pidfd_send_signal(2)`: signals exactly the process `pidfd` names.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: no info struct is passed (NULL), flags 0; pidfd is open (borrowed).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check_long(ret).map(drop)
}

/// Waits up to `timeout_ms` for `fd` to become readable; `Ok(false)` when the time ran out.
pub(crate) fn wait_readable(fd: RawFd, timeout_ms: libc::c_int) -> Result<bool, Errno> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is one valid pollfd on the stack.
    check(unsafe { libc::poll(&mut pfd, 1, timeout_ms) }).map(|n| n > 0)
}

/// Opens `path` beneath the directory `dir` with `openat2(2)`, following no symlink (magic
/// links included) and never leaving `dir`: what a pod's commands planted cannot redirect it.
/// Mount points beneath `dir` are crossed. `O_CLOEXEC` is added to `flags`.
pub(crate) fn open_beneath(dir: RawFd, path: &CStr, flags: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: open_how is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: path is NUL-terminated and how is a valid open_how of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    let fd = check_long(ret)? as RawFd;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
