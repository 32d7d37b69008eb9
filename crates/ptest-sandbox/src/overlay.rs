//! Copy-on-write layers in a pod: an overlayfs over a read-only host directory, mounted at a
//! path inside a running pod's mount namespace.
//!
//! The overlay is built here, in the caller's mount namespace, with the new mount API
//! (`fsopen`, `fsconfig`, `fsmount`, Linux 5.2+): overlayfs takes private clones of its
//! layers when it is made, and it only clones mounts of the namespace that makes it, so the
//! lower directory need not be visible inside the pod (at security `high` it is not). A child
//! then joins the pod's mount namespace and attaches the detached mount with `move_mount`.
//! Replacing a layer ([`Pod::unmount`], then [`Pod::mount_overlay`] on fresh directories)
//! never changes a layer under a mounted overlay, which overlayfs does not allow.

use std::ffi::CStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create,
    fsconfig_set_string, fsmount, fsopen, move_mount,
};

use crate::error::{Error, Result};
use crate::pod::{Pod, check_absolute};
use crate::step_pipe::step_pipe;
use crate::sys;
use crate::sys::cpath;

/// An overlayfs: `lower` shown read-only, writes landing in `upper`, mounted at `target`
/// inside a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The directory shown (caller's path). Never written to.
    pub lower: PathBuf,
    /// Where writes land (caller's path): an empty directory, created when missing.
    pub upper: PathBuf,
    /// overlayfs's scratch directory (caller's path), on the same filesystem as `upper`:
    /// an empty directory, created when missing.
    pub work: PathBuf,
    /// Where the overlay appears, as a path inside the pod; an existing directory.
    pub target: PathBuf,
    /// Paths relative to `lower` left out of the view: each gets a whiteout in `upper` before
    /// the mount, so it looks deleted (its parent directories keep `lower`'s mode, owner and
    /// times). They must not pass through a symlink.
    pub hide: Vec<PathBuf>,
}

/// Steps of the child that enters the pod before its action, as reported back to the caller.
const STEPS: [&str; 2] = [
    "enter the pod's mount namespace",
    "change root to the pod's",
];

impl Pod {
    /// Mounts `overlay` at its target inside the pod: commands see `lower` there and their
    /// writes land in `upper`. Needs root (CAP_SYS_ADMIN) and Linux 5.2 or newer.
    ///
    /// Blocks briefly (one fork); safe to call from a multi-threaded program.
    pub fn mount_overlay(&self, overlay: &Overlay) -> Result<()> {
        for (what, path) in [
            ("overlay lower", &overlay.lower),
            ("overlay upper", &overlay.upper),
            ("overlay work", &overlay.work),
            ("overlay target", &overlay.target),
        ] {
            check_path(what, path)?;
        }
        let lower_meta = fs::metadata(&overlay.lower).map_err(|e| Error::InvalidSpec {
            what: "overlay lower",
            reason: format!("{}: {e}", overlay.lower.display()),
        })?;
        if !lower_meta.is_dir() {
            return Err(Error::InvalidSpec {
                what: "overlay lower",
                reason: format!("{} is not a directory", overlay.lower.display()),
            });
        }
        for dir in [&overlay.upper, &overlay.work] {
            fs::create_dir_all(dir)
                .map_err(|e| Error::syscall(format!("mkdir {}", dir.display()), e))?;
        }
        hide(overlay)?;
        let mount = detached_overlay(overlay)?;
        let target = cpath(&overlay.target)?;
        let fd = mount.as_fd();
        self.in_mount_namespace(
            &format!("mount overlay on {}", overlay.target.display()),
            || move_detached(fd, &target),
        )
    }

    /// Detaches the mount at `target` (a path inside the pod) from the pod's view; processes
    /// still using it keep it until they let go (`MNT_DETACH`).
    pub fn unmount(&self, target: &Path) -> Result<()> {
        check_path("unmount target", target)?;
        let target_c = cpath(target)?;
        self.in_mount_namespace(&format!("unmount {}", target.display()), || {
            sys::umount2(&target_c, libc::MNT_DETACH)
        })
    }

    /// Runs `action` (async-signal-safe system calls only) in a child that joined the pod's
    /// mount namespace and root; `what` names it in errors.
    fn in_mount_namespace(
        &self,
        what: &str,
        action: impl Fn() -> std::result::Result<(), sys::Errno>,
    ) -> Result<()> {
        if !self.is_alive() {
            return Err(Error::HolderGone {
                pid: self.holder_pid(),
            });
        }
        let open = |path: String, flags: libc::c_int| {
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(&path)
                .map(OwnedFd::from)
                .map_err(|e| Error::syscall(format!("open {path}"), e))
        };
        let ns = open(
            format!("/proc/{}/ns/mnt", self.holder_pid()),
            libc::O_CLOEXEC,
        )?;
        let root = open(
            format!("/proc/{}/root", self.holder_pid()),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )?;
        // The pid could have been recycled between the check and the opens.
        if !self.is_alive() {
            return Err(Error::HolderGone {
                pid: self.holder_pid(),
            });
        }
        let (reader, writer) = step_pipe()?;
        let (ns_fd, root_fd) = (ns.as_raw_fd(), root.as_raw_fd());
        let pid =
            sys::fork().map_err(|e| Error::syscall("fork", io::Error::from_raw_os_error(e)))?;
        if pid == 0 {
            // Child of a possibly multi-threaded program: async-signal-safe calls only.
            if let Err(e) = sys::setns(ns_fd, libc::CLONE_NEWNS) {
                writer.fail(0u32, e);
            }
            if let Err(e) = sys::fchdir(root_fd).and_then(|()| sys::chroot(c".")) {
                writer.fail(1u32, e);
            }
            if let Err(e) = action() {
                writer.fail(2u32, e);
            }
            sys::exit(0);
        }
        drop(writer);
        let report = reader.next();
        let _ = sys::waitpid(pid, 0);
        let report = report.map_err(|e| {
            Error::syscall(
                "read the mount child's status pipe",
                io::Error::from_raw_os_error(e),
            )
        })?;
        match report {
            None => Ok(()),
            Some((step, errno)) => {
                let call = match STEPS.get(step as usize) {
                    Some(before) => format!("{what}: {before}"),
                    None => what.to_owned(),
                };
                Err(Error::syscall(call, io::Error::from_raw_os_error(errno)))
            }
        }
    }
}

