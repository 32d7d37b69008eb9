//! Driving a proxy that runs in another process (another namespace, even): through a small
//! JSON file, the [`ControlFile`].
//!
//! `<name>.json` holds the proxy's [`ProxyConfig`]: where it listens, where it forwards, the
//! faults and a generation that grows with every change. Writers change it under a lock and
//! replace it atomically (write, then rename). The proxy ([`serve_file`]) watches the
//! directory with inotify, puts each new generation in force and writes that generation to
//! `<name>.applied`; a writer that waits for it ([`ControlFile::wait_applied`]) knows that new
//! connections see its change.
//!
//! The files live in a directory the proxied environment's command can change, while the
//! writer may run as root on the host: a writer gives the directory as a descriptor it opened
//! safely ([`ControlFile::in_dir`]), and every file is opened relative to it without following
//! a symlink or blocking on a FIFO, regular files only, read up to [`MAX_FILE`] bytes.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, inotify};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::faults::Faults;
use crate::proxy::{Proxy, Setting};

/// What a proxy serves, as its control file holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Where their connections go.
    pub upstream: SocketAddr,
    /// Grows with every change.
    pub generation: u64,
    /// What the proxy does to traffic.
    pub faults: Faults,
}

/// Most bytes read of a control file or its `.applied` (a configuration is a few hundred).
pub const MAX_FILE: u64 = 1 << 20;

/// The control file of one proxy (`<dir>/<name>.json`, see the module documentation).
#[derive(Debug, Clone)]
pub struct ControlFile {
    path: PathBuf,
    /// Its directory, held open: names are resolved from it (else `path` from the working
    /// directory).
    dir: Option<Arc<OwnedFd>>,
}

