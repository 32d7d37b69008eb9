//! A local server that speaks the API server's streaming subresources (exec, portforward)
//! over the websocket kube itself speaks: the upgrade answered with the subprotocol a test
//! names, then frames of one channel byte and the data.

use futures_util::SinkExt;
use ptest_kube::{Cluster, KubernetesEngine};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The subprotocol ptest's streams are tested with, as recorded from a kubelet. Exec: 1
/// stdout, 2 stderr, 3 the Status, and stdin (0) with no way to close it but closing the
/// stream. Portforward: per port, a data channel and an error channel, each opened by a frame
/// carrying the port.
pub const V4: &str = "v4.channel.k8s.io";

/// Accepts one connection and answers its upgrade with `protocol`, which the client must
/// offer. Returns the request's target (path and query) and the websocket.
pub async fn accept(
    listener: &TcpListener,
    protocol: &str,
) -> (String, WebSocketStream<TcpStream>) {
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
    let offered = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("sec-websocket-protocol"))
        .unwrap();
    assert!(offered.contains(protocol), "{offered}");
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(answer.as_bytes()).await.unwrap();
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
    (target, ws)
}

/// Sends `data` on `channel`.
pub async fn send(ws: &mut WebSocketStream<TcpStream>, channel: u8, data: &[u8]) {
    let mut frame = vec![channel];
    frame.extend_from_slice(data);
    ws.send(Message::binary(frame)).await.unwrap();
}

/// A client of the local server at `listener` (namespace `ptest-ci`), and its URL.
pub fn client(listener: &TcpListener) -> (kube::Client, String) {
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = kube::Config::new(url.parse().unwrap());
    config.default_namespace = "ptest-ci".into();
    (kube::Client::try_from(config).unwrap(), url)
}

/// An engine whose cluster is the local server at `listener` (namespace `ptest-ci`).
pub fn engine(listener: &TcpListener, home: &std::path::Path) -> KubernetesEngine {
    let (client, url) = client(listener);
    KubernetesEngine::with_cluster(home, Cluster::new(client, &url, "kind-ptest"))
}

/// The active environment `web` at `root`, made in namespace `ptest-ci`.
pub fn active_env(root: &std::path::Path) -> ptest_core::Environment {
    let mut env = super::env(super::spec());
    env.status = ptest_core::EnvironmentStatus::Active;
    env.root = root.to_owned();
    env.details
        .insert("namespace".to_owned(), json!("ptest-ci"));
    env
}
