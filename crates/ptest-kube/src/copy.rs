//! Copying between this host and an environment's pod, as `kubectl cp` does: tar streams
//! through the exec subresource.
//!
//! In: a host directory becomes a directory of the pod, a tar written to the stdin of an exec
//! that unpacks it ([`UNPACK`]). The archive is built here ([`write_tar`]: files, directories
//! and symbolic links, as links, with their modes and times) by a blocking task and streamed
//! in chunks, never held whole in memory. In the pod, [`UNPACK`] empties the destination (it
//! may hold an earlier attempt's copy), then `tar -x -o` unpacks (`-o`: files belong to
//! whoever the pod runs as, not to this host's uids). The archive ends with tar's
//! end-of-archive blocks, padded to a whole 10 KiB record as tar itself writes one, and `tar
//! -x` ends there by itself: stdin is kept open until the exec's Status arrives, because an
//! API server that speaks only `v4.channel.k8s.io` has no way to close stdin but closing the
//! whole stream, which would lose the Status.
//!
//! Out: one file or directory of the pod comes to a host directory, `tar -c` run by an exec
//! ([`PACK`]) and its stdout unpacked here as it arrives ([`unpack_one`]), by rules that keep
//! everything within the copy whatever the pod sends: only entries beneath the one name asked
//! for, only regular files, directories and symbolic links whose target is relative and
//! descends (no `..`, never the top entry itself), links made last so that nothing is
//! written through one, and at most [`COPY_OUT_MAX`] bytes of archive. The copy is unpacked
//! into a fresh directory beside its destination and moved into place only once the pod's
//! `tar` has ended with exit code 0.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{AttachParams, AttachedProcess};
use ptest_core::{Error, IsolationLevel, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::connect::Cluster;
use crate::exec::{exec_error, exit_code};
use crate::pod::{CONTAINER, POD_ROOT};

/// Runs as `sh -c UNPACK sh DIR`: makes `DIR` an empty directory (what it held is removed,
/// dot files included), then unpacks the tar on stdin there.
pub const UNPACK: &str =
    r#"mkdir -p "$1" && cd "$1" && rm -rf ./* ./.[!.]* ./..?* && exec tar -x -o -f -"#;

/// The size of a tar record: archives are padded to a whole one.
const RECORD: u64 = 20 * 512;

/// The size of the chunks the archive is sent in.
const CHUNK: usize = 64 << 10;

/// Where `to` (relative to the environment's root) is in the pod, or why it is refused.
pub fn pod_path(to: &Path) -> Result<String> {
    let clean = to.components().all(|c| matches!(c, Component::Normal(_)));
    if !clean || to.as_os_str().is_empty() {
        return Err(Error::Usage(format!(
            "{} is not a directory beneath the environment's root",
            to.display()
        )));
    }
    Ok(format!("{POD_ROOT}/{}", to.display()))
}

/// The argv that unpacks a tar on stdin into `dir` of the pod.
pub fn unpack_argv(dir: &str) -> Vec<String> {
    ["sh", "-c", UNPACK, "sh", dir]
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Writes the tree under `from` to `out` as a tar archive (entry names relative to `from`,
/// without an entry for `from` itself, whose owner and times are the pod's), padded to a
/// whole record.
pub fn write_tar<W: Write>(from: &Path, out: W) -> std::io::Result<W> {
    let mut entries: Vec<_> = std::fs::read_dir(from)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    let mut builder = tar::Builder::new(Counting {
        inner: out,
        count: 0,
    });
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    for entry in entries {
        let name = entry.file_name();
        if entry.file_type()?.is_dir() {
            builder.append_dir_all(&name, entry.path())?;
        } else {
            builder.append_path_with_name(entry.path(), &name)?;
        }
    }
    let mut counted = builder.into_inner()?;
    let pad = (RECORD - counted.count % RECORD) % RECORD;
    counted.write_all(&vec![0u8; pad as usize])?;
    counted.flush()?;
    Ok(counted.inner)
}

/// A writer that counts what goes through it.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A writer for a blocking task that hands what it is given, in chunks, to an async reader.
struct Chunks {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Chunks {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the exec ended"))
    }
}

impl Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn failed(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    failed_to("copy a directory into the pod", source)
}

fn failed_to(
    action: &'static str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::Engine {
        level: IsolationLevel::Kubernetes,
        action,
        source: source.into(),
    }
}

/// Which of the exec's streams carries the archive.
enum Stream {
    Stdin,
    Stdout,
}

/// Runs `argv` in `pod`'s container, the archive on `stream` and stderr attached.
async fn attach(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    argv: Vec<String>,
    stream: Stream,
) -> Result<AttachedProcess> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let stdin = matches!(stream, Stream::Stdin);
    let params = AttachParams::default()
        .container(CONTAINER)
        .stdin(stdin)
        .stdout(!stdin)
        .stderr(true);
    api.exec(pod, argv, &params)
        .await
        .map_err(|e| exec_error(e, namespace, pod, cluster))
}

/// Makes `to` (relative to the root) in `pod` a copy of the host directory `from`.
pub(crate) async fn copy_in(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    from: &Path,
    to: &Path,
) -> Result<()> {
    let dir = pod_path(to)?;
    if !from.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a directory on this host",
            from.display()
        )));
    }
    let mut attached = attach(cluster, namespace, pod, unpack_argv(&dir), Stream::Stdin).await?;
    let mut stdin = attached.stdin().expect("the exec was asked for stdin");
    let stderr = attached.stderr();
    let status = attached.take_status();

    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let source = from.to_owned();
    let writer = tokio::task::spawn_blocking(move || {
        let chunks = Chunks {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        write_tar(&source, chunks).map(drop)
    });
    // Sends the archive; hands stdin back to be kept open until the Status is in.
    let sending = async move {
        while let Some(chunk) = rx.recv().await {
            stdin
                .write_all(&chunk)
                .await
                .map_err(|e| failed(format!("{pod}: sending the archive: {e}")))?;
        }
        stdin
            .flush()
            .await
            .map_err(|e| failed(format!("{pod}: sending the archive: {e}")))?;
        match writer.await {
            Ok(Ok(())) => Ok(stdin),
            Ok(Err(e)) => Err(failed(format!("archiving {}: {e}", from.display()))),
            Err(e) => Err(failed(format!("archiving {}: {e}", from.display()))),
        }
    };
    let reading = async move {
        let mut said = String::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_string(&mut said).await;
        }
        said
    };
    // A failed archive drops stdin, which ends the exec (tar sees the stream end).
    let (sent, said) = tokio::join!(sending, reading);
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    let _ = attached.join().await;
    let code = status.map(|s| exit_code(&s)).transpose()?;
    match (code, sent) {
        (Some(0), sent) => sent.map(drop),
        (Some(code), sent) => Err(failed(format!(
            "{pod}: unpacking into {dir} ended with exit code {code}: {}{}",
            said.trim(),
            sent.err().map(|e| format!(" ({e})")).unwrap_or_default()
        ))),
        (None, Err(e)) => Err(e),
        (None, Ok(_)) => Err(failed(format!(
            "{pod}: the exec stream ended without the unpacking's status"
        ))),
    }
}