impl ControlFile {
    /// The control file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> ControlFile {
        ControlFile {
            path: path.into(),
            dir: None,
        }
    }

    /// The control file `name` of the directory `dir` (at `dir_path`, shown in messages and
    /// given to the proxy): every file is opened relative to `dir`, so a directory swapped
    /// for a symlink after `dir` was opened leads nowhere.
    pub fn in_dir(dir: OwnedFd, dir_path: &Path, name: &str) -> ControlFile {
        ControlFile {
            path: dir_path.join(name),
            dir: Some(Arc::new(dir)),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where names are resolved from, and the name of the file with `suffix` appended (the
    /// whole path when there is no directory descriptor).
    fn at(&self, suffix: &str) -> (BorrowedFd<'_>, PathBuf) {
        match &self.dir {
            Some(dir) => {
                let mut name: OsString = self.path.file_name().unwrap_or_default().to_owned();
                name.push(suffix);
                (dir.as_fd(), PathBuf::from(name))
            }
            None => (rustix::fs::CWD, self.sibling(suffix)),
        }
    }

    /// `path` with `suffix` appended to its file name.
    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name: OsString = self.path.file_name().unwrap_or_default().to_owned();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    /// Opens the file with `suffix` (see [`open_regular`]).
    fn open(&self, suffix: &str, flags: OFlags) -> io::Result<File> {
        let (dir, name) = self.at(suffix);
        open_regular(dir, &name, flags).map_err(|e| {
            io::Error::new(e.kind(), format!("{}: {e}", self.sibling(suffix).display()))
        })
    }

    /// The content of the file with `suffix`, `None` when missing; at most [`MAX_FILE`] bytes.
    fn read_bytes(&self, suffix: &str) -> io::Result<Option<Vec<u8>>> {
        let file = match self.open(suffix, OFlags::RDONLY) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        file.take(MAX_FILE + 1).read_to_end(&mut out)?;
        if out.len() as u64 > MAX_FILE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "refused: {} is more than the {MAX_FILE} bytes ptest reads",
                    self.sibling(suffix).display()
                ),
            ));
        }
        Ok(Some(out))
    }

    /// The configuration, or `None` when there is no file yet.
    pub fn read(&self) -> io::Result<Option<ProxyConfig>> {
        match self.read_bytes("")? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            None => Ok(None),
        }
    }

    /// Changes the configuration under the file's lock: `change` gets the current one (or
    /// `None`) and returns the new one, which is written with the next generation and
    /// returned.
    pub fn update(
        &self,
        change: impl FnOnce(Option<ProxyConfig>) -> ProxyConfig,
    ) -> io::Result<ProxyConfig> {
        let lock = self.open(".lock", OFlags::WRONLY | OFlags::CREATE)?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        let old = self.read()?;
        let generation = old.map_or(0, |c| c.generation) + 1;
        let new = ProxyConfig {
            generation,
            ..change(old)
        };
        let text = serde_json::to_vec_pretty(&new).expect("a proxy configuration serializes");
        self.replace("", &text)?;
        Ok(new)
    }

    /// The last generation the proxy put in force, if it ever did.
    pub fn applied(&self) -> Option<u64> {
        String::from_utf8(self.read_bytes(".applied").ok()??)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits until the proxy has put `generation` (or a later one) in force. Gives up after
    /// `timeout`, or as soon as `alive` (asked every 100 ms) says the proxy is gone; returns
    /// whether it got there.
    pub async fn wait_applied(
        &self,
        generation: u64,
        timeout: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut next_check = Instant::now();
        loop {
            if self.applied().is_some_and(|g| g >= generation) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if now >= next_check {
                if !alive() {
                    return false;
                }
                next_check = now + Duration::from_millis(100);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn set_applied(&self, generation: u64) -> io::Result<()> {
        self.replace(".applied", generation.to_string().as_bytes())
    }

    /// Writes `bytes` to the file with `suffix` atomically: to a new file beside it
    /// (`O_EXCL`, no symlink followed), then renamed over it (a symlink there is replaced).
    fn replace(&self, suffix: &str, bytes: &[u8]) -> io::Result<()> {
        let (dir, name) = self.at(suffix);
        let mut tmp: OsString = name.clone().into_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let _ = rustix::fs::unlinkat(dir, &tmp, AtFlags::empty());
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = rustix::fs::openat(
            dir,
            &tmp,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        let written = File::from(fd)
            .write_all(bytes)
            .and_then(|()| rustix::fs::renameat(dir, &tmp, dir, &name).map_err(io::Error::from));
        if written.is_err() {
            let _ = rustix::fs::unlinkat(dir, &tmp, AtFlags::empty());
        }
        written
    }

    /// A channel carrying every new configuration's setting, fed by a thread watching the
    /// file's directory. The watch is in place before the file is first read, so no change
    /// is missed. Fails when the file does not exist.
    fn watch(&self) -> io::Result<(ProxyConfig, watch::Receiver<Setting>)> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC)?;
        inotify::add_watch(
            &fd,
            &dir,
            inotify::WatchFlags::CLOSE_WRITE | inotify::WatchFlags::MOVED_TO,
        )?;
        let config = self.read()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no proxy configuration at {}", self.path.display()),
            )
        })?;
        let (tx, rx) = watch::channel(Setting {
            generation: config.generation,
            faults: config.faults,
        });
        let control = self.clone();
        let name = self.path.file_name().unwrap_or_default().to_owned();
        std::thread::spawn(move || {
            let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
            let mut events = inotify::Reader::new(fd.as_fd(), &mut buf);
            loop {
                let ours = match events.next() {
                    Ok(e) => e
                        .file_name()
                        .is_some_and(|n| n.to_bytes() == name.as_encoded_bytes()),
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => {
                        tracing::error!("watching {}: {e}", control.path.display());
                        return;
                    }
                };
                if !ours {
                    continue;
                }
                match control.read() {
                    Ok(Some(c)) => {
                        tx.send_if_modified(|s| {
                            let newer = c.generation > s.generation;
                            if newer {
                                *s = Setting {
                                    generation: c.generation,
                                    faults: c.faults,
                                };
                            }
                            newer
                        });
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        });
        Ok((config, rx))
    }
}

/// Opens `name` beneath `dir` with `flags`, not following a symlink (a refusal says so) and
/// not blocking on a FIFO; anything but a regular file is refused.
fn open_regular(dir: BorrowedFd<'_>, name: &Path, flags: OFlags) -> io::Result<File> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd =
        rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o644)).map_err(|e| match e {
            Errno::LOOP => io::Error::new(
                io::ErrorKind::InvalidData,
                "refused: a symlink planted in the environment; not followed",
            ),
            Errno::NXIO => io::Error::new(
                io::ErrorKind::InvalidData,
                "refused: a FIFO or device, not a regular file",
            ),
            e => e.into(),
        })?;
    let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
    if kind != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("refused: a {kind:?}, not a regular file"),
        ));
    }
    Ok(File::from(fd))
}

