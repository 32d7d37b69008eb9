//! The pod's filesystem view, planned before any fork as a list of system calls ([`Op`]):
//! the host tree or its system directories read-only, the root at its host path, `/dev`,
//! `/proc` hardened as runc does, bounded `/tmp` and `/dev/shm`, a fresh `/run`, the binds
//! and masks, then `pivot_root`, the hostname and `lo`. The holder only runs the list (it may
//! not allocate after the fork), and a failing step is named by [`Op::describe`].

use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::spec::{HostView, NetworkMode, PodSpec, Scratch};
use crate::error::{Error, Result};
use crate::sys::{self, cpath};
use crate::zygote;

/// One system call of the holder's set-up.
#[derive(Debug)]
pub(super) enum Op {
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Sets `MOUNT_ATTR_*` flags on a mount and every mount below it.
    Restrict(CString, u64),
    /// Makes this one mount read-only, not the mounts below it.
    RemountReadOnly(CString),
    Umount(CString),
    Mkdir(CString, libc::mode_t),
    Touch(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    PivotRoot {
        new_root: CString,
        put_old: CString,
    },
    Chdir(CString),
    Hostname(Vec<u8>),
    LoopbackUp,
}

impl Op {
    pub(super) fn run(&self) -> std::result::Result<(), sys::Errno> {
        match self {
            Op::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => sys::mount(
                source.as_deref(),
                target,
                fstype.as_deref(),
                *flags,
                data.as_deref(),
            ),
            Op::Restrict(target, attrs) => sys::set_mount_attrs(target, *attrs),
            Op::RemountReadOnly(target) => sys::mount(
                None,
                target,
                None,
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                None,
            ),
            Op::Umount(target) => sys::umount2(target, libc::MNT_DETACH),
            Op::Mkdir(path, mode) => sys::mkdir(path, *mode),
            Op::Touch(path) => sys::touch(path),
            Op::Symlink { target, link } => sys::symlink(target, link),
            Op::PivotRoot { new_root, put_old } => sys::pivot_root(new_root, put_old),
            Op::Chdir(path) => sys::chdir(path),
            Op::Hostname(name) => sys::sethostname(name),
            Op::LoopbackUp => sys::loopback_up(),
        }
    }