/// Runs as `sh -c PACK sh DIR NAME`: writes a tar of `NAME` in `DIR` (not following links) to
/// stdout, or, where there is no such file, says so and exits with [`NO_SUCH_FILE`].
pub const PACK: &str = r#"[ -e "$1/$2" ] || [ -L "$1/$2" ] || { echo "$1/$2: no such file or directory" >&2; exit 66; }; exec tar -c -f - -C "$1" -- "$2""#;

/// [`PACK`]'s exit code when there is nothing to copy (`EX_NOINPUT`).
pub const NO_SUCH_FILE: i32 = 66;

/// The most archive ptest reads from a pod's `tar -c`: 64 MiB, file data and tar's headers
/// together. A bigger copy is refused (a JUnit report is far smaller).
pub const COPY_OUT_MAX: u64 = 64 << 20;

/// The argv that writes a tar of `name` in the pod's directory `dir` to stdout.
pub fn pack_argv(dir: &str, name: &OsStr) -> Vec<String> {
    let mut argv: Vec<String> = ["sh", "-c", PACK, "sh", dir]
        .into_iter()
        .map(str::to_owned)
        .collect();
    argv.push(name.to_string_lossy().into_owned());
    argv
}

/// The pod's directory holding `from` (relative to the environment's root) and its name, or
/// why it is refused.
pub fn pod_parent(from: &Path) -> Result<(String, &OsStr)> {
    let clean = from.components().all(|c| matches!(c, Component::Normal(_)));
    match (clean, from.file_name()) {
        (true, Some(name)) if name.to_str().is_some() => {
            let parent = from.parent().unwrap_or(Path::new(""));
            let dir = Path::new(POD_ROOT).join(parent);
            Ok((dir.display().to_string(), name))
        }
        _ => Err(Error::Usage(format!(
            "{} is not a file beneath the environment's root",
            from.display()
        ))),
    }
}

