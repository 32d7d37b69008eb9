//! The pod: a long-lived holder process owning a set of namespaces, which commands enter.
//!
//! [`Pod::create`] forks twice. The first child starts a new session, joins the cgroup,
//! unshares the namespaces, forks the holder (PID 1 of the new PID namespace), reports the
//! holder's pid and exits, so the holder is not a child of the caller and outlives it. The
//! holder builds the filesystem view, `pivot_root`s into it, sets the hostname, brings `lo` up,
//! opens its command socket, reports readiness, then serves [`Pod::spawn`] requests (it forks
//! the pod's commands, see [`crate::zygote`]) and reaps orphans forever. All set-up steps are
//! computed before the first `fork` as a list of system calls ([`Op`]), and everything the
//! holder will use later is allocated then too; the children only execute that list.

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::landlock::{self, Ruleset};
use crate::procfs;
use crate::spawn::{CommandSpec, SpawnedChild};
use crate::sys;
use crate::zygote::{self, Zygote};

/// The pod's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NetworkMode {
    /// Share the host's network namespace.
    Host,
    /// Own network namespace with only `lo`, which is up: services bind 127.0.0.1 freely.
    #[default]
    Loopback,
    /// Own network namespace, nothing up: no network at all.
    None,
}

/// How much of the host filesystem the pod sees (always read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HostView {
    /// The whole host tree, recursively read-only (Linux 5.12+ for `mount_setattr`; older
    /// kernels only make the top mount read-only).
    #[default]
    Full,
    /// Only system directories: `/usr`, `/bin`, `/sbin`, `/lib`, `/lib32`, `/lib64`,
    /// `/libx32`, `/etc` (those that exist; symlinks such as `/bin -> usr/bin` are kept as
    /// symlinks). Anything else must be bound through [`PodSpec::binds`].
    System,
}

/// An extra bind mount into the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Absolute host path (file or directory).
    pub source: PathBuf,
    /// Absolute path inside the pod; created when missing (its parent must be writable or
    /// already exist).
    pub target: PathBuf,
    /// Mount it read-only (recursively).
    pub read_only: bool,
}

impl Bind {
    /// A read-only bind at the same path.
    pub fn read_only(path: impl Into<PathBuf>) -> Bind {
        let path = path.into();
        Bind {
            source: path.clone(),
            target: path,
            read_only: true,
        }
    }

    /// A read-write bind at the same path.
    pub fn read_write(path: impl Into<PathBuf>) -> Bind {
        let path = path.into();
        Bind {
            source: path.clone(),
            target: path,
            read_only: false,
        }
    }
}

/// The pod's scratch space, `/tmp` and `/dev/shm`: always private to the pod, always bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scratch {
    /// A tmpfs of its own for each, of these sizes (in bytes; the pages count against the
    /// memory limit of whoever writes them).
    Tmpfs {
        /// Size of `/tmp`.
        tmp_bytes: u64,
        /// Size of `/dev/shm`.
        shm_bytes: u64,
    },
    /// Host directories bound read-write at `/tmp` and `/dev/shm` (inside a size-limited root,
    /// they count against its limit).
    Dirs {
        /// Shown at `/tmp`.
        tmp: PathBuf,
        /// Shown at `/dev/shm`.
        shm: PathBuf,
    },
}

