//! Copying a file out of a pod (`copy_out`) end to end through kube's own client and websocket,
//! against a local server that plays the API server's exec (`v4.channel.k8s.io`): the exec's
//! command, the tar on its stdout unpacked on this host, and archives that try to reach
//! outside the copy refused with nothing written there.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use ptest_core::Engine;
use serde_json::json;
use support::websocket::{V4, accept, active_env as env, engine};

/// Serves one exec: answers the upgrade, sends `stdout` in frames of 32 KiB, then `stderr`,
/// then `status` (when given), and closes. What it sends after ptest has gone is dropped.
/// Returns the request's target (path and query).
async fn serve_pack(
    listener: tokio::net::TcpListener,
    stdout: Vec<u8>,
    stderr: &'static [u8],
    status: Option<serde_json::Value>,
) -> String {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let (target, mut ws) = accept(&listener, V4).await;
    let mut frames: Vec<(u8, Vec<u8>)> = stdout.chunks(32 << 10).map(|c| (1, c.to_vec())).collect();
    if !stderr.is_empty() {
        frames.push((2, stderr.to_vec()));
    }
    frames.extend(status.map(|s| (3, serde_json::to_vec(&s).unwrap())));
    for (channel, data) in frames {
        let mut frame = vec![channel];
        frame.extend_from_slice(&data);
        if ws.send(Message::binary(frame)).await.is_err() {
            return target;
        }
    }
    let _ = ws.close(None).await;
    target
}

fn success() -> serde_json::Value {
    json!({"metadata": {}, "status": "Success"})
}

fn exit_status(code: i32) -> serde_json::Value {
    json!({
        "metadata": {}, "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
    })
}