/// Why an archive from a pod was not unpacked.
#[derive(Debug)]
pub enum UnpackError {
    /// An entry the rules refuse (see the [module](self)).
    Refused {
        /// The entry's path in the archive.
        path: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// The archive held nothing under the name asked for.
    Empty(String),
    /// Reading the archive or writing on this host failed.
    Io(std::io::Error),
}

impl std::fmt::Display for UnpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnpackError::Refused { path, why } => write!(f, "refused entry {path:?}: {why}"),
            UnpackError::Empty(name) => write!(f, "the archive held no {name:?}"),
            UnpackError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UnpackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UnpackError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for UnpackError {
    fn from(e: std::io::Error) -> Self {
        UnpackError::Io(e)
    }
}

/// A copy unpacked beside its destination, not yet in place; removed when dropped.
#[derive(Debug)]
pub struct Staged {
    dir: PathBuf,
    name: std::ffi::OsString,
}

impl Staged {
    /// Moves the copy to `<to>/<name>`, replacing what was there (a link there is replaced,
    /// not followed).
    pub fn commit(self, to: &Path) -> std::io::Result<PathBuf> {
        let target = to.join(&self.name);
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&target)?,
            Ok(_) => std::fs::remove_file(&target)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::rename(self.dir.join(&self.name), &target)?;
        Ok(target)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory in `to` for a copy to be unpacked in.
fn staging_dir(to: &Path) -> std::io::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = to.join(format!(".ptest-copy-out.{}.{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}

/// Whether a symbolic link at `entry` with `target` stays within the copy: relative, with no
/// `..`, and not the top entry (whose directory is the destination, outside the copy). Every
/// link then points beneath its own directory, so following any chain of them descends.
fn link_stays_within(entry: &Path, target: &Path) -> bool {
    entry.components().count() > 1
        && !target.as_os_str().is_empty()
        && target
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Unpacks the tar `archive` holding `name` (a file or directory and what is beneath it)
/// into a fresh directory in `to`, by the rules of the [module](self); the rest of `archive`
/// is read to its end. Nothing is written outside that directory.
pub fn unpack_one<R: Read>(archive: R, name: &OsStr, to: &Path) -> Result<Staged, UnpackError> {
    let staged = Staged {
        dir: staging_dir(to)?,
        name: name.to_owned(),
    };
    let mut archive = tar::Archive::new(archive);
    archive.set_preserve_permissions(false);
    archive.set_preserve_ownerships(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);
    let mut links = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let refused = |why| UnpackError::Refused {
            path: path.display().to_string(),
            why,
        };
        let mut parts = path.components();
        if parts.next() != Some(Component::Normal(name)) {
            return Err(refused("not beneath the name asked for"));
        }
        if !parts.all(|c| matches!(c, Component::Normal(_))) {
            return Err(refused("not beneath the name asked for"));
        }
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Regular | T::Continuous | T::Directory => {
                entry.unpack(staged.dir.join(&path))?;
            }
            T::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| refused("a symbolic link without a target"))?
                    .into_owned();
                if !link_stays_within(&path, &target) {
                    return Err(refused(
                        "a symbolic link that may point outside the copy (absolute, with \
                         `..`, or the top entry)",
                    ));
                }
                links.push((path, target));
            }
            T::XGlobalHeader => {}
            _ => return Err(refused("not a regular file, directory or symbolic link")),
        }
    }
    // Made last, so that no entry above was written through one.
    for (path, target) in links {
        std::os::unix::fs::symlink(&target, staged.dir.join(&path))?;
    }
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())?;
    if std::fs::symlink_metadata(staged.dir.join(name)).is_err() {
        return Err(UnpackError::Empty(name.to_string_lossy().into_owned()));
    }
    Ok(staged)
}