impl Scratch {
    /// Default size of `/tmp`: 1 GiB.
    pub const TMP_BYTES: u64 = 1 << 30;
    /// Default size of `/dev/shm`: 64 MiB, as Docker's.
    pub const SHM_BYTES: u64 = 64 << 20;
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch::Tmpfs {
            tmp_bytes: Scratch::TMP_BYTES,
            shm_bytes: Scratch::SHM_BYTES,
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// Absolute host directory bound read-write at the same path inside the pod.
    pub root: PathBuf,
    /// Hostname inside the pod's UTS namespace.
    pub hostname: String,
    /// Network namespace mode.
    pub network: NetworkMode,
    /// How much of the host is visible (read-only).
    pub host_view: HostView,
    /// Extra binds, mounted in order after the root.
    pub binds: Vec<Bind>,
    /// Host paths hidden inside the pod. A directory is covered by an empty read-only tmpfs
    /// before the root and the binds are mounted, so a root or bind beneath a mask stays
    /// visible while its siblings do not (e.g. mask `$PTEST_HOME`: the environment sees its
    /// own root, not the others' nor the state database). A file (e.g. `/etc/shadow`) is
    /// covered by `/dev/null`. Paths that do not exist on the host, `/`, and the root itself
    /// or paths beneath it are ignored.
    pub masks: Vec<PathBuf>,
    /// Mount a private `devpts` on `/dev/pts` (with `/dev/ptmx`).
    pub dev_pts: bool,
    /// What the pod's `/tmp` and `/dev/shm` are.
    pub scratch: Scratch,
    /// The cgroup the holder (and so every command) is placed in before it forks anything.
    pub cgroup: Option<Cgroup>,
    /// Keep every process of the pod from the host's abstract Unix sockets: with
    /// [`NetworkMode::Host`] they share the host's (abstract sockets belong to a network
    /// namespace: X11's, systemd's, a container runtime's). The holder enforces a Landlock
    /// scope on itself, which every command inherits; commands of one pod still reach each
    /// other's. Needs Landlock ABI 6 ([`crate::landlock::abstract_socket_scope`]).
    pub scope_abstract_sockets: bool,
}

impl PodSpec {
    /// A spec with loopback network, full read-only host view, no extra binds, no cgroup.
    pub fn new(root: impl Into<PathBuf>, hostname: impl Into<String>) -> PodSpec {
        PodSpec {
            root: root.into(),
            hostname: hostname.into(),
            network: NetworkMode::Loopback,
            host_view: HostView::Full,
            binds: Vec::new(),
            masks: Vec::new(),
            dev_pts: false,
            scratch: Scratch::default(),
            cgroup: None,
            scope_abstract_sockets: false,
        }
    }
}

/// A running pod: its holder process, identified by pid and start time.
///
/// Dropping the value leaves the pod running; [`Pod::destroy`] tears it down.
#[derive(Debug)]
pub struct Pod {
    holder_pid: i32,
    start_time: u64,
    cgroup: Option<Cgroup>,
}

/// One system call of the holder's set-up.
#[derive(Debug)]
enum Op {
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
    fn run(&self) -> std::result::Result<(), sys::Errno> {
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

    fn describe(&self) -> String {
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

use crate::sys::cpath;

fn under(prefix: &str, path: &Path) -> Result<CString> {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    cpath(OsStr::from_bytes(&bytes))
}

fn check_absolute(what: &'static str, path: &Path) -> Result<()> {
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
fn build_ops(spec: &PodSpec) -> Result<Vec<Op>> {
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

/// Record tags on the readiness pipe (12-byte records: tag, a, b).
const TAG_PID: u32 = 1;
const TAG_READY: u32 = 2;
const TAG_ERROR: u32 = 3;

/// Fixed steps of the first child and the holder, numbered after the ops.
const STEP_NAMES: [&str; 8] = [
    "setsid",
    "join cgroup",
    "unshare user namespace",
    "write uid/gid map",
    "unshare namespaces",
    "fork holder",
    "listen for commands on /dev/.ptest/exec.sock",
    "scope abstract Unix sockets (Landlock)",
];

fn record(fd: RawFd, tag: u32, a: i32, b: i32) {
    let mut rec = [0u8; 12];
    rec[..4].copy_from_slice(&tag.to_le_bytes());
    rec[4..8].copy_from_slice(&a.to_le_bytes());
    rec[8..].copy_from_slice(&b.to_le_bytes());
    let _ = sys::write_all(fd, &rec);
}

fn fail(fd: RawFd, step: usize, errno: sys::Errno) -> ! {
    record(fd, TAG_ERROR, step as i32, errno);
    sys::exit(1)
}

/// Checks that this host lets an unprivileged user create user namespaces.
fn check_user_namespaces() -> Result<()> {
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
struct UserNsSetup {
    files: [(CString, Vec<u8>); 3],
}

impl UserNsSetup {
    fn new() -> Result<UserNsSetup> {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
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
    fn apply(&self) -> std::result::Result<(), sys::Errno> {
        for (path, content) in &self.files {
            // SAFETY: path is NUL-terminated; the fd is closed below.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                let e = sys::errno();
                // setgroups is missing on kernels before 3.19; the maps still work there.
                if e == libc::ENOENT && path.as_bytes().ends_with(b"setgroups") {
                    continue;
                }
                return Err(e);
            }
            let r = sys::write_all(fd, content);
            sys::close(fd);
            r?;
        }
        Ok(())
    }
}

impl Pod {
    /// Creates the holder and waits until its namespaces and filesystem view are ready.
    ///
    /// Blocks for the set-up (a few milliseconds). Safe to call from a multi-threaded program:
    /// the children run only precomputed async-signal-safe system calls. A holder that dies
    /// during its set-up without reporting why (seen now and then under load) is started
    /// again, twice at most; a set-up step that fails is reported at once.
    pub fn create(spec: &PodSpec) -> Result<Pod> {
        let mut attempt = 1;
        loop {
            match Pod::create_once(spec) {
                Err(Error::HolderDiedEarly) if attempt < 3 => {
                    tracing::warn!(attempt, "pod holder died during set-up; starting it again");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One attempt of [`Pod::create`].
    fn create_once(spec: &PodSpec) -> Result<Pod> {
        let ops = build_ops(spec)?;
        // SAFETY: geteuid cannot fail.
        let need_userns = unsafe { libc::geteuid() } != 0;
        let userns = if need_userns {
            check_user_namespaces()?;
            Some(UserNsSetup::new()?)
        } else {
            None
        };
        let mut flags =
            libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        if spec.network != NetworkMode::Host {
            flags |= libc::CLONE_NEWNET;
        }
        let cgroup_fds: Vec<OwnedFd> = match &spec.cgroup {
            Some(cg) => cg
                .procs_files()
                .into_iter()
                .map(|file| {
                    fs::OpenOptions::new()
                        .write(true)
                        .open(&file)
                        .map(OwnedFd::from)
                        .map_err(|source| Error::CgroupIo {
                            action: "open",
                            path: file,
                            source,
                        })
                })
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let devnull: OwnedFd = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| Error::syscall("open /dev/null", e))?
            .into();
        let mut pipe = [0; 2];
        // SAFETY: pipe is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(Error::last_os("pipe2"));
        }
        // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
        let (mut reader, writer) =
            unsafe { (File::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
        // The holder keeps only the pipe and the cgroup files; every other inherited descriptor
        // is closed (it would otherwise hold the caller's sockets and files open for its whole
        // life). Compute the gaps before fork.
        let scope = if spec.scope_abstract_sockets {
            Some(Ruleset::abstract_sockets_scoped()?)
        } else {
            None
        };
        let mut keep: Vec<RawFd> = cgroup_fds.iter().map(AsRawFd::as_raw_fd).collect();
        keep.push(writer.as_raw_fd());
        keep.extend(scope.as_ref().map(|r| r.as_fd().as_raw_fd()));
        keep.sort_unstable();
        let mut gaps: Vec<(RawFd, RawFd)> = Vec::new();
        let mut next = 3;
        for &fd in &keep {
            if fd > next {
                gaps.push((next, fd - 1));
            }
            next = next.max(fd + 1);
        }
        let first_free = next;
        let n_ops = ops.len();
        let zygote = Zygote::new().map_err(|e| {
            Error::syscall(
                "map the pod holder's buffers",
                io::Error::from_raw_os_error(e),
            )
        })?;

        let pid =
            sys::fork().map_err(|e| Error::syscall("fork", io::Error::from_raw_os_error(e)))?;
        if pid == 0 {
            // First child: async-signal-safe calls only from here on.
            let w = writer.as_raw_fd();
            let _ = sys::dup2(devnull.as_raw_fd(), 0);
            let _ = sys::dup2(devnull.as_raw_fd(), 1);
            let _ = sys::dup2(devnull.as_raw_fd(), 2);
            for &(lo, hi) in &gaps {
                for fd in lo..=hi {
                    sys::close(fd);
                }
            }
            sys::close_from(first_free);
            sys::reset_signals();
            if let Err(e) = sys::setsid() {
                fail(w, n_ops, e);
            }
            for fd in &cgroup_fds {
                if let Err(e) = sys::write_own_pid(fd.as_raw_fd()) {
                    fail(w, n_ops + 1, e);
                }
                sys::close(fd.as_raw_fd());
            }
            if let Some(u) = &userns {
                if let Err(e) = sys::unshare(libc::CLONE_NEWUSER) {
                    fail(w, n_ops + 2, e);
                }
                if let Err(e) = u.apply() {
                    fail(w, n_ops + 3, e);
                }
            }
            if let Err(e) = sys::unshare(flags) {
                fail(w, n_ops + 4, e);
            }
            let holder = match sys::fork() {
                Ok(h) => h,
                Err(e) => fail(w, n_ops + 5, e),
            };
            if holder != 0 {
                record(w, TAG_PID, holder, 0);
                sys::exit(0);
            }
            // The holder: PID 1 of the new PID namespace.
            for (i, op) in ops.iter().enumerate() {
                if let Err(e) = op.run() {
                    fail(w, i, e);
                }
            }
            if let Some(ruleset) = &scope {
                if let Err(e) = landlock::restrict_self(ruleset.as_fd().as_raw_fd()) {
                    fail(w, n_ops + 7, e);
                }
                sys::close(ruleset.as_fd().as_raw_fd());
            }
            sys::set_signal_mask(&[libc::SIGCHLD], libc::SIG_BLOCK);
            let (listener, signals) = match Zygote::listen() {
                Ok(fds) => fds,
                Err(e) => fail(w, n_ops + 6, e),
            };
            record(w, TAG_READY, 0, 0);
            sys::close(w);
            zygote.serve(listener, signals);
        }
        drop(zygote);
        drop(scope);
        drop(writer);
        drop(devnull);
        drop(cgroup_fds);
        let first_child = pid;
        let mut holder = None;
        let mut outcome: Option<Result<()>> = None;
        let mut rec = [0u8; 12];
        while outcome.is_none() {
            match reader.read_exact(&mut rec) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    outcome = Some(Err(Error::syscall("read pod readiness pipe", e)));
                    break;
                }
            }
            let tag = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
            let a = i32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
            let b = i32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]);
            match tag {
                TAG_PID => holder = Some(a),
                TAG_READY => outcome = Some(Ok(())),
                _ => {
                    let step = a as usize;
                    let step = match ops.get(step) {
                        Some(op) => op.describe(),
                        None => STEP_NAMES
                            .get(step - n_ops.min(step))
                            .copied()
                            .unwrap_or("unknown")
                            .to_owned(),
                    };
                    outcome = Some(Err(Error::HolderSetup {
                        step,
                        source: io::Error::from_raw_os_error(b),
                    }));
                }
            }
        }
        let _ = sys::waitpid(first_child, 0);
        let outcome = outcome.unwrap_or(Err(Error::HolderDiedEarly));
        let holder = match (outcome, holder) {
            (Ok(()), Some(h)) => h,
            (Ok(()), None) => return Err(Error::HolderDiedEarly),
            (Err(e), h) => {
                if let Some(h) = h {
                    let _ = sys::kill(h, libc::SIGKILL);
                }
                return Err(e);
            }
        };
        let stat = procfs::stat(holder)
            .map_err(|e| Error::syscall(format!("read /proc/{holder}/stat"), e))?
            .ok_or(Error::HolderGone { pid: holder })?;
        tracing::debug!(holder, root = %spec.root.display(), "pod ready");
        Ok(Pod {
            holder_pid: holder,
            start_time: stat.start_time,
            cgroup: spec.cgroup.clone(),
        })
    }

    /// Reopens a pod created by another process (or an earlier `Pod` value).
    ///
    /// Fails with [`Error::HolderGone`] when no such process runs (or it is a zombie), and with
    /// [`Error::HolderPidReused`] when the pid now belongs to a process started at another time,
    /// and with [`Error::NotAHolder`] when the process shares the caller's mount namespace.
    /// `cgroup` is the pod's cgroup, if it has one (reopen it with [`Cgroup::open`]); it is not
    /// inferred, so that `destroy` never kills a group it was not told about.
    pub fn attach(
        holder_pid: i32,
        expected_start_time: u64,
        cgroup: Option<Cgroup>,
    ) -> Result<Pod> {
        let stat = procfs::stat(holder_pid)
            .map_err(|e| Error::syscall(format!("read /proc/{holder_pid}/stat"), e))?
            .ok_or(Error::HolderGone { pid: holder_pid })?;
        if stat.start_time != expected_start_time {
            return Err(Error::HolderPidReused {
                pid: holder_pid,
                expected: expected_start_time,
                found: stat.start_time,
            });
        }
        if stat.state == b'Z' || stat.state == b'X' {
            return Err(Error::HolderGone { pid: holder_pid });
        }
        let theirs = fs::metadata(format!("/proc/{holder_pid}/ns/mnt"))
            .map_err(|e| Error::syscall(format!("stat /proc/{holder_pid}/ns/mnt"), e))?;
        let ours = fs::metadata("/proc/self/ns/mnt")
            .map_err(|e| Error::syscall("stat /proc/self/ns/mnt", e))?;
        if theirs.ino() == ours.ino() && theirs.dev() == ours.dev() {
            return Err(Error::NotAHolder { pid: holder_pid });
        }
        Ok(Pod {
            holder_pid,
            start_time: expected_start_time,
            cgroup,
        })
    }

    /// The holder's pid in the caller's PID namespace.
    pub fn holder_pid(&self) -> i32 {
        self.holder_pid
    }

    /// The holder's start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`); store
    /// it with the pid to [`attach`](Pod::attach) later.
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// The pod's cgroup, if it has one.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// Whether the holder still runs (same pid, same start time, not a zombie).
    pub fn is_alive(&self) -> bool {
        matches!(procfs::stat(self.holder_pid), Ok(Some(s)) if s.start_time == self.start_time && s.state != b'Z' && s.state != b'X')
    }

    /// Runs a command inside the pod: its namespaces, its filesystem view, its cgroup.
    ///
    /// The holder forks it: this connects to the holder's socket (through
    /// `/proc/<holder>/root`), sends the command with its stdio descriptors, and the holder's
    /// child does `setpgid`, stdio, `chdir`, rlimits, no_new_privs, capability drop, Landlock
    /// and seccomp when asked, then `execve`. Nothing joins a namespace or moves between
    /// cgroups. Errors up to and including `execve` are returned here. See [`SpawnedChild`]
    /// for what the pid is and what dropping the value does.
    ///
    /// A holder that is gone, or whose pid now names another process, is found when
    /// connecting ([`Error::HolderGone`]): no check comes before.
    pub fn spawn(&self, cmd: &CommandSpec) -> Result<SpawnedChild> {
        zygote::spawn(self, cmd)
    }

    /// Tears the pod down: SIGKILLs the holder, PID 1 of the pod's PID namespace, so the
    /// kernel kills every process of the namespace with it (daemons that double-forked or
    /// called `setsid` included) and ends the holder only once they are all gone; waits for
    /// that, then kills whatever is left in the cgroup (a process that joined it from outside
    /// the namespace) and removes the cgroup. The mounts vanish with the mount namespace.
    pub fn destroy(self) -> Result<()> {
        self.kill_holder()?;
        if let Some(cg) = self.cgroup {
            cg.remove()?;
        }
        tracing::debug!(holder = self.holder_pid, "pod destroyed");
        Ok(())
    }

    /// SIGKILLs the holder and waits until it has ended, through a pidfd (woken by the exit
    /// itself, and never signalling a process that reused the pid); by polling `/proc` on
    /// kernels without pidfds.
    fn kill_holder(&self) -> Result<()> {
        let timed_out = || {
            Error::syscall(
                format!("kill pod holder {}", self.holder_pid),
                io::Error::new(io::ErrorKind::TimedOut, "still alive 10s after SIGKILL"),
            )
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let pidfd = match sys::pidfd_open(self.holder_pid) {
            Ok(fd) => Some(fd),
            Err(libc::ESRCH) => return Ok(()),
            Err(_) => None,
        };
        // Checked after opening: the descriptor then names the holder, not a pid's next owner.
        if !self.is_alive() {
            return Ok(());
        }
        let Some(pidfd) = pidfd else {
            let _ = sys::kill(self.holder_pid, libc::SIGKILL);
            while self.is_alive() {
                if Instant::now() > deadline {
                    return Err(timed_out());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            return Ok(());
        };
        match sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL) {
            Ok(()) | Err(libc::ESRCH) => {}
            Err(e) => {
                return Err(Error::syscall(
                    format!("kill pod holder {}", self.holder_pid),
                    io::Error::from_raw_os_error(e),
                ));
            }
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            match sys::wait_readable(pidfd.as_raw_fd(), ms) {
                Ok(true) => return Ok(()),
                Ok(false) | Err(libc::EINTR) => {}
                Err(e) => {
                    return Err(Error::syscall(
                        format!("wait for pod holder {}", self.holder_pid),
                        io::Error::from_raw_os_error(e),
                    ));
                }
            }
        }
    }

    /// The holder's root directory, opened through `/proc/<holder>/root` and checked to be
    /// this holder's after opening (so a reused pid cannot stand in for it).
    fn view_root(&self) -> Result<fs::File> {
        let root_path = format!("/proc/{}/root", self.holder_pid);
        let root = fs::File::open(&root_path)
            .map_err(|e| Error::syscall(format!("open {root_path}"), e))?;
        if !self.is_alive() {
            return Err(Error::HolderGone {
                pid: self.holder_pid,
            });
        }
        Ok(root)
    }

    /// Device and inode of what the pod shows at `path` (absolute, as the pod sees it), and
    /// whether it is a directory: to tell whether the pod still sees what the host has
    /// there. Read through the holder's root, following no symlink a command made.
    pub fn identify(&self, path: &Path) -> Result<(u64, u64, bool)> {
        check_absolute("path", path)?;
        let root = self.view_root()?;
        let relative = path.strip_prefix("/").unwrap_or(path);
        let fd = if relative.as_os_str().is_empty() {
            sys::open_beneath(root.as_raw_fd(), c".", libc::O_PATH)
        } else {
            sys::open_beneath(root.as_raw_fd(), &cpath(relative)?, libc::O_PATH)
        }
        .map_err(|e| {
            Error::syscall(
                format!("open {} in the pod", path.display()),
                io::Error::from_raw_os_error(e),
            )
        })?;
        let meta = fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| Error::syscall(format!("stat {} in the pod", path.display()), e))?;
        Ok((meta.dev(), meta.ino(), meta.is_dir()))
    }

    /// Bytes in use in the pod's `/tmp` and `/dev/shm`, for a pod made with
    /// [`Scratch::Tmpfs`] (with [`Scratch::Dirs`] the space is counted where the directories
    /// live). Read through the holder's root without following anything a command made there.
    pub fn scratch_usage(&self) -> Result<u64> {
        let root = self.view_root()?;
        let root_path = format!("/proc/{}/root", self.holder_pid);
        let mut used = 0;
        for dir in [c"tmp", c"dev/shm"] {
            let fd = sys::open_beneath(root.as_raw_fd(), dir, libc::O_PATH | libc::O_DIRECTORY)
                .map_err(|e| {
                    Error::syscall(
                        format!("open {root_path}/{}", dir.to_string_lossy()),
                        io::Error::from_raw_os_error(e),
                    )
                })?;
            // SAFETY: statfs is plain data, filled by fstatfs below.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: fd is an open descriptor and st a valid statfs to fill.
            if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } < 0 {
                return Err(Error::last_os("fstatfs"));
            }
            if st.f_type == libc::TMPFS_MAGIC {
                used += (st.f_blocks - st.f_bfree) as u64 * st.f_bsize as u64;
            }
        }
        Ok(used)
    }

    /// Inode numbers of the holder's namespaces, `(name, inode)`, for diagnostics and tests.
    pub fn namespaces(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut out = Vec::new();
        for name in ["ipc", "mnt", "net", "pid", "user", "uts"] {
            let path = format!("/proc/{}/ns/{name}", self.holder_pid);
            let meta =
                fs::metadata(&path).map_err(|e| Error::syscall(format!("stat {path}"), e))?;
            out.push((name, meta.ino()));
        }
        Ok(out)
    }
}
