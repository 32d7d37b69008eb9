//! File operations beneath a directory the environment's command can change: ptest runs as root
//! on the host and works in an environment's root (`logs/`, `run/`, the marker, a copied
//! workspace, a JUnit file, a venv), where the command may have planted symlinks, FIFOs, huge
//! sparse files or hard links, or swap paths in a loop.
//!
//! A [`Beneath`] is a directory held open by its descriptor; every path given to it is relative
//! and resolved from that descriptor by the kernel with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` (or, on a kernel without
//! `openat2`, a walk that opens each component with `O_NOFOLLOW` and stays on one device), so
//! no symlink, `..` or mount leads out. On top of that:
//!
//! - reads are of regular files only, opened with `O_NONBLOCK` (a FIFO cannot block) and
//!   refused on `fstat` otherwise, and bounded ([`Beneath::read`] refuses past its maximum,
//!   [`Beneath::read_tail`] reads only the end);
//! - writes create with `O_CREAT | O_EXCL | O_NOFOLLOW` ([`Beneath::create_new`]), replace by
//!   renaming a new file over the old name within the directory ([`Beneath::replace`]), or
//!   append to a regular file with one name ([`Beneath::append`]);
//! - removals work on directory descriptors (`unlinkat`, [`Beneath::empty`]) and never
//!   resolve a path again.
//!
//! Every refusal is an [`Error`] naming the path (relative to the root) and what was found.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, StatxFlags};
use rustix::io::Errno;

/// What was refused, and where (`path` is relative to the root, `root` its host path).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A symlink where ptest expected a file or directory.
    #[error(
        "refused: {} is a symlink planted in the environment (root {}); ptest does not follow it",
        path.display(), root.display()
    )]
    Symlink {
        /// The root.
        root: PathBuf,
        /// The path, relative to it.
        path: PathBuf,
    },
    /// A `/proc` magic link (`/proc/<pid>/fd/N`, `cwd`, `root`).
    #[error(
        "refused: {} is a /proc magic link (under {}); ptest does not follow it",
        path.display(), root.display()
    )]
    MagicLink {
        /// The directory.
        root: PathBuf,
        /// The path, relative to it.
        path: PathBuf,
    },
    /// Not a regular file (a FIFO, socket, device or directory) where one was expected.
    #[error(
        "refused: {} is a {kind}, not a regular file (root {}); ptest does not open it",
        path.display(), root.display()
    )]
    NotRegular {
        /// The root.
        root: PathBuf,
        /// The path, relative to it.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A file with more than one name: one of them may be a host file's.
    #[error(
        "refused: {} is a hard link ({links} names; root {}); ptest writes only to files of \
         one name",
        path.display(), root.display()
    )]
    HardLink {
        /// The root.
        root: PathBuf,
        /// The path, relative to it.
        path: PathBuf,
        /// How many names the file has.
        links: u64,
    },
    /// Larger than the caller reads.
    #[error(
        "refused: {} is {size} bytes, more than the {max} ptest reads of it (root {})",
        path.display(), root.display()
    )]
    TooBig {
        /// The root.
        root: PathBuf,
        /// The path, relative to it.
        path: PathBuf,
        /// Its size (or what was read of it).
        size: u64,
        /// The maximum.
        max: u64,
    },
    /// An absolute path or one with `..`: it would lead out of the root.
    #[error("refused: {} leads outside {}", path.display(), root.display())]
    Outside {
        /// The root.
        root: PathBuf,
        /// The path.
        path: PathBuf,
    },
    /// A mount point on the way: what is mounted there is not the environment's.
    #[error(
        "refused: {} crosses into another mount (root {}); ptest does not follow it",
        path.display(), root.display()
    )]
    OtherMount {
        /// The root.
        root: PathBuf,
        /// The path, relative to it.
        path: PathBuf,
    },
    /// Not there.
    #[error("{} does not exist under {}", path.display(), root.display())]
    NotFound {
        /// The root.
        root: PathBuf,
        /// The path, relative to it.
        path: PathBuf,
    },
    /// Any other failure of the operation.
    #[error("{action} {} under {}: {source}", path.display(), root.display())]
    Io {
        /// What ptest was doing.
        action: &'static str,
        /// The root.
        root: PathBuf,
        /// The path, relative to it.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Whether the path simply does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::Io { source, .. } => source.kind(),
            Error::TooBig { .. } => io::ErrorKind::FileTooLarge,
            _ => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, e)
    }
}

