//! Driving a proxy that runs in another process (another namespace, even): through a small
//! JSON file, the [`ControlFile`].
//!
//! `<name>.json` holds the proxy's [`ProxyConfig`]: where it listens, where it forwards, the
//! faults and a generation that grows with every change. Writers change it under a lock and
//! replace it atomically (write, then rename). The proxy ([`serve_file`]) watches the
//! directory with inotify, puts each new generation in force and writes that generation to
//! `<name>.applied`; a writer that waits for it ([`ControlFile::wait_applied`]) knows that new
//! connections see its change.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::inotify;
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

/// The control file of one proxy (`<dir>/<name>.json`, see the module documentation).
#[derive(Debug, Clone)]
pub struct ControlFile {
    path: PathBuf,
}

impl ControlFile {
    /// The control file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> ControlFile {
        ControlFile { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` with `suffix` appended to its file name.
    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name: OsString = self.path.file_name().unwrap_or_default().to_owned();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    /// The configuration, or `None` when there is no file yet.
    pub fn read(&self) -> io::Result<Option<ProxyConfig>> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Changes the configuration under the file's lock: `change` gets the current one (or
    /// `None`) and returns the new one, which is written with the next generation and
    /// returned.
    pub fn update(
        &self,
        change: impl FnOnce(Option<ProxyConfig>) -> ProxyConfig,
    ) -> io::Result<ProxyConfig> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.sibling(".lock"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        let old = self.read()?;
        let generation = old.map_or(0, |c| c.generation) + 1;
        let new = ProxyConfig {
            generation,
            ..change(old)
        };
        let text = serde_json::to_vec_pretty(&new).expect("a proxy configuration serializes");
        replace(&self.path, &text)?;
        Ok(new)
    }

    /// The last generation the proxy put in force, if it ever did.
    pub fn applied(&self) -> Option<u64> {
        fs::read_to_string(self.sibling(".applied"))
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
        replace(&self.sibling(".applied"), generation.to_string().as_bytes())
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

/// Writes `bytes` to `path` atomically: to a temporary file beside it, then renamed over it.
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name: OsString = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    fs::rename(&tmp, path)
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
        fs::write(control.path(), "{").unwrap();
        assert_eq!(
            control.read().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
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
