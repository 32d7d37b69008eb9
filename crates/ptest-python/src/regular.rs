//! Reading the small files of a venv (`pyvenv.cfg`, a dist-info's `METADATA` and
//! `INSTALLER`), which the environment's command can replace: the last component is opened
//! without following a symlink (`O_NOFOLLOW`) and without blocking on a FIFO (`O_NONBLOCK`),
//! only a regular file is read, and at most `max` bytes of it (a 10G sparse file is refused
//! on its size, not read). Each refusal says what was found.

use std::io::{self, Read};
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

fn refused(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("refused: {} {what}", path.display()),
    )
}

/// The content of the regular file at `path`, at most `max` bytes.
pub(crate) fn read(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => {
            return Err(refused(
                path,
                "is a symlink planted in the environment; not followed",
            ));
        }
        Err(e) => return Err(e.into()),
    };
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
pub(crate) fn read_to_string(path: &Path, max: u64) -> io::Result<String> {
    Ok(String::from_utf8_lossy(&read(path, max)?).into_owned())
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
        let e = read(&cfg, 100).unwrap_err().to_string();
        assert!(e.contains("is a symlink planted"), "{e}");
        std::fs::remove_file(&cfg).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &cfg,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = read(&cfg, 100).unwrap_err().to_string();
        assert!(e.contains("is a FIFO, not a regular file"), "{e}");
        std::fs::remove_file(&cfg).unwrap();
        std::fs::File::create(&cfg)
            .unwrap()
            .set_len(10 << 30)
            .unwrap();
        let e = read(&cfg, 100).unwrap_err().to_string();
        assert!(e.contains("more than the 100 ptest reads"), "{e}");
        std::fs::write(&cfg, "home = /usr/bin\n").unwrap();
        assert_eq!(read_to_string(&cfg, 100).unwrap(), "home = /usr/bin\n");
    }
}