/// One raw tar entry, its name written as given (no checks: a pod may send anything).
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, data: &[u8], link: &str) {
    let mut header = tar::Header::new_ustar();
    {
        let bytes = header.as_mut_bytes();
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        bytes[157..157 + link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// `entries` ended as `tar -c` ends an archive, padded to a whole 10 KiB record.
fn archive(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data, link) in entries {
        raw_entry(&mut out, name, *kind, data, link);
    }
    out.resize(out.len() + 1024, 0);
    out.resize(out.len().div_ceil(10240) * 10240, 0);
    out
}

/// A kubernetes engine whose API server is the local one at `listener`, its active
/// environment `web`, and a host directory to copy to.
struct Local {
    listener: tokio::net::TcpListener,
    engine: ptest_kube::KubernetesEngine,
    env: ptest_core::Environment,
    to: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Local {
    async fn new() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let home = tempfile::tempdir().unwrap();
        Local {
            engine: engine(&listener, home.path()),
            env: env(home.path()),
            listener,
            to: tempfile::tempdir().unwrap(),
            home,
        }
    }

    /// Copies `from` out to `to` (the directory to copy to, when `None`) while the local
    /// server answers with `stdout`, `stderr` and `status`.
    async fn copy_out(
        self,
        from: &str,
        to: Option<&Path>,
        stdout: Vec<u8>,
        stderr: &'static [u8],
        status: serde_json::Value,
    ) -> Copied {
        let server = tokio::spawn(serve_pack(self.listener, stdout, stderr, Some(status)));
        let to = to.unwrap_or(self.to.path());
        let result = self.engine.copy_out(&self.env, Path::new(from), to).await;
        Copied {
            result,
            target: server.await.unwrap(),
            to: self.to,
        }
    }
}

/// What [`Local::copy_out`] gave.
struct Copied {
    /// What `copy_out` returned.
    result: ptest_core::Result<()>,
    /// The exec request's target (path and query).
    target: String,
    /// The directory to copy to, kept until this goes.
    to: tempfile::TempDir,
}

impl Copied {
    /// The error, as text.
    fn refused(&self) -> String {
        self.result.as_ref().unwrap_err().to_string()
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

const REPORT: &[u8] = b"<testsuite><testcase classname=\"t\" name=\"a\"/></testsuite>\n";

#[tokio::test]
async fn copy_out_runs_tar_c_of_the_name_in_its_directory_and_unpacks_its_stdout_here() {
    let local = Local::new().await;
    // An earlier copy is replaced; what else the directory holds is left alone.
    std::fs::write(local.to.path().join("junit.xml"), "old").unwrap();
    std::fs::write(local.to.path().join("other"), "kept").unwrap();
    let tar = archive(&[("junit.xml", tar::EntryType::Regular, REPORT, "")]);
    let copied = local
        .copy_out("workspace/reports/junit.xml", None, tar, b"", success())
        .await;
    copied.result.unwrap();
    let (target, to) = (copied.target, copied.to);
    assert!(
        target.starts_with("/api/v1/namespaces/ptest-ci/pods/ptest-web-0a1b2c3d4e5f/exec?"),
        "{target}"
    );
    assert_eq!(support::query_values(&target, "container"), ["env"]);
    assert_eq!(support::query_values(&target, "stdout"), ["true"]);
    assert!(
        support::query_values(&target, "stdin")
            .iter()
            .all(|v| v == "false")
    );
    assert_eq!(
        support::query_values(&target, "command"),
        [
            "sh",
            "-c",
            ptest_kube::copy::PACK,
            "sh",
            "/ptest/workspace/reports",
            "junit.xml"
        ]
    );
    assert!(ptest_kube::copy::PACK.contains(r#"exec tar -c -f - -C "$1" -- "$2""#));
    assert_eq!(std::fs::read(to.path().join("junit.xml")).unwrap(), REPORT);
    assert_eq!(names(to.path()), ["junit.xml", "other"]);
}

#[tokio::test]
async fn copy_out_of_a_directory_keeps_its_tree_and_links_within_it() {
    let local = Local::new().await;
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    use tar::EntryType as T;
    let tar = archive(&[
        ("reports/", T::Directory, b"", ""),
        ("reports/sub/", T::Directory, b"", ""),
        ("reports/sub/a.xml", T::Regular, REPORT, ""),
        ("reports/big.bin", T::Regular, &big, ""),
        ("reports/latest.xml", T::Symlink, b"", "sub/a.xml"),
    ]);
    let copied = local
        .copy_out("workspace/reports", None, tar, b"", success())
        .await;
    copied.result.unwrap();
    let to = copied.to;
    let reports = to.path().join("reports");
    assert_eq!(names(to.path()), ["reports"]);
    assert_eq!(names(&reports), ["big.bin", "latest.xml", "sub"]);
    assert_eq!(std::fs::read(reports.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(reports.join("latest.xml")).unwrap(), REPORT);
    assert_eq!(
        std::fs::read_link(reports.join("latest.xml")).unwrap(),
        Path::new("sub/a.xml")
    );
}

#[tokio::test]
async fn an_archive_reaching_outside_the_copy_is_refused_and_nothing_is_written_outside() {
    use tar::EntryType as T;
    let cases: [(&str, Vec<u8>); 6] = [
        (
            "dot-dot",
            archive(&[
                ("junit.xml", T::Regular, REPORT, ""),
                ("../evil", T::Regular, b"evil", ""),
            ]),
        ),
        (
            "dot-dot beneath",
            archive(&[("junit.xml/../../evil", T::Regular, b"evil", "")]),
        ),
        (
            "absolute",
            archive(&[("/tmp/evil", T::Regular, b"evil", "")]),
        ),
        (
            "another name",
            archive(&[("evil", T::Regular, b"evil", "")]),
        ),
        (
            "the file a link out",
            archive(&[("junit.xml", T::Symlink, b"", "/etc/passwd")]),
        ),
        (
            "a link out, then through it",
            archive(&[
                ("junit.xml/", T::Directory, b"", ""),
                ("junit.xml/up", T::Symlink, b"", "../.."),
                ("junit.xml/up/evil", T::Regular, b"evil", ""),
            ]),
        ),
    ];
    for (case, tar) in cases {
        let local = Local::new().await;
        // The destination is a directory of its own, so what lands beside it shows.
        let to = local.to.path().join("a").join("b");
        std::fs::create_dir_all(&to).unwrap();
        let outer = local.to.path().to_owned();
        let copied = local
            .copy_out("workspace/junit.xml", Some(&to), tar, b"", success())
            .await;
        let e = copied.refused();
        assert!(e.contains("refused"), "{case}: {e}");
        assert!(e.contains("nothing was copied"), "{case}: {e}");
        assert!(names(&to).is_empty(), "{case}: {:?}", names(&to));
        assert_eq!(names(&outer), ["a"], "{case}");
        assert_eq!(names(&outer.join("a")), ["b"], "{case}");
        assert!(!Path::new("/tmp/evil").exists(), "{case}");
    }
}

#[tokio::test]
async fn a_pod_without_the_file_says_so_clearly() {
    let local = Local::new().await;
    let to = local.to.path().to_owned();
    // What PACK says and exits with when there is nothing there.
    let said = b"/ptest/workspace/junit.xml: no such file or directory\n";
    let status = exit_status(ptest_kube::copy::NO_SUCH_FILE);
    let copied = local
        .copy_out("workspace/junit.xml", None, Vec::new(), said, status)
        .await;
    let e = copied.result.unwrap_err();
    assert!(matches!(e, ptest_core::Error::Missing(_)), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("no such file or directory"), "{e}");
    assert!(e.contains("/ptest/workspace/junit.xml"), "{e}");
    assert!(names(&to).is_empty());
}

#[tokio::test]
async fn a_failed_tar_in_the_pod_places_nothing() {
    let local = Local::new().await;
    let to = local.to.path().to_owned();
    let tar = archive(&[("junit.xml", tar::EntryType::Regular, REPORT, "")]);
    let said = b"tar: junit.xml: file changed as we read it\n";
    let copied = local
        .copy_out("workspace/junit.xml", None, tar, said, exit_status(1))
        .await;
    let e = copied.refused();
    assert!(e.contains("exit code 1"), "{e}");
    assert!(e.contains("file changed as we read it"), "{e}");
    assert!(names(&to).is_empty());
}

#[tokio::test]
async fn an_archive_bigger_than_the_bound_is_refused() {
    let local = Local::new().await;
    let to = local.to.path().to_owned();
    let huge = vec![0x41u8; (ptest_kube::copy::COPY_OUT_MAX + (1 << 20)) as usize];
    let tar = archive(&[("junit.xml", tar::EntryType::Regular, &huge, "")]);
    let copied = local
        .copy_out("workspace/junit.xml", None, tar, b"", success())
        .await;
    let e = copied.refused();
    assert!(e.contains("bigger than 64 MiB"), "{e}");
    assert!(names(&to).is_empty());
}

#[tokio::test]
async fn a_source_outside_the_root_is_refused_before_any_request() {
    let Local {
        engine, env, home, ..
    } = Local::new().await;
    for from in ["../etc/passwd", "/etc/passwd", ""] {
        let e = engine
            .copy_out(&env, Path::new(from), home.path())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ptest_core::ErrorKind::Usage, "{from}");
    }
}

#[tokio::test]
async fn a_pod_that_is_gone_is_not_taken_for_a_missing_file() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let local = Local::new().await;
    let answering = async {
        let (mut stream, _) = local.listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let gone = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        stream.write_all(gone.as_bytes()).await.unwrap();
    };
    let copying = local.engine.copy_out(
        &local.env,
        Path::new("workspace/junit.xml"),
        local.to.path(),
    );
    let ((), copied) = tokio::join!(answering, copying);
    let e = copied.unwrap_err();
    assert!(!matches!(e, ptest_core::Error::Missing(_)), "{e:?}");
    assert!(e.to_string().contains("is gone"), "{e}");
}
