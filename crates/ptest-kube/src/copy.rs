//! Copying a host directory into an environment's pod, as `kubectl cp` does: a tar stream
//! written to the stdin of an exec that unpacks it ([`UNPACK`]).
//!
//! The archive is built here ([`write_tar`]: files, directories and symbolic links, as links,
//! with their modes and times) by a blocking task and streamed in chunks, never held whole in
//! memory. In the pod, [`UNPACK`] empties the destination (it may hold an earlier attempt's
//! copy), then `tar -x -o` unpacks (`-o`: files belong to whoever the pod runs as, not to this
//! host's uids). The archive ends with tar's end-of-archive blocks, padded to a whole 10 KiB
//! record as tar itself writes one, and `tar -x` ends there by itself: stdin is kept open until
//! the exec's Status arrives, because an API server that speaks only `v4.channel.k8s.io` has
//! no way to close stdin but closing the whole stream, which would lose the Status.

use std::io::Write;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::AttachParams;
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
    Error::Engine {
        level: IsolationLevel::Kubernetes,
        action: "copy a directory into the pod",
        source: source.into(),
    }
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
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let params = AttachParams::default()
        .container(CONTAINER)
        .stdin(true)
        .stdout(false)
        .stderr(true);
    let mut attached = api
        .exec(pod, unpack_argv(&dir), &params)
        .await
        .map_err(|e| exec_error(e, namespace, pod, cluster))?;
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
        assert_eq!(
            std::fs::read_to_string(dir.join("pkg/sub/mod.py")).unwrap(),
            "x = 1\n"
        );
        assert_eq!(
            std::fs::read_link(dir.join("link")).unwrap(),
            Path::new("pkg/sub/mod.py")
        );
    }
}
