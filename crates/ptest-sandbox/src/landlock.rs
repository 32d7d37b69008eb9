//! Landlock: a filesystem access policy a process puts on itself (and everything it starts),
//! enforced by the kernel whatever the mounts allow.
//!
//! [`FsRules`] names what may be read and what may be written; a `Ruleset` turns it into a
//! Landlock ruleset file descriptor before `fork` (opening each path, in a pod through the
//! holder's root so the rules attach to what the pod sees), and the child enforces it with one
//! `landlock_restrict_self` before `execve`. The access rights handled are those of the
//! kernel's ABI version (best effort, explicitly: [`abi_version`] says which; ABI 1 cannot
//! allow renames across directories, ABI 2 adds them, 3 truncation, 5 device ioctls).
//!
//! The three Landlock system calls are made with `libc::syscall`: rustix has no wrapper for
//! them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys;

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: libc::c_int = 1;

const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;
/// Rights that apply to a file (as opposed to a directory).
const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

/// `struct landlock_ruleset_attr` up to `scoped` (ABI 6).
#[repr(C)]
struct ScopedRulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET`: no connecting to an abstract Unix socket made by a
/// process outside the domain.
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
/// The first ABI with scopes.
const SCOPE_ABI: u32 = 6;

/// Whether the kernel can keep a process from abstract Unix sockets made outside its Landlock
/// domain (`Ruleset::abstract_sockets_scoped`), or why not.
pub fn abstract_socket_scope() -> std::result::Result<(), String> {
    match abi_version()? {
        abi if abi >= SCOPE_ABI => Ok(()),
        abi => Err(format!(
            "the kernel's Landlock ABI is {abi}; scoping abstract Unix sockets needs {SCOPE_ABI}              (Linux 6.12)"
        )),
    }
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// What a confined command may do with files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsRules {
    /// Read, list and execute beneath these paths.
    pub read_only: Vec<PathBuf>,
    /// Everything beneath these paths (files or directories; a file gets the file rights).
    pub read_write: Vec<PathBuf>,
}

/// The Landlock ABI version the kernel offers, or why there is none.
pub fn abi_version() -> std::result::Result<u32, String> {
    // SAFETY: with LANDLOCK_CREATE_RULESET_VERSION, attr must be NULL and size 0; the call
    // returns the version and creates nothing.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOSYS) => "the kernel has no Landlock (built without it)".into(),
            Some(libc::EOPNOTSUPP) => {
                "Landlock is built in but not enabled (add it to the lsm= boot parameter)".into()
            }
            _ => format!("landlock_create_ruleset: {e}"),
        });
    }
    Ok(v as u32)
}

/// The access rights a kernel of this ABI version handles.
fn handled(abi: u32) -> u64 {
    let mut rights = (1 << 13) - 1; // ABI 1: execute .. make_sym
    if abi >= 2 {
        rights |= REFER;
    }
    if abi >= 3 {
        rights |= TRUNCATE;
    }
    if abi >= 5 {
        rights |= IOCTL_DEV;
    }
    rights
}

/// A ruleset built before `fork`, enforced in the child.
#[derive(Debug)]
pub(crate) struct Ruleset {
    fd: OwnedFd,
}

impl Ruleset {
    /// Builds the ruleset for `rules`. Each path is opened below `view_root` when given (a
    /// pod's `/proc/<holder>/root`), else as is. A path that does not exist is skipped.
    pub(crate) fn new(rules: &FsRules, view_root: Option<&Path>) -> Result<Ruleset> {
        let abi = abi_version().map_err(|reason| Error::InvalidSpec {
            what: "landlock",
            reason,
        })?;
        let handled = handled(abi);
        let attr = RulesetAttr {
            handled_access_fs: handled,
        };
        let ruleset = Ruleset::create(&attr)?;
        let read = EXECUTE | READ_FILE | READ_DIR;
        for path in &rules.read_only {
            ruleset.allow(path, view_root, read & handled)?;
        }
        for path in &rules.read_write {
            ruleset.allow(path, view_root, handled)?;
        }
        Ok(ruleset)
    }

    /// A ruleset that handles no file access and only scopes abstract Unix sockets: a process
    /// that enforces it (and everything it starts) can no longer connect to an abstract socket
    /// made by a process outside it, such as the host's when it shares the host's network
    /// namespace (abstract sockets are per network namespace). Needs ABI 6.
    pub(crate) fn abstract_sockets_scoped() -> Result<Ruleset> {
        abstract_socket_scope().map_err(|reason| Error::InvalidSpec {
            what: "landlock",
            reason,
        })?;
        let attr = ScopedRulesetAttr {
            handled_access_fs: 0,
            handled_access_net: 0,
            scoped: SCOPE_ABSTRACT_UNIX_SOCKET,
        };
        Ruleset::create(&attr)
    }

    /// `landlock_create_ruleset` with `attr`, a prefix of the kernel's
    /// `landlock_ruleset_attr` (the kernel accepts a smaller struct and treats the missing
    /// fields as zero).
    fn create<A>(attr: &A) -> Result<Ruleset> {
        // SAFETY: attr points at size_of::<A>() readable bytes for the duration of the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                attr as *const A,
                std::mem::size_of::<A>(),
                0u32,
            )
        };
        if fd < 0 {
            return Err(Error::last_os("landlock_create_ruleset"));
        }
        // SAFETY: fd is a new descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(Ruleset { fd })
    }

    fn allow(&self, path: &Path, view_root: Option<&Path>, access: u64) -> Result<()> {
        let full = match view_root {
            Some(base) => base.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_owned(),
        };
        let file: File = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(&full)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::syscall(format!("open {}", path.display()), e)),
        };
        let is_dir = fs::metadata(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map(|m| m.is_dir())
            .map_err(|e| Error::syscall(format!("stat {}", path.display()), e))?;
        let access = if is_dir { access } else { access & FILE_RIGHTS };
        let attr = PathBeneathAttr {
            allowed_access: access,
            parent_fd: file.as_raw_fd(),
        };
        // SAFETY: attr is a valid landlock_path_beneath_attr; both fds are open.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if r < 0 {
            return Err(Error::last_os(format!(
                "landlock_add_rule {}",
                path.display()
            )));
        }
        Ok(())
    }
}

impl AsFd for Ruleset {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// In the child: enforces the ruleset `ruleset` (a [`Ruleset`]'s descriptor, or a copy passed
/// to a pod holder) on this thread and what it `execve`s. Async-signal-safe. Needs
/// no_new_privs (or `CAP_SYS_ADMIN`).
pub(crate) fn restrict_self(ruleset: BorrowedFd<'_>) -> std::result::Result<(), sys::Errno> {
    // SAFETY: one system call on an open (borrowed) descriptor, no pointer.
    let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
    if r < 0 { Err(sys::errno()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_grow_with_the_abi() {
        assert_eq!(handled(1), 0x1fff);
        assert_eq!(handled(2), 0x3fff);
        assert_eq!(handled(4), 0x7fff);
        assert_eq!(handled(7), 0xffff);
    }
}