fn check_path(what: &'static str, path: &Path) -> Result<()> {
    check_absolute(what, path)?;
    // Option strings separate layers with ':' and options with ','; escaping them is read
    // differently by the kernel's old and new option parsers, so such paths are refused.
    if path
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|b| b",:\\".contains(b))
    {
        return Err(Error::InvalidSpec {
            what,
            reason: format!(
                "{}: overlayfs cannot be given a path with ',', ':' or '\\'",
                path.display()
            ),
        });
    }
    Ok(())
}

/// Creates the whiteouts of `overlay.hide` in its upper directory.
fn hide(overlay: &Overlay) -> Result<()> {
    let io_err = |call: &str, path: &Path, e: io::Error| {
        Error::syscall(format!("{call} {}", path.display()), e)
    };
    // Directories made in upper, with the lower directory they stand for: their mode, owner
    // and times show through the overlay, so they are copied once every entry is made.
    let mut made: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    for rel in &overlay.hide {
        let normal = rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !normal || rel.as_os_str().is_empty() {
            return Err(Error::InvalidSpec {
                what: "overlay hide",
                reason: format!("{} must be relative, without . or ..", rel.display()),
            });
        }
        let mut lower = overlay.lower.clone();
        let mut upper = overlay.upper.clone();
        let parents: Vec<_> = rel
            .parent()
            .into_iter()
            .flat_map(Path::components)
            .collect();
        for c in parents {
            lower.push(c);
            upper.push(c);
            let meta = fs::symlink_metadata(&lower).map_err(|e| io_err("stat", &lower, e))?;
            if !meta.is_dir() {
                return Err(Error::InvalidSpec {
                    what: "overlay hide",
                    reason: format!(
                        "{} passes through {}, not a directory",
                        rel.display(),
                        lower.display()
                    ),
                });
            }
            match fs::create_dir(&upper) {
                Ok(()) => made.push((upper.clone(), meta)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("mkdir", &upper, e)),
            }
        }
        // A 0/0 character device is overlayfs's whiteout.
        let whiteout = overlay.upper.join(rel);
        match mknodat(
            CWD,
            cpath(&whiteout)?.as_c_str(),
            FileType::CharacterDevice,
            Mode::empty(),
            makedev(0, 0),
        ) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io_err("mknod (whiteout)", &whiteout, e.into())),
        }
    }
    for (dir, meta) in made {
        std::os::unix::fs::lchown(&dir, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| io_err("chown", &dir, e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| io_err("chmod", &dir, e))?;
        let times = fs::FileTimes::new()
            .set_accessed(meta.accessed().map_err(|e| io_err("stat", &dir, e))?)
            .set_modified(meta.modified().map_err(|e| io_err("stat", &dir, e))?);
        File::open(&dir)
            .and_then(|f| f.set_times(times))
            .map_err(|e| io_err("set the times of", &dir, e))?;
    }
    Ok(())
}

/// The overlay as a detached mount (not attached anywhere yet), made in this namespace.
fn detached_overlay(overlay: &Overlay) -> Result<OwnedFd> {
    let fail = |call: &str, e: Errno| {
        Error::syscall(
            format!("{call} (overlay of {})", overlay.lower.display()),
            io::Error::from(e),
        )
    };
    let fs_fd = fsopen(c"overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| fail("fsopen", e))?;
    for (key, path) in [
        ("lowerdir", &overlay.lower),
        ("upperdir", &overlay.upper),
        ("workdir", &overlay.work),
    ] {
        fsconfig_set_string(&fs_fd, key, cpath(path)?.as_c_str())
            .map_err(|e| fail(&format!("fsconfig {key}={}", path.display()), e))?;
    }
    fsconfig_create(&fs_fd).map_err(|e| fail("create the overlay", e))?;
    fsmount(
        &fs_fd,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )
    .map_err(|e| fail("fsmount", e))
}

/// `move_mount(2)` of the detached mount `fd` onto `target`. Async-signal-safe: rustix is
/// given C strings, which it passes as they are.
fn move_detached(fd: BorrowedFd<'_>, target: &CStr) -> std::result::Result<(), sys::Errno> {
    move_mount(
        fd,
        c"",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| e.raw_os_error())
}