impl From<Error> for crate::Error {
    /// A refusal is the input's fault, like a bad root (exit code 2); its message names the
    /// root and the path already.
    fn from(e: Error) -> crate::Error {
        crate::Error::Usage(e.to_string())
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Whether `openat2` is known to be missing (ENOSYS): then the `O_NOFOLLOW` walk is used.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// A directory held open; paths given to it are resolved beneath it only (module docs).
#[derive(Debug)]
pub struct Beneath {
    fd: OwnedFd,
    /// The root's host path, for messages.
    root: PathBuf,
    /// This directory, relative to the root (empty for the root itself).
    at: PathBuf,
}

impl Beneath {
    /// Opens the directory at `path`, a path ptest trusts (its own home, a project directory)
    /// except for its last component, which must be a real directory, not a symlink.
    pub fn open(path: &Path) -> Result<Beneath> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::open(path, flags, Mode::empty()) {
            Ok(fd) => Ok(Beneath {
                fd,
                root: path.to_owned(),
                at: PathBuf::new(),
            }),
            Err(Errno::LOOP) => Err(Error::Symlink {
                root: path.to_owned(),
                path: ".".into(),
            }),
            Err(Errno::NOENT) => Err(Error::NotFound {
                root: path.to_owned(),
                path: ".".into(),
            }),
            Err(e) => Err(Error::Io {
                action: "opening",
                root: path.to_owned(),
                path: ".".into(),
                source: e.into(),
            }),
        }
    }

    /// The root's host path (the directory [`Beneath::open`] opened).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path`, a host path beneath this directory, relative to it: what the other methods
    /// take. A path elsewhere is refused.
    pub fn relative<'a>(&self, path: &'a Path) -> Result<&'a Path> {
        let here = self.root.join(&self.at);
        match path.strip_prefix(&here) {
            Ok(rel) if !rel.as_os_str().is_empty() => Ok(rel),
            _ => Err(self.outside(path)),
        }
    }

    /// The refusal of `path` as leading outside this directory.
    pub fn outside(&self, path: &Path) -> Error {
        Error::Outside {
            root: self.root.clone(),
            path: self.shown(path),
        }
    }

    /// This directory's descriptor.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The path of `rel` relative to the root, for messages.
    fn shown(&self, rel: &Path) -> PathBuf {
        self.at.join(rel)
    }

    fn io(&self, action: &'static str, rel: &Path, e: impl Into<io::Error>) -> Error {
        Error::Io {
            action,
            root: self.root.clone(),
            path: self.shown(rel),
            source: e.into(),
        }
    }

    /// Checks that `rel` is relative with no `..`; returns its normal components.
    fn components<'a>(&self, rel: &'a Path) -> Result<Vec<&'a OsStr>> {
        let mut out = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(name) => out.push(name),
                Component::CurDir => {}
                _ => {
                    return Err(Error::Outside {
                        root: self.root.clone(),
                        path: self.shown(rel),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Opens `rel` beneath this directory with `flags` (module docs); the last component is
    /// never followed either.
    fn open_raw(&self, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd> {
        let parts = self.components(rel)?;
        let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let opened = if parts.is_empty() {
            rustix::fs::openat(&self.fd, c".", flags, mode)
        } else if NO_OPENAT2.load(Ordering::Relaxed) {
            self.walk(&parts, flags, mode)
        } else {
            match rustix::fs::openat2(&self.fd, rel, flags, mode, RESOLVE) {
                Err(Errno::NOSYS) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    self.walk(&parts, flags, mode)
                }
                // Another process's openat2 may retry on a rename race: so does this one.
                Err(Errno::AGAIN) => rustix::fs::openat2(&self.fd, rel, flags, mode, RESOLVE),
                other => other,
            }
        };
        opened.map_err(|e| self.refusal(rel, &parts, e))
    }

    /// The fallback of [`Beneath::open_raw`]: each directory on the way opened with
    /// `O_NOFOLLOW`, staying on this directory's device.
    fn walk(&self, parts: &[&OsStr], flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
        let dev = rustix::fs::fstat(&self.fd)?.st_dev;
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let (last, dirs) = parts.split_last().ok_or(Errno::INVAL)?;
        let mut cur: Option<OwnedFd> = None;
        for name in dirs {
            let next = rustix::fs::openat(
                cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd()),
                *name,
                dir_flags,
                Mode::empty(),
            )?;
            if rustix::fs::fstat(&next)?.st_dev != dev {
                return Err(Errno::XDEV);
            }
            cur = Some(next);
        }
        let fd = rustix::fs::openat(
            cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd()),
            *last,
            flags,
            mode,
        )?;
        if rustix::fs::fstat(&fd)?.st_dev != dev {
            return Err(Errno::XDEV);
        }
        Ok(fd)
    }

    /// The error for `errno` from opening `rel`: a symlink on the way is named.
    fn refusal(&self, rel: &Path, parts: &[&OsStr], errno: Errno) -> Error {
        let (root, path) = (self.root.clone(), self.shown(rel));
        match errno {
            Errno::NOENT => Error::NotFound { root, path },
            Errno::XDEV => Error::OtherMount { root, path },
            // A FIFO opened for writing with no reader, or a device with no driver (an
            // overlay whiteout): the kind is looked up for the message only.
            Errno::NXIO => Error::NotRegular {
                root,
                path,
                kind: rustix::fs::statat(&self.fd, rel, AtFlags::SYMLINK_NOFOLLOW)
                    .map_or("special file", |st| {
                        kind_name(FileType::from_raw_mode(st.st_mode))
                    }),
            },
            Errno::LOOP | Errno::NOTDIR => match self.first_link(parts) {
                Some((at, true)) => Error::MagicLink {
                    root,
                    path: self.at.join(at),
                },
                Some((at, false)) => Error::Symlink {
                    root,
                    path: self.at.join(at),
                },
                None => self.io("opening", rel, errno),
            },
            e => self.io("opening", rel, e),
        }
    }

    /// The first component of `parts` that is a symlink, and whether it is a `/proc` magic
    /// link; for messages only.
    fn first_link(&self, parts: &[&OsStr]) -> Option<(PathBuf, bool)> {
        let mut at = PathBuf::new();
        let mut cur: Option<OwnedFd> = None;
        for name in parts {
            at.push(name);
            let dir = cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
            let fd = rustix::fs::openat(
                dir,
                *name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()?;
            let st = rustix::fs::fstat(&fd).ok()?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                let magic = rustix::fs::fstatfs(&fd)
                    .is_ok_and(|s| s.f_type == rustix::fs::PROC_SUPER_MAGIC);
                return Some((at, magic));
            }
            cur = Some(fd);
        }
        None
    }

    /// The directory `rel` beneath this one.
    pub fn dir(&self, rel: &Path) -> Result<Beneath> {
        let fd = self.open_raw(rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        Ok(Beneath {
            fd,
            root: self.root.clone(),
            at: self.shown(rel),
        })
    }

    /// The directory holding `rel`, and `rel`'s last component.
    fn parent<'a>(&self, rel: &'a Path) -> Result<(Beneath, &'a Path)> {
        let parts = self.components(rel)?;
        let Some(&name) = parts.last() else {
            return Err(Error::Outside {
                root: self.root.clone(),
                path: self.shown(rel),
            });
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        let dir = if parent.as_os_str().is_empty() {
            self.dir(Path::new("."))?
        } else {
            self.dir(parent)?
        };
        Ok((dir, Path::new(name)))
    }

    /// Opens the regular file `rel` for reading, without blocking on a FIFO; returns it and
    /// its size. Anything but a regular file is refused.
    pub fn open_regular(&self, rel: &Path) -> Result<(File, u64)> {
        let fd = self.open_raw(rel, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
        let st = rustix::fs::fstat(&fd).map_err(|e| self.io("inspecting", rel, e))?;
        self.regular(rel, st.st_mode)?;
        Ok((File::from(fd), st.st_size as u64))
    }

    fn regular(&self, rel: &Path, mode: u32) -> Result<()> {
        match FileType::from_raw_mode(mode) {
            FileType::RegularFile => Ok(()),
            other => Err(Error::NotRegular {
                root: self.root.clone(),
                path: self.shown(rel),
                kind: kind_name(other),
            }),
        }
    }

    /// The whole content of the regular file `rel`, refused when larger than `max` bytes
    /// (also when it grows past `max` while read).
    pub fn read(&self, rel: &Path, max: u64) -> Result<Vec<u8>> {
        let (file, size) = self.open_regular(rel)?;
        let too_big = |size| Error::TooBig {
            root: self.root.clone(),
            path: self.shown(rel),
            size,
            max,
        };
        if size > max {
            return Err(too_big(size));
        }
        let mut out = Vec::with_capacity(size as usize);
        file.take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| self.io("reading", rel, e))?;
        if out.len() as u64 > max {
            return Err(too_big(out.len() as u64));
        }
        Ok(out)
    }

    /// The last `max` bytes (at most) of the regular file `rel`, and its size.
    pub fn read_tail(&self, rel: &Path, max: u64) -> Result<(Vec<u8>, u64)> {
        let (mut file, size) = self.open_regular(rel)?;
        let start = size.saturating_sub(max);
        file.seek(SeekFrom::Start(start))
            .map_err(|e| self.io("reading", rel, e))?;
        let mut out = Vec::new();
        file.take(max)
            .read_to_end(&mut out)
            .map_err(|e| self.io("reading", rel, e))?;
        Ok((out, size))
    }

    /// Creates the new file `rel` (`O_CREAT | O_EXCL | O_NOFOLLOW`) for writing; an existing
    /// file or symlink of that name is refused.
    pub fn create_new(&self, rel: &Path, mode: u32) -> Result<File> {
        let (dir, name) = self.parent(rel)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        rustix::fs::openat(
            &dir.fd,
            name,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map(File::from)
        .map_err(|e| match e {
            Errno::EXIST => self.io("creating", rel, io::Error::from(e)),
            e => self.refusal(rel, &self.components(rel).unwrap_or_default(), e),
        })
    }

    /// Opens the regular file `rel` for appending, creating it when missing. A symlink, a
    /// FIFO or other special file, or a file with another name (a hard link) is refused.
    pub fn append(&self, rel: &Path, mode: u32) -> Result<File> {
        let fd = self.open_raw(
            rel,
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NONBLOCK,
            Mode::from_raw_mode(mode),
        )?;
        let st = rustix::fs::fstat(&fd).map_err(|e| self.io("inspecting", rel, e))?;
        self.regular(rel, st.st_mode)?;
        if st.st_nlink > 1 {
            return Err(Error::HardLink {
                root: self.root.clone(),
                path: self.shown(rel),
                links: st.st_nlink,
            });
        }
        // Writes to a regular file do not block anyway; clear the flag all the same.
        let _ = rustix::fs::fcntl_setfl(&fd, OFlags::APPEND);
        Ok(File::from(fd))
    }

    /// Replaces `rel` with `bytes`: written to a new file of the same directory, then renamed
    /// over the name (a symlink there is replaced, never followed).
    pub fn replace(&self, rel: &Path, bytes: &[u8], mode: u32) -> Result<()> {
        self.write_aside(rel, mode, |file| file.write_all(bytes))
    }

    /// Fills a new file (`O_EXCL`) beside `rel` with `fill`, then renames it over `rel`; the
    /// new file goes when anything fails.
    fn write_aside(
        &self,
        rel: &Path,
        mode: u32,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        let mut part = OsStr::new(".").to_owned();
        part.push(name.as_os_str());
        part.push(format!(".{}.part", std::process::id()));
        let part = Path::new(&part);
        let _ = rustix::fs::unlinkat(&dir.fd, part, AtFlags::empty());
        let mut file = dir.create_new(part, mode)?;
        let written = fill(&mut file)
            .map_err(|e| self.io("writing", rel, e))
            .and_then(|()| {
                drop(file);
                rustix::fs::renameat(&dir.fd, part, &dir.fd, name)
                    .map_err(|e| self.io("renaming into", rel, e))
            });
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&dir.fd, part, AtFlags::empty());
        }
        written
    }

    /// Makes the symlink `rel` pointing to `target` (which is not resolved).
    pub fn symlink(&self, target: &Path, rel: &Path) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        rustix::fs::symlinkat(target, &dir.fd, name).map_err(|e| self.io("creating", rel, e))
    }

    /// Whether `rel` is a regular file (not following a symlink there).
    pub fn is_file(&self, rel: &Path) -> bool {
        self.open_raw(rel, OFlags::PATH, Mode::empty())
            .and_then(|fd| rustix::fs::fstat(&fd).map_err(|e| self.io("inspecting", rel, e)))
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
    }

    /// The names in this directory (but `.` and `..`), read through its descriptor.
    pub fn names(&self) -> Result<Vec<std::ffi::OsString>> {
        let listed = entries(&self.fd).map_err(|e| self.io("listing", Path::new(""), e))?;
        Ok(listed
            .into_iter()
            .map(|(name, _)| OsStr::from_bytes(name.to_bytes()).to_owned())
            .collect())
    }

    /// Copies the host file `source` to `rel` with `mode`: into a new file beside it (by
    /// reflink where the filesystem can), renamed into place when complete. Never a hard
    /// link: what the environment's command writes to its copy stays in its copy.
    pub fn copy_in(&self, source: &Path, rel: &Path, mode: u32) -> Result<()> {
        let mut from = File::open(source).map_err(|e| self.io("reading", source, e))?;
        self.write_aside(rel, mode, |to| {
            if rustix::fs::ioctl_ficlone(&*to, &from).is_err() {
                io::copy(&mut from, to)?;
            }
            Ok(())
        })
    }

    /// Renames `from` to `to`, both in the directory of `from` (`to` is a bare name).
    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let (dir, name) = self.parent(from)?;
        if to.components().count() != 1 {
            return Err(Error::Outside {
                root: self.root.clone(),
                path: self.shown(to),
            });
        }
        rustix::fs::renameat(&dir.fd, name, &dir.fd, to).map_err(|e| match e {
            Errno::NOENT => Error::NotFound {
                root: self.root.clone(),
                path: self.shown(from),
            },
            e => self.io("renaming", from, e),
        })
    }

    /// Removes the name `rel` (a file, symlink, FIFO: never what a link points to); returns
    /// whether it was there. A directory is refused.
    pub fn remove_file(&self, rel: &Path) -> Result<bool> {
        let (dir, name) = match self.parent(rel) {
            Err(e) if e.is_not_found() => return Ok(false),
            other => other?,
        };
        match rustix::fs::unlinkat(&dir.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(Errno::ISDIR) => Err(Error::NotRegular {
                root: self.root.clone(),
                path: self.shown(rel),
                kind: "directory",
            }),
            Err(e) => Err(self.io("deleting", rel, e)),
        }
    }

    /// Removes the directory `rel` and everything in it on its mount, through descriptors
    /// ([`Beneath::empty`]); anything else of that name is unlinked as a name. Absent is fine.
    pub fn remove_dir(&self, rel: &Path) -> Result<()> {
        match self.dir(rel) {
            Ok(dir) => {
                dir.empty()?;
                let (parent, name) = self.parent(rel)?;
                match rustix::fs::unlinkat(&parent.fd, name, AtFlags::REMOVEDIR) {
                    Ok(()) | Err(Errno::NOENT) => Ok(()),
                    Err(e) => Err(self.io("deleting", rel, e)),
                }
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(_) => self.remove_file(rel).map(drop),
        }
    }

    /// Makes the directory `rel`; an existing one is fine (anything else of that name is
    /// refused).
    pub fn make_dir(&self, rel: &Path, mode: u32) -> Result<Beneath> {
        let (dir, name) = self.parent(rel)?;
        match rustix::fs::mkdirat(&dir.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(Errno::EXIST) => self.dir(rel),
            Err(e) => Err(self.io("creating", rel, e)),
        }
    }

    /// Makes `rel` an empty real directory again whatever the command left there: a
    /// directory is emptied through its descriptor, anything else (a symlink, a file) is
    /// unlinked and a new directory made in its place. Returns the (now empty) directory.
    pub fn reset_dir(&self, rel: &Path, mode: u32) -> Result<Beneath> {
        match self.dir(rel) {
            Ok(dir) => {
                let kept = dir.empty()?;
                if !kept.is_empty() {
                    return Err(self.io(
                        "emptying",
                        rel,
                        io::Error::other(format!("it holds other mounts: {}", kept.join(", "))),
                    ));
                }
                Ok(dir)
            }
            Err(Error::Symlink { .. } | Error::MagicLink { .. } | Error::NotRegular { .. }) => {
                self.remove_file(rel)?;
                self.make_dir(rel, mode)
            }
            Err(Error::Io { source, .. })
                if source.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) =>
            {
                self.remove_file(rel)?;
                self.make_dir(rel, mode)
            }
            Err(e) if e.is_not_found() => self.make_dir(rel, mode),
            Err(e) => Err(e),
        }
    }

    /// Deletes everything in this directory that lies on its mount, through descriptors,
    /// never following a symlink; returns what it left (entries on other mounts).
    pub fn empty(&self) -> Result<Vec<String>> {
        let mut kept = Vec::new();
        let mnt = mount_id(&self.fd, c".").map_err(|e| self.io("inspecting", Path::new(""), e))?;
        empty_dir(&self.fd, &self.root.join(&self.at), mnt, &mut kept)
            .map_err(|e| self.io("deleting", Path::new(""), e))?;
        Ok(kept)
    }

    /// Bytes and entries beneath this directory, through descriptors (symlinks counted as
    /// themselves, other mounts not entered).
    pub fn usage(&self) -> Result<(u64, u64)> {
        let mnt = mount_id(&self.fd, c".").map_err(|e| self.io("inspecting", Path::new(""), e))?;
        let (mut bytes, mut files) = (0u64, 0u64);
        count(&self.fd, mnt, &mut bytes, &mut files)
            .map_err(|e| self.io("measuring", Path::new(""), e))?;
        Ok((bytes, files))
    }
}

