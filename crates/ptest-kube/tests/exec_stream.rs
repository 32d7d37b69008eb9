//! An exec end to end through kube's own client and websocket, against a local server that
//! speaks the API server's exec protocol (`v4.channel.k8s.io`: one byte of channel, then the
//! data; 1 stdout, 2 stderr, 3 the Status), as recorded from a kubelet: the framing ptest reads
//! and the exit status it takes from the status channel.

#![allow(clippy::unwrap_used)]

use futures_util::SinkExt;
use ptest_core::{Engine, ExecRequest, ProcessInfo};
use ptest_kube::{Cluster, KubernetesEngine};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Serves one exec: answers the upgrade, sends `frames` (channel, bytes) and closes. Returns
/// the request's target (path and query) once done.
async fn serve_one(listener: tokio::net::TcpListener, frames: Vec<(u8, Vec<u8>)>) -> String {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let target = head.split(' ').nth(1).unwrap().to_owned();
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .unwrap();
    let protocols = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("sec-websocket-protocol"))
        .unwrap();
    assert!(protocols.contains("v4.channel.k8s.io"), "{protocols}");
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(answer.as_bytes()).await.unwrap();
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
    for (channel, data) in frames {
        let mut frame = vec![channel];
        frame.extend(data);
        ws.send(Message::binary(frame)).await.unwrap();
    }
    ws.close(None).await.unwrap();
    target
}

/// An engine whose cluster is the local server at `listener`.
fn engine(listener: &tokio::net::TcpListener, home: &std::path::Path) -> KubernetesEngine {
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = kube::Config::new(url.parse().unwrap());
    config.default_namespace = "ptest-ci".into();
    let client = kube::Client::try_from(config).unwrap();
    KubernetesEngine::with_cluster(home, Cluster::new(client, &url, "kind-ptest"))
}

fn env(root: &std::path::Path) -> ptest_core::Environment {
    let mut spec = ptest_core::EnvironmentSpec::new(ptest_core::IsolationLevel::Kubernetes);
    spec.kubernetes = Some(ptest_core::KubernetesSpec {
        image: Some("busybox:1.36".into()),
        ..Default::default()
    });
    let now = jiff::Timestamp::now();
    ptest_core::Environment {
        id: serde_json::from_value(json!("0a1b2c3d4e5f")).unwrap(),
        name: ptest_core::EnvName::new("web").unwrap(),
        level: ptest_core::IsolationLevel::Kubernetes,
        status: ptest_core::EnvironmentStatus::Active,
        root: root.to_owned(),
        spec,
        created_at: now,
        updated_at: now,
        expires_at: None,
        activated_at: None,
        deactivated_at: None,
        last_activity: None,
        error: None,
        details: [("namespace".to_owned(), json!("ptest-ci"))]
            .into_iter()
            .collect(),
        ports: Default::default(),
    }
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
