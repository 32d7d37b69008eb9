//! An exec end to end through kube's own client and websocket, against a local server that
//! speaks the API server's exec protocol (`v4.channel.k8s.io`: one byte of channel, then the
//! data; 1 stdout, 2 stderr, 3 the Status), as recorded from a kubelet: the framing ptest reads
//! and the exit status it takes from the status channel.

#![allow(clippy::unwrap_used)]

mod support;

use ptest_core::{Engine, ExecRequest, ProcessInfo};
use serde_json::json;
use support::websocket::{V4, accept, active_env as env, engine, send};

/// Serves one exec: answers the upgrade, sends `frames` (channel, bytes) and closes. Returns
/// the request's target (path and query) once done.
async fn serve_one(listener: tokio::net::TcpListener, frames: Vec<(u8, Vec<u8>)>) -> String {
    let (target, mut ws) = accept(&listener, V4).await;
    for (channel, data) in frames {
        send(&mut ws, channel, &data).await;
    }
    ws.close(None).await.unwrap();
    target
}

#[tokio::test]
async fn stdout_and_stderr_stay_apart_and_the_exit_code_comes_from_the_status_channel() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let engine = engine(&listener, home.path());
    let env = env(home.path());
    // What the kubelet sends for `sh -c 'echo out; echo err >&2; echo more; exit 3'`.
    let status = json!({
        "metadata": {}, "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command [sh -c ...], exit code 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}
    });
    let server = tokio::spawn(serve_one(
        listener,
        vec![
            (1, b"out\n".to_vec()),
            (2, b"err\n".to_vec()),
            (1, b"more\n".to_vec()),
            (3, serde_json::to_vec(&status).unwrap()),
        ],
    ));
    let process = engine
        .spawn(
            &env,
            ExecRequest::new(["sh", "-c", "echo out; echo err >&2; echo more; exit 3"]),
        )
        .await
        .unwrap();
    // No pid on this host: 0, and the exec's token in its place.
    let (pid, token) = process.pid();
    assert_eq!(pid, 0);
    let result = process.wait().await.unwrap();
    assert_eq!(result.stdout, "out\nmore\n");
    assert_eq!(result.stderr, "err\n");
    assert_eq!(result.exit_code, Some(3));
    let target = server.await.unwrap();
    assert!(
        target.starts_with("/api/v1/namespaces/ptest-ci/pods/ptest-web-0a1b2c3d4e5f/exec?"),
        "{target}"
    );
    assert!(
        target.contains(&format!("exec-{token:016x}.pid")),
        "the wrapper's pid file is named for the token: {target}"
    );
}

#[tokio::test]
async fn success_on_the_status_channel_is_exit_code_zero_and_kill_runs_the_script() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let engine = engine(&listener, home.path());
    let env = env(home.path());
    let success = json!({"metadata": {}, "status": "Success"});
    let server = tokio::spawn(serve_one(
        listener,
        vec![(3, serde_json::to_vec(&success).unwrap())],
    ));
    let process = ProcessInfo {
        id: 1,
        env_id: env.id.clone(),
        pid: 0,
        start_ticks: 0xab,
        command: vec!["sleep".into(), "300".into()],
        status: ptest_core::ProcessStatus::Running,
        started_at: jiff::Timestamp::now(),
        ended_at: None,
        exit_code: None,
        signal: None,
    };
    engine.kill(&env, &process).await.unwrap();
    let target = server.await.unwrap();
    // The kill script, given the pid file of the command with that token.
    assert!(target.contains("exec-00000000000000ab.pid"), "{target}");
    assert!(target.contains("kill"), "{target}");
}