/// What a file of type `t` is called in messages.
fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Symlink => "symlink",
        FileType::Unknown => "file of unknown type",
    }
}

/// The mount id of `name` beneath `dir`, not following a symlink.
pub(crate) fn mount_id(dir: &OwnedFd, name: &CStr) -> rustix::io::Result<u64> {
    let st = rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::MNT_ID | StatxFlags::TYPE,
    )?;
    Ok(st.stx_mnt_id)
}

/// The entries of `dir` but `.` and `..`.
fn entries(dir: &OwnedFd) -> io::Result<Vec<(std::ffi::CString, FileType)>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            out.push((name.to_owned(), entry.file_type()));
        }
    }
    Ok(out)
}

fn open_subdir(dir: &OwnedFd, name: &CStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Deletes everything in `dir` (at `path`, for messages) that lies on mount `mnt`; what is on
/// another mount is left and named in `kept`, with what leads to it.
pub(crate) fn empty_dir(
    dir: &OwnedFd,
    path: &Path,
    mnt: u64,
    kept: &mut Vec<String>,
) -> io::Result<()> {
    for (name, kind) in entries(dir)? {
        let here = path.join(OsStr::from_bytes(name.to_bytes()));
        if mount_id(dir, &name)? != mnt {
            kept.push(format!("{} (another mount)", here.display()));
            continue;
        }
        if kind == FileType::Directory {
            let sub = open_subdir(dir, &name)?;
            let before = kept.len();
            empty_dir(&sub, &here, mnt, kept)?;
            if kept.len() == before {
                rustix::fs::unlinkat(dir, &name, AtFlags::REMOVEDIR)?;
            }
        } else {
            rustix::fs::unlinkat(dir, &name, AtFlags::empty())?;
        }
    }
    Ok(())
}

fn count(dir: &OwnedFd, mnt: u64, bytes: &mut u64, files: &mut u64) -> io::Result<()> {
    for (name, kind) in entries(dir)? {
        *files += 1;
        let st = rustix::fs::statx(
            dir,
            &name,
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::MNT_ID | StatxFlags::TYPE | StatxFlags::SIZE,
        )?;
        if kind == FileType::Directory {
            if st.stx_mnt_id == mnt
                && let Ok(sub) = open_subdir(dir, &name)
            {
                count(&sub, mnt, bytes, files)?;
            }
        } else {
            *bytes += st.stx_size;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, PathBuf, Beneath) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("logs")).unwrap();
        std::fs::write(tmp.path().join("canary"), "secret").unwrap();
        let b = Beneath::open(&root).unwrap();
        (tmp, root, b)
    }

    #[test]
    fn a_symlinked_file_or_directory_is_refused_and_named() {
        let (tmp, root, b) = setup();
        symlink(tmp.path().join("canary"), root.join("logs/x.log")).unwrap();
        let e = b.read(Path::new("logs/x.log"), 100).unwrap_err();
        assert!(matches!(e, Error::Symlink { .. }), "{e}");
        assert!(e.to_string().contains("logs/x.log is a symlink"), "{e}");
        let e = b.append(Path::new("logs/x.log"), 0o644).unwrap_err();
        assert!(matches!(e, Error::Symlink { .. }), "{e}");
        symlink(tmp.path(), root.join("run")).unwrap();
        let e = b.replace(Path::new("run/canary"), b"1", 0o644).unwrap_err();
        assert!(e.to_string().contains("run is a symlink"), "{e}");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("canary")).unwrap(),
            "secret"
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (_tmp, root, b) = setup();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("logs/f"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = b.read(Path::new("logs/f"), 100).unwrap_err();
        assert!(e.to_string().contains("logs/f is a FIFO"), "{e}");
        let e = b.append(Path::new("logs/f"), 0o644).unwrap_err();
        assert!(matches!(e, Error::NotRegular { .. }), "{e}");
    }

    #[test]
    fn a_file_past_the_maximum_is_refused_and_a_tail_reads_only_the_end() {
        let (_tmp, root, b) = setup();
        let f = std::fs::File::create(root.join("big")).unwrap();
        f.set_len(10 << 30).unwrap(); // sparse 10 GiB
        let e = b.read(Path::new("big"), 64).unwrap_err();
        assert!(matches!(e, Error::TooBig { max: 64, .. }), "{e}");
        let (tail, size) = b.read_tail(Path::new("big"), 8).unwrap();
        assert_eq!((tail.len(), size), (8, 10 << 30));
    }

    #[test]
    fn a_path_leading_outside_is_refused() {
        let (_tmp, _root, b) = setup();
        for p in ["../canary", "/etc/passwd", "logs/../../canary"] {
            let e = b.read(Path::new(p), 100).unwrap_err();
            assert!(matches!(e, Error::Outside { .. }), "{p}: {e}");
        }
    }

    #[test]
    fn a_magic_link_is_refused() {
        let proc_self = Beneath::open(Path::new(&format!("/proc/{}", std::process::id()))).unwrap();
        let e = proc_self.read(Path::new("fd/0"), 100).unwrap_err();
        assert!(matches!(e, Error::MagicLink { .. }), "{e}");
        assert!(e.to_string().contains("magic link"), "{e}");
    }

    #[test]
    fn a_hard_link_is_not_appended_to() {
        let (tmp, root, b) = setup();
        std::fs::hard_link(tmp.path().join("canary"), root.join("logs/h.log")).unwrap();
        let e = b.append(Path::new("logs/h.log"), 0o644).unwrap_err();
        assert!(matches!(e, Error::HardLink { links: 2, .. }), "{e}");
    }

    #[test]
    fn the_walk_refuses_what_openat2_refuses() {
        let (tmp, root, b) = setup();
        symlink(tmp.path(), root.join("run")).unwrap();
        let parts = [OsStr::new("run"), OsStr::new("canary")];
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW;
        let e = b.walk(&parts, flags, Mode::empty()).unwrap_err();
        assert!(matches!(e, Errno::LOOP | Errno::NOTDIR), "{e}");
        assert!(matches!(
            b.refusal(Path::new("run/canary"), &parts, e),
            Error::Symlink { .. }
        ));
        std::fs::write(root.join("logs/ok"), "fine").unwrap();
        let fd = b
            .walk(
                &[OsStr::new("logs"), OsStr::new("ok")],
                flags,
                Mode::empty(),
            )
            .unwrap();
        let mut text = String::new();
        File::from(fd).read_to_string(&mut text).unwrap();
        assert_eq!(text, "fine");
    }

    #[test]
    fn replace_and_reset_never_touch_what_a_link_points_to() {
        let (tmp, root, b) = setup();
        symlink(tmp.path().join("canary"), root.join("logs/p.pid")).unwrap();
        b.dir(Path::new("logs"))
            .unwrap()
            .replace(Path::new("p.pid"), b"42\n", 0o644)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("logs/p.pid")).unwrap(),
            "42\n"
        );
        symlink(tmp.path(), root.join("workspace")).unwrap();
        let ws = b.reset_dir(Path::new("workspace"), 0o755).unwrap();
        ws.create_new(Path::new("f"), 0o644).unwrap();
        assert!(root.join("workspace/f").is_file());
        assert!(!root.join("workspace").is_symlink());
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("canary")).unwrap(),
            "secret"
        );
        let (bytes, files) = b.usage().unwrap();
        assert_eq!((bytes, files), (3, 4));
    }
}
