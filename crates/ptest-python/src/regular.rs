//! Reading the small files of a venv (`pyvenv.cfg`, a dist-info's `METADATA` and
//! `INSTALLER`), which the environment's command can replace. Every path is resolved beneath
//! the venv's directory (itself opened without following a symlink) with `openat2`
//! (`RESOLVE_BENEATH`, no symlinks, no magic links, no other mount; where the kernel lacks it,
//! a walk opening each component `O_NOFOLLOW`), without blocking on a FIFO (`O_NONBLOCK`);
//! only a regular file is read, and at most `max` bytes of it (a 10G sparse file is refused
//! on its size, not read). Each refusal says what was found.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Opens `path`, which must lie beneath `anchor`, resolving nothing the environment could
/// have planted: `anchor` itself is not followed if it is a symlink, nor is any component
/// below it.
fn open_beneath(anchor: &Path, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix(anchor).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not beneath {}", path.display(), anchor.display()),
        )
    })?;
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = rustix::fs::open(anchor, dir_flags, Mode::empty()).map_err(|e| planted(anchor, e))?;
    if rel.as_os_str().is_empty() {
        return Ok(rustix::fs::openat(
            &dir,
            ".",
            flags | OFlags::CLOEXEC,
            Mode::empty(),
        )?);
    }
    let resolve = ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV;
    match rustix::fs::openat2(&dir, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
        Err(Errno::NOSYS) => {}
        other => return other.map_err(|e| planted(path, e)),
    }
    // No openat2 (Linux < 5.6): one component at a time, none followed.
    let mut at = dir;
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        let Component::Normal(name) = part else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a plain path",
            ));
        };
        let last = i + 1 == parts.len();
        let f = if last {
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC
        } else {
            dir_flags
        };
        at = rustix::fs::openat(&at, *name, f, Mode::empty()).map_err(|e| planted(path, e))?;
    }
    Ok(at)
}

/// A symlink met where ptest resolves nothing is said to be one.
fn planted(path: &Path, e: Errno) -> io::Error {
    if e == Errno::LOOP || e == Errno::XDEV {
        refused(
            path,
            "holds a symlink or mount planted in the environment; not followed",
        )
    } else {
        e.into()
    }
}

/// The names of the directories in `dir` (beneath `anchor`), without following a symlink.
pub(crate) fn subdirs(anchor: &Path, dir: &Path) -> io::Result<Vec<OsString>> {
    let fd = open_beneath(anchor, dir, OFlags::RDONLY | OFlags::DIRECTORY)?;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        // Some filesystems do not say in the entry: then ask, without following.
        let kind = match entry.file_type() {
            FileType::Unknown => {
                let st = rustix::fs::statat(&fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
                FileType::from_raw_mode(st.st_mode)
            }
            kind => kind,
        };
        if kind == FileType::Directory {
            out.push(std::os::unix::ffi::OsStringExt::from_vec(
                name.to_bytes().to_vec(),
            ));
        }
    }
    Ok(out)
}

fn refused(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("refused: {} {what}", path.display()),
    )
}

/// The content of the regular file at `path` (beneath `anchor`), at most `max` bytes.
pub(crate) fn read(anchor: &Path, path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let fd = open_beneath(anchor, path, OFlags::RDONLY | OFlags::NONBLOCK)?;
    let st = rustix::fs::fstat(&fd)?;
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => None,
        FileType::Fifo => Some("FIFO"),
        FileType::Directory => Some("directory"),
        _ => Some("special file"),
    };
    if let Some(kind) = kind {
        return Err(refused(path, format!("is a {kind}, not a regular file")));
    }
    let too_big = |size| {
        refused(
            path,
            format!("is {size} bytes, more than the {max} ptest reads"),
        )
    };
    if st.st_size as u64 > max {
        return Err(too_big(st.st_size as u64));
    }
    let mut out = Vec::new();
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(too_big(out.len() as u64));
    }
    Ok(out)
}

/// [`read`] as text (invalid UTF-8 replaced).
pub(crate) fn read_to_string(anchor: &Path, path: &Path, max: u64) -> io::Result<String> {
    Ok(String::from_utf8_lossy(&read(anchor, path, max)?).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn links_fifos_and_big_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("pyvenv.cfg");
        std::fs::write(dir.path().join("host"), "home = /secret\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("host"), &cfg).unwrap();
        let d = dir.path();
        let e = read(d, &cfg, 100).unwrap_err().to_string();
        assert!(e.contains("symlink or mount planted"), "{e}");
        let sub = d.join("sub");
        std::os::unix::fs::symlink(d.join("elsewhere"), &sub).unwrap();
        std::fs::create_dir(d.join("elsewhere")).unwrap();
        std::fs::write(d.join("elsewhere/METADATA"), "x").unwrap();
        let e = read(d, &sub.join("METADATA"), 100).unwrap_err().to_string();
        assert!(e.contains("symlink or mount planted"), "{e}");
        assert_eq!(subdirs(d, d).unwrap(), vec![OsString::from("elsewhere")]);
        std::fs::remove_file(&cfg).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &cfg,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = read(d, &cfg, 100).unwrap_err().to_string();
        assert!(e.contains("is a FIFO, not a regular file"), "{e}");
        std::fs::remove_file(&cfg).unwrap();
        std::fs::File::create(&cfg)
            .unwrap()
            .set_len(10 << 30)
            .unwrap();
        let e = read(d, &cfg, 100).unwrap_err().to_string();
        assert!(e.contains("more than the 100 ptest reads"), "{e}");
        std::fs::write(&cfg, "home = /usr/bin\n").unwrap();
        assert_eq!(read_to_string(d, &cfg, 100).unwrap(), "home = /usr/bin\n");
    }
}