/// Runs the proxy the control file at `path` describes, following every change to it, until
/// the process is killed. Fails when the file is missing or its address cannot be bound.
pub async fn serve_file(path: &Path) -> io::Result<()> {
    let control = ControlFile::new(path);
    let (config, setting) = control.watch()?;
    Proxy::new(config.listen, config.upstream)
        .serve(setting, |generation| {
            if let Err(e) = control.set_applied(generation) {
                tracing::error!("recording that generation {generation} is in force: {e}");
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    fn passing(listen: SocketAddr, upstream: SocketAddr) -> ProxyConfig {
        ProxyConfig {
            listen,
            upstream,
            generation: 0,
            faults: Faults::default(),
        }
    }

    /// Turns `down` on in `control`'s configuration.
    fn take_down(control: &ControlFile) -> ProxyConfig {
        let down = Faults {
            down: true,
            ..Faults::default()
        };
        control
            .update(|old| ProxyConfig {
                faults: down,
                ..old.unwrap()
            })
            .unwrap()
    }

    #[test]
    fn updates_bump_the_generation_and_refuse_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let control = ControlFile::new(dir.path().join("http.json"));
        assert_eq!(control.read().unwrap(), None);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let first = control
            .update(|old| {
                assert!(old.is_none());
                passing(addr, addr)
            })
            .unwrap();
        let second = take_down(&control);
        assert_eq!((first.generation, second.generation), (1, 2));
        assert_eq!(control.read().unwrap(), Some(second));
        std::fs::write(control.path(), "{").unwrap();
        assert_eq!(
            control.read().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn planted_links_and_fifos_are_refused_through_the_held_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (net, host) = (tmp.path().join("net"), tmp.path().join("host"));
        std::fs::create_dir_all(&net).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("secret"), "secret").unwrap();
        let dir =
            rustix::fs::open(&net, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let control = ControlFile::in_dir(dir, &net, "http.json");
        std::os::unix::fs::symlink(host.join("secret"), net.join("http.json")).unwrap();
        let e = control.read().unwrap_err().to_string();
        assert!(e.contains("refused: a symlink planted"), "{e}");
        std::os::unix::fs::symlink(host.join("lock"), net.join("http.json.lock")).unwrap();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(control.update(|_| passing(addr, addr)).is_err());
        assert!(!host.join("lock").exists());
        std::fs::remove_file(net.join("http.json.lock")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            net.join("http.json.applied"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert_eq!(control.applied(), None);
        // The directory swapped for a link after it was opened: the held one is written.
        std::fs::rename(&net, tmp.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&host, &net).unwrap();
        std::fs::remove_file(tmp.path().join("moved/http.json")).unwrap();
        control.update(|_| passing(addr, addr)).unwrap();
        assert!(tmp.path().join("moved/http.json").is_file());
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_served_file_follows_changes_and_acknowledges_them() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let control = ControlFile::new(dir.path().join("db.json"));
        control
            .update(|_| passing(listen, upstream.local_addr().unwrap()))
            .unwrap();
        let path = control.path().to_owned();
        tokio::spawn(async move { serve_file(&path).await.unwrap() });
        let wait = |generation| control.wait_applied(generation, Duration::from_secs(10), || true);
        assert!(wait(1).await);
        let mut client = TcpStream::connect(listen).await.unwrap();
        let (mut server, _) = upstream.accept().await.unwrap();
        client.write_all(b"hi").await.unwrap();
        let mut buf = [0; 2];
        server.read_exact(&mut buf).await.unwrap();
        let down = take_down(&control);
        assert!(wait(down.generation).await);
        assert_eq!(
            TcpStream::connect(listen).await.unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
    }
}