/// A reader, for a blocking task, of the chunks an async task sends.
struct Received {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Received {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => (self.chunk, self.at) = (chunk, 0),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Copies `from` (relative to the root) of `pod` into the host directory `to`, under its own
/// name (see the [module](self)).
pub(crate) async fn copy_out(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    from: &Path,
    to: &Path,
) -> Result<()> {
    const ACTION: &str = "copy a file out of the pod";
    let (dir, name) = pod_parent(from)?;
    if !to.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a directory on this host",
            to.display()
        )));
    }
    let shown = format!("{dir}/{}", name.to_string_lossy());
    let mut attached = attach(
        cluster,
        namespace,
        pod,
        pack_argv(&dir, name),
        Stream::Stdout,
    )
    .await
    // Missing stays for the file: a pod that is gone is another failure.
    .map_err(|e| match e {
        Error::Missing(gone) => failed_to(ACTION, gone),
        e => e,
    })?;
    let mut stdout = attached.stdout().expect("the exec was asked for stdout");
    let stderr = attached.stderr();
    let status = attached.take_status();

    let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
    let (name_owned, dest) = (name.to_owned(), to.to_owned());
    let unpacking = tokio::task::spawn_blocking(move || {
        let received = Received {
            rx,
            chunk: Vec::new(),
            at: 0,
        };
        unpack_one(received, &name_owned, &dest)
    });
    let attached = &attached;
    // Ok(whether the archive was read to its end); Err: more than the bound.
    let receiving = async move {
        let mut total = 0u64;
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let n = match stdout.read(&mut chunk).await {
                Ok(0) | Err(_) => return Ok(true),
                Ok(n) => n,
            };
            total += n as u64;
            if total > COPY_OUT_MAX {
                attached.abort();
                return Err(total);
            }
            chunk.truncate(n);
            if tx.send(chunk).await.is_err() {
                // The unpacking refused the archive: the rest is not wanted.
                attached.abort();
                return Ok(false);
            }
        }
    };
    let reading = async move {
        let mut said = String::new();
        if let Some(stderr) = stderr {
            let _ = stderr.take(64 << 10).read_to_string(&mut said).await;
        }
        said
    };
    let (received, said) = tokio::join!(receiving, reading);
    let unpacked = unpacking
        .await
        .unwrap_or_else(|e| Err(UnpackError::Io(std::io::Error::other(e))));
    if received.is_err() {
        return Err(failed_to(
            ACTION,
            format!(
                "{pod}: the archive of {shown} is bigger than {} MiB, the most ptest copies \
                 out of a pod",
                COPY_OUT_MAX >> 20
            ),
        ));
    }
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    let code = match status.map(|s| exit_code(&s)).transpose() {
        Ok(code) => code,
        Err(_) if unpacked.is_err() => None,
        Err(e) => return Err(e),
    };
    let said = said.trim();
    match (code, unpacked) {
        (Some(NO_SUCH_FILE), _) => Err(Error::Missing(format!(
            "{pod}: no such file or directory: {shown}"
        ))),
        (_, Err(e @ UnpackError::Refused { .. })) => Err(failed_to(
            ACTION,
            format!("{pod}: the archive of {shown} was refused, nothing was copied: {e}"),
        )),
        (Some(0), Ok(staged)) => {
            let to = to.to_owned();
            tokio::task::spawn_blocking(move || staged.commit(&to))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                .map(drop)
                .map_err(|e| failed_to(ACTION, format!("placing the copy of {shown}: {e}")))
        }
        (Some(0), Err(e)) => Err(failed_to(
            ACTION,
            format!("{pod}: unpacking the archive of {shown}: {e}"),
        )),
        (Some(code), _) => Err(failed_to(
            ACTION,
            format!("{pod}: archiving {shown} ended with exit code {code}: {said}"),
        )),
        (None, Err(e)) => Err(failed_to(
            ACTION,
            format!("{pod}: unpacking the archive of {shown}: {e}"),
        )),
        (None, Ok(_)) => Err(failed_to(
            ACTION,
            format!("{pod}: the exec stream ended without the archiving's status"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_destination_stays_beneath_the_root() {
        assert_eq!(
            pod_path(Path::new("workspace")).unwrap(),
            "/ptest/workspace"
        );
        assert!(pod_path(Path::new("../etc")).is_err());
        assert!(pod_path(Path::new("/etc")).is_err());
        assert!(pod_path(Path::new("")).is_err());
    }

    /// `dir` holds `file` with `text`, and `link`, a symbolic link to it.
    fn assert_file_and_link(dir: &Path, file: &str, text: &str, link: &str) {
        assert_eq!(std::fs::read_to_string(dir.join(file)).unwrap(), text);
        assert_eq!(std::fs::read_link(dir.join(link)).unwrap(), Path::new(file));
    }

    /// Unpacks what [`write_tar`] writes with this host's `tar`, as [`UNPACK`] does in a pod:
    /// the same files, a link kept as a link, what the directory held before gone.
    #[test]
    fn unpack_replaces_the_directory_with_the_archived_tree() {
        let from = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(from.path().join("pkg/sub")).unwrap();
        std::fs::write(from.path().join("pkg/sub/mod.py"), "x = 1\n").unwrap();
        std::fs::write(from.path().join(".hidden"), "h").unwrap();
        std::os::unix::fs::symlink("pkg/sub/mod.py", from.path().join("link")).unwrap();
        let archive = write_tar(from.path(), Vec::new()).unwrap();
        assert_eq!(archive.len() as u64 % RECORD, 0);

        let to = tempfile::tempdir().unwrap();
        let dir = to.path().join("workspace");
        std::fs::create_dir_all(dir.join("old")).unwrap();
        std::fs::write(dir.join(".stale"), "s").unwrap();
        std::fs::write(dir.join("..two"), "s").unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", UNPACK, "sh"])
            .arg(&dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Written with the pipe left open: tar must end at the archive's end by itself.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&archive).unwrap();
        assert!(child.wait().unwrap().success());
        drop(stdin);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".hidden", "link", "pkg"]);
        assert_file_and_link(&dir, "pkg/sub/mod.py", "x = 1\n", "link");
    }

    /// Runs [`PACK`] with this host's `sh` and `tar`, as in a pod.
    fn pack(dir: &Path, name: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .args(["-c", PACK, "sh"])
            .arg(dir)
            .arg(name)
            .output()
            .unwrap()
    }

    /// What [`PACK`] writes with this host's `tar`, unpacked by [`unpack_one`] and placed: the
    /// same tree, a link kept as a link, a name that looks like an option taken as a name.
    #[test]
    fn pack_then_unpack_one_gives_the_same_tree() {
        let pod = tempfile::tempdir().unwrap();
        let reports = pod.path().join("-reports");
        std::fs::create_dir_all(reports.join("sub")).unwrap();
        std::fs::write(reports.join("sub/a.xml"), "<testsuite/>\n").unwrap();
        std::os::unix::fs::symlink("sub/a.xml", reports.join("latest.xml")).unwrap();
        let out = pack(pod.path(), "-reports");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let to = tempfile::tempdir().unwrap();
        let staged = unpack_one(&out.stdout[..], OsStr::new("-reports"), to.path()).unwrap();
        let placed = staged.commit(to.path()).unwrap();
        assert_eq!(placed, to.path().join("-reports"));
        let names: Vec<_> = std::fs::read_dir(to.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["-reports"], "the staging directory is gone");
        assert_file_and_link(&placed, "sub/a.xml", "<testsuite/>\n", "latest.xml");
    }

    #[test]
    fn pack_says_when_there_is_no_such_file() {
        let pod = tempfile::tempdir().unwrap();
        let out = pack(pod.path(), "junit.xml");
        assert_eq!(out.status.code(), Some(NO_SUCH_FILE));
        assert!(out.stdout.is_empty());
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("junit.xml: no such file or directory"),
            "{said}"
        );
    }

    #[test]
    fn only_a_relative_descending_link_below_the_top_stays_within() {
        let within =
            |entry: &str, target: &str| link_stays_within(Path::new(entry), Path::new(target));
        assert!(within("r/l", "sub/a.xml"));
        assert!(within("r/l", "./a.xml"));
        assert!(
            !within("r", "a.xml"),
            "the top entry's directory is the destination"
        );
        assert!(!within("r/l", "../a.xml"));
        assert!(!within("r/l", "sub/../../a"));
        assert!(!within("r/l", "/etc/passwd"));
        assert!(!within("r/l", ""));
    }
}