/// Serves one exec that reads stdin: collects what comes on channel 0 until it is a whole tar
/// archive (its end-of-archive blocks, padded to a record), then ends with `Success`, as `tar
/// -x` does without waiting for stdin to close. Returns the target and the bytes.
async fn serve_unpack(listener: tokio::net::TcpListener) -> (String, Vec<u8>) {
    use futures_util::StreamExt;
    let (target, mut ws) = accept(&listener, V4).await;
    let mut stdin = Vec::new();
    let whole = |b: &[u8]| {
        b.len() >= 1024
            && b.len().is_multiple_of(10240)
            && b[b.len() - 1024..].iter().all(|&x| x == 0)
    };
    while !whole(&stdin) {
        let message = ws.next().await.unwrap().unwrap();
        let data = message.into_data();
        if data.first() == Some(&0) {
            stdin.extend_from_slice(&data[1..]);
        }
    }
    let success = json!({"metadata": {}, "status": "Success"});
    send(&mut ws, 3, &serde_json::to_vec(&success).unwrap()).await;
    ws.close(None).await.unwrap();
    (target, stdin)
}

#[tokio::test]
async fn copy_in_streams_the_tree_as_a_tar_into_the_unpacking_execs_stdin() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let engine = engine(&listener, home.path());
    let env = env(home.path());
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("tests")).unwrap();
    std::fs::write(
        project.path().join("tests/test_a.py"),
        "def test_a():\n    pass\n",
    )
    .unwrap();
    std::fs::write(project.path().join("ptest.toml"), "[env.k]\n").unwrap();
    // Bigger than one chunk, so that the archive goes in several frames.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(project.path().join("data.bin"), &big).unwrap();
    std::os::unix::fs::symlink("tests/test_a.py", project.path().join("link.py")).unwrap();

    let server = tokio::spawn(serve_unpack(listener));
    engine
        .copy_in(&env, project.path(), std::path::Path::new("workspace"))
        .await
        .unwrap();
    let (target, stdin) = server.await.unwrap();

    assert!(
        target.starts_with("/api/v1/namespaces/ptest-ci/pods/ptest-web-0a1b2c3d4e5f/exec?"),
        "{target}"
    );
    assert_eq!(support::query_values(&target, "stdin"), ["true"]);
    assert_eq!(support::query_values(&target, "container"), ["env"]);
    assert_eq!(
        support::query_values(&target, "command"),
        [
            "sh",
            "-c",
            ptest_kube::copy::UNPACK,
            "sh",
            "/ptest/workspace"
        ]
    );
    let mut archive = tar::Archive::new(&stdin[..]);
    let mut found = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let kind = entry.header().entry_type();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        let link = entry.link_name().unwrap().map(|l| l.display().to_string());
        found.insert(path, (kind, bytes, link));
    }
    let names: Vec<&str> = found.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "data.bin",
            "link.py",
            "ptest.toml",
            "tests/",
            "tests/test_a.py"
        ]
    );
    assert_eq!(found["data.bin"].1, big);
    assert_eq!(found["tests/test_a.py"].1, b"def test_a():\n    pass\n");
    assert!(found["tests/"].0.is_dir());
    assert!(found["link.py"].0.is_symlink());
    assert_eq!(found["link.py"].2.as_deref(), Some("tests/test_a.py"));
}

#[tokio::test]
async fn copy_in_reports_the_pods_refusal_and_does_not_wait_for_the_rest() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let engine = engine(&listener, home.path());
    let env = env(home.path());
    let project = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(project.path().join("data.bin"), &big).unwrap();
    // An image without tar: the shell says so and the exec ends at once, stdin unread.
    let status = json!({
        "metadata": {}, "status": "Failure",
        "message": "command terminated with non-zero exit code: exit code 127",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "127"}]}
    });
    let server = tokio::spawn(serve_one(
        listener,
        vec![
            (2, b"sh: exec: line 0: tar: not found\n".to_vec()),
            (3, serde_json::to_vec(&status).unwrap()),
        ],
    ));
    let e = engine
        .copy_in(&env, project.path(), std::path::Path::new("workspace"))
        .await
        .unwrap_err()
        .to_string();
    server.await.unwrap();
    assert!(e.contains("exit code 127"), "{e}");
    assert!(e.contains("tar: not found"), "{e}");
}

#[tokio::test]
async fn copy_in_refuses_a_destination_outside_the_root() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let engine = engine(&listener, home.path());
    let env = env(home.path());
    let e = engine
        .copy_in(&env, home.path(), std::path::Path::new("../etc"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ptest_core::ErrorKind::Usage);
}
