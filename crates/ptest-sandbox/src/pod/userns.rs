//! The user namespace of a pod made by a user other than root: whether the host allows it,
//! and the uid/gid maps (the creator is root in the pod), written by the first child.

use std::ffi::CString;
use std::fs;
use std::os::fd::AsRawFd;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{getgid, getuid};

use crate::error::{Error, Result};
use crate::sys::{self, cpath};

/// Checks that this host lets an unprivileged user create user namespaces.
pub(super) fn check_user_namespaces() -> Result<()> {
    for (file, blocked) in [
        ("/proc/sys/user/max_user_namespaces", "0"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
    ] {
        if let Ok(v) = fs::read_to_string(file)
            && v.trim() == blocked
        {
            return Err(Error::UserNamespacesBlocked {
                reason: format!("{file} is {blocked}"),
            });
        }
    }
    Ok(())
}

/// The user-namespace set-up of a non-root creator: files and contents, prepared before fork.
pub(super) struct UserNsSetup {
    files: [(CString, Vec<u8>); 3],
}

impl UserNsSetup {
    pub(super) fn new() -> Result<UserNsSetup> {
        let (uid, gid) = (getuid().as_raw(), getgid().as_raw());
        Ok(UserNsSetup {
            files: [
                (cpath("/proc/self/setgroups")?, b"deny".to_vec()),
                (
                    cpath("/proc/self/uid_map")?,
                    format!("0 {uid} 1").into_bytes(),
                ),
                (
                    cpath("/proc/self/gid_map")?,
                    format!("0 {gid} 1").into_bytes(),
                ),
            ],
        })
    }

    /// In the child: write the maps. Async-signal-safe.
    pub(super) fn apply(&self) -> std::result::Result<(), sys::Errno> {
        for (path, content) in &self.files {
            // A C string path: rustix passes it as is, without allocating.
            let fd = match rustix::fs::open(
                path.as_c_str(),
                OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // setgroups is missing on kernels before 3.19; the maps still work there.
                Err(Errno::NOENT) if path.as_bytes().ends_with(b"setgroups") => continue,
                Err(e) => return Err(e.raw_os_error()),
            };
            sys::write_all(fd.as_raw_fd(), content)?;
        }
        Ok(())
    }
}