    pub(super) fn describe(&self) -> String {
        // Paths as the user gave them: "/newroot/x" is "/x" in the pod, "/oldroot/x" is host "/x".
        let s = |c: &CString| {
            let text = c.to_string_lossy();
            match text.strip_prefix(NEW).or_else(|| text.strip_prefix(OLD)) {
                Some("") => "/".to_owned(),
                Some(rest) if rest.starts_with('/') => rest.to_owned(),
                _ => text.into_owned(),
            }
        };
        match self {
            Op::Mount {
                source,
                target,
                fstype,
                ..
            } => match (source, fstype) {
                (Some(src), Some(t)) if src.as_bytes() == t.as_bytes() => {
                    format!("mount {} on {}", s(t), s(target))
                }
                (Some(src), None) => format!("bind {} -> {}", s(src), s(target)),
                (Some(src), Some(t)) => format!("mount {} ({}) on {}", s(src), s(t), s(target)),
                (None, _) => format!("make {} private", s(target)),
            },
            Op::Restrict(t, attrs) => format!("restrict {} ({})", s(t), describe_attrs(*attrs)),
            Op::RemountReadOnly(t) => format!("make {} read-only (this mount only)", s(t)),
            Op::Umount(t) => format!("unmount {}", s(t)),
            Op::Mkdir(p, _) => format!("mkdir {}", s(p)),
            Op::Touch(p) => format!("create {}", s(p)),
            Op::Symlink { target, link } => format!("symlink {} -> {}", s(link), s(target)),
            Op::PivotRoot { new_root, put_old } => {
                format!("pivot_root {} {}", s(new_root), s(put_old))
            }
            Op::Chdir(p) => format!("chdir {}", s(p)),
            Op::Hostname(n) => format!("sethostname {}", String::from_utf8_lossy(n)),
            Op::LoopbackUp => "bring lo up".into(),
        }
    }
}

/// `ro,nosuid,nodev,noexec` for a set of `MOUNT_ATTR_*` flags.
fn describe_attrs(attrs: u64) -> String {
    [
        (sys::MOUNT_ATTR_RDONLY, "ro"),
        (sys::MOUNT_ATTR_NOSUID, "nosuid"),
        (sys::MOUNT_ATTR_NODEV, "nodev"),
        (sys::MOUNT_ATTR_NOEXEC, "noexec"),
    ]
    .iter()
    .filter(|(a, _)| attrs & a != 0)
    .map(|(_, n)| *n)
    .collect::<Vec<_>>()
    .join(",")
}

/// What the host view and read-only binds get: no writes, no setuid, no device nodes (a
/// device node on a read-only mount can still be opened for writing).
const READ_ONLY: u64 = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
/// What the writable root and scratch binds get: a command may create device nodes
/// (`CAP_MKNOD`, as in Docker) but never open one there.
const WRITABLE: u64 = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;

fn under(prefix: &str, path: &Path) -> Result<CString> {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    cpath(OsStr::from_bytes(&bytes))
}

pub(crate) fn check_absolute(what: &'static str, path: &Path) -> Result<()> {
    let clean = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if clean {
        Ok(())
    } else {
        Err(Error::InvalidSpec {
            what,
            reason: format!("{} must be absolute, without . or ..", path.display()),
        })
    }
}

const NEW: &str = "/newroot";
const OLD: &str = "/oldroot";
/// Host directory the staging tmpfs is mounted on, in the holder's private mount namespace
/// only (the host never sees it).
const STAGING: &str = "/tmp";

/// Ops creating every missing directory from `/` down to `path` below [`NEW`].
fn mkdir_all(ops: &mut Vec<Op>, path: &Path) -> Result<()> {
    let mut acc = PathBuf::from("/");
    for c in path.components().skip(1) {
        acc.push(c);
        ops.push(Op::Mkdir(under(NEW, &acc)?, 0o755));
    }
    Ok(())
}

fn bind_ops(ops: &mut Vec<Op>, source: &Path, target: &Path, read_only: bool) -> Result<()> {
    bind_with(
        ops,
        source,
        target,
        if read_only { READ_ONLY } else { WRITABLE },
    )
}

/// A recursive bind of host `source` at pod `target`, then `attrs` on it.
fn bind_with(ops: &mut Vec<Op>, source: &Path, target: &Path, attrs: u64) -> Result<()> {
    let meta = fs::metadata(source).map_err(|e| Error::InvalidSpec {
        what: "bind source",
        reason: format!("{}: {e}", source.display()),
    })?;
    if let Some(parent) = target.parent() {
        mkdir_all(ops, parent)?;
    }
    let dest = under(NEW, target)?;
    if meta.is_dir() {
        ops.push(Op::Mkdir(dest.clone(), 0o755));
    } else {
        ops.push(Op::Touch(dest.clone()));
    }
    ops.push(Op::Mount {
        source: Some(under(OLD, source)?),
        target: dest.clone(),
        fstype: None,
        flags: libc::MS_BIND | libc::MS_REC,
        data: None,
    });
    ops.push(Op::Restrict(dest, attrs));
    Ok(())
}

fn fs_mount(
    ops: &mut Vec<Op>,
    fstype: &str,
    target: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let target = under(NEW, Path::new(target))?;
    ops.push(Op::Mkdir(target.clone(), 0o755));
    ops.push(Op::Mount {
        source: Some(cpath(fstype)?),
        target,
        fstype: Some(cpath(fstype)?),
        flags,
        data: data.map(cpath).transpose()?,
    });
    Ok(())
}

/// Parts of `/proc` that reach the whole host, made read-only as runc does: a write there
/// (a sysctl, sysrq) would change the host, not the pod.
const PROC_READ_ONLY: [&str; 5] = ["sys", "sysrq-trigger", "irq", "bus", "fs"];
/// Files of `/proc` that show the host's memory, keys, timers or kernel log: covered by
/// `/dev/null`, as runc does.
const PROC_MASKED_FILES: [&str; 6] = [
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "kmsg",
    "latency_stats",
];
/// Directories of `/proc` covered by an empty read-only tmpfs, as runc does.
const PROC_MASKED_DIRS: [&str; 2] = ["acpi", "scsi"];

/// The `/proc` hardening, after the pod's own proc is mounted at `/proc`. Entries the host's
/// kernel does not have are left out (the pod's proc is the same kernel's).
fn proc_ops(ops: &mut Vec<Op>) -> Result<()> {
    let host = Path::new("/proc");
    let pod = Path::new("/proc");
    for name in PROC_READ_ONLY {
        if fs::symlink_metadata(host.join(name)).is_err() {
            continue;
        }
        let target = under(NEW, &pod.join(name))?;
        ops.push(Op::Mount {
            source: Some(target.clone()),
            target: target.clone(),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
        });
        ops.push(Op::Restrict(target, READ_ONLY | sys::MOUNT_ATTR_NOEXEC));
    }
    for name in PROC_MASKED_FILES {
        if fs::symlink_metadata(host.join(name)).is_err() {
            continue;
        }
        ops.push(Op::Mount {
            source: Some(cpath("/oldroot/dev/null")?),
            target: under(NEW, &pod.join(name))?,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        });
    }
    for name in PROC_MASKED_DIRS {
        if !host.join(name).is_dir() {
            continue;
        }
        ops.push(Op::Mount {
            source: Some(cpath("tmpfs")?),
            target: under(NEW, &pod.join(name))?,
            fstype: Some(cpath("tmpfs")?),
            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
            data: Some(cpath("size=4k")?),
        });
    }
    Ok(())
}

/// The holder's whole set-up, as system calls to run in order.
pub(super) fn build_ops(spec: &PodSpec) -> Result<Vec<Op>> {
    check_absolute("root", &spec.root)?;
    let hostname = spec.hostname.as_bytes();
    if hostname.is_empty() || hostname.len() > 64 {
        return Err(Error::InvalidName {
            what: "hostname",
            value: spec.hostname.clone(),
            reason: "must be 1 to 64 bytes",
        });
    }
    if !spec.root.is_dir() {
        return Err(Error::InvalidSpec {
            what: "root",
            reason: format!("{} is not a directory", spec.root.display()),
        });
    }
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    let mut ops = vec![
        Op::Mount {
            source: None,
            target: cpath("/")?,
            fstype: None,
            flags: libc::MS_REC | libc::MS_PRIVATE,
            data: None,
        },
        Op::Mount {
            source: Some(cpath("tmpfs")?),
            target: cpath(STAGING)?,
            fstype: Some(cpath("tmpfs")?),
            flags: nosuid_nodev,
            data: Some(cpath("mode=0755")?),
        },
        Op::Chdir(cpath(STAGING)?),
        Op::Mkdir(cpath("newroot")?, 0o755),
        Op::Mkdir(cpath("oldroot")?, 0o755),
        Op::PivotRoot {
            new_root: cpath(".")?,
            put_old: cpath("oldroot")?,
        },
        Op::Chdir(cpath("/")?),
    ];
    match spec.host_view {
        HostView::Full => {
            ops.push(Op::Mount {
                source: Some(cpath(OLD)?),
                target: cpath(NEW)?,
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REC,
                data: None,
            });
            ops.push(Op::Restrict(cpath(NEW)?, READ_ONLY));
        }
        HostView::System => {
            ops.push(Op::Mount {
                source: Some(cpath("tmpfs")?),
                target: cpath(NEW)?,
                fstype: Some(cpath("tmpfs")?),
                flags: nosuid_nodev,
                data: Some(cpath("mode=0755")?),
            });
            for dir in [
                "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
            ] {
                let path = Path::new(dir);
                let Ok(meta) = fs::symlink_metadata(path) else {
                    continue;
                };
                if meta.file_type().is_symlink() {
                    let target = fs::read_link(path)
                        .map_err(|e| Error::syscall(format!("readlink {dir}"), e))?;
                    ops.push(Op::Symlink {
                        target: cpath(&target)?,
                        link: under(NEW, path)?,
                    });
                } else if meta.is_dir() {
                    bind_ops(&mut ops, path, path, true)?;
                }
            }
        }
    }
    fs_mount(
        &mut ops,
        "proc",
        "/proc",
        nosuid_nodev | libc::MS_NOEXEC,
        None,
    )?;
    proc_ops(&mut ops)?;
    // nodev: a device node made here (CAP_MKNOD) cannot be opened; the harmless devices below
    // are binds of the host's nodes, each a mount with the host's flags.
    fs_mount(
        &mut ops,
        "tmpfs",
        "/dev",
        nosuid_nodev | libc::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )?;
    // The holder's command socket gets a directory of its own, read-only once it listens.
    fs_mount(
        &mut ops,
        "tmpfs",
        &zygote::SOCKET_DIR.to_string_lossy(),
        nosuid_nodev | libc::MS_NOEXEC,
        Some("mode=0755,size=4k,nr_inodes=8"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(node);
        if host.exists() {
            let dest = under(NEW, &host)?;
            ops.push(Op::Touch(dest.clone()));
            ops.push(Op::Mount {
                source: Some(under(OLD, &host)?),
                target: dest,
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
            });
        }
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink {
            target: cpath(target)?,
            link: under(NEW, &Path::new("/dev").join(link))?,
        });
    }
    if spec.dev_pts {
        fs_mount(
            &mut ops,
            "devpts",
            "/dev/pts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=620"),
        )?;
        ops.push(Op::Symlink {
            target: cpath("pts/ptmx")?,
            link: under(NEW, Path::new("/dev/ptmx"))?,
        });
    }
    match &spec.scratch {
        Scratch::Tmpfs {
            tmp_bytes,
            shm_bytes,
        } => {
            let data = |bytes: u64| format!("mode=1777,size={bytes}");
            fs_mount(
                &mut ops,
                "tmpfs",
                "/tmp",
                nosuid_nodev,
                Some(&data(*tmp_bytes)),
            )?;
            fs_mount(
                &mut ops,
                "tmpfs",
                "/dev/shm",
                nosuid_nodev,
                Some(&data(*shm_bytes)),
            )?;
        }
        Scratch::Dirs { tmp, shm } => {
            check_absolute("scratch directory", tmp)?;
            check_absolute("scratch directory", shm)?;
            bind_with(&mut ops, tmp, Path::new("/tmp"), WRITABLE)?;
            bind_with(&mut ops, shm, Path::new("/dev/shm"), WRITABLE)?;
        }
    }
    // A fresh /run: the host's control sockets (docker.sock, containerd, dbus) are not there;
    // one a command needs is bound in by `binds`. /var/run is a link to it on current systems.
    fs_mount(
        &mut ops,
        "tmpfs",
        "/run",
        nosuid_nodev | libc::MS_NOEXEC,
        Some("mode=0755,size=16m"),
    )?;
    if spec.host_view == HostView::Full
        && fs::symlink_metadata("/var/run").is_ok_and(|m| m.is_dir())
    {
        fs_mount(
            &mut ops,
            "tmpfs",
            "/var/run",
            nosuid_nodev | libc::MS_NOEXEC,
            Some("mode=0755,size=16m"),
        )?;
    }
    // Masks: directories get an empty tmpfs, writable while the root and binds beneath them
    // get their mount points, read-only once those are mounted; files get /dev/null, after
    // everything else.
    let mut masks = Vec::new();
    let mut file_masks = Vec::new();
    for mask in &spec.masks {
        check_absolute("mask", mask)?;
        if mask == Path::new("/") || mask.starts_with(&spec.root) {
            continue;
        }
        match fs::metadata(mask) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                file_masks.push(mask);
                continue;
            }
            Err(_) => continue,
        }
        mkdir_all(&mut ops, mask)?;
        let target = under(NEW, mask)?;
        ops.push(Op::Mount {
            source: Some(cpath("tmpfs")?),
            target: target.clone(),
            fstype: Some(cpath("tmpfs")?),
            flags: nosuid_nodev | libc::MS_NOEXEC,
            data: Some(cpath("mode=0755,size=64k,nr_inodes=4096")?),
        });
        masks.push(target);
    }
    bind_ops(&mut ops, &spec.root, &spec.root, false)?;
    for bind in &spec.binds {
        check_absolute("bind source", &bind.source)?;
        check_absolute("bind target", &bind.target)?;
        bind_ops(&mut ops, &bind.source, &bind.target, bind.read_only)?;
    }
    ops.extend(masks.into_iter().map(Op::RemountReadOnly));
    for file in file_masks {
        ops.push(Op::Mount {
            source: Some(cpath("/oldroot/dev/null")?),
            target: under(NEW, file)?,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        });
    }
    ops.push(Op::Umount(cpath(OLD)?));
    ops.push(Op::Chdir(cpath(NEW)?));
    ops.push(Op::PivotRoot {
        new_root: cpath(".")?,
        put_old: cpath(".")?,
    });
    ops.push(Op::Umount(cpath(".")?));
    ops.push(Op::Chdir(cpath("/")?));
    ops.push(Op::Hostname(hostname.to_vec()));
    if spec.network == NetworkMode::Loopback {
        ops.push(Op::LoopbackUp);
    }
    Ok(ops)
}
