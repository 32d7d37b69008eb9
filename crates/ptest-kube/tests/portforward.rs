//! A port-forward end to end through kube's own client and websocket, against a local server
//! that speaks the API server's portforward protocol (`v4.channel.k8s.io`: per port a data
//! channel and an error channel, each opened by a frame carrying the port, little-endian).

#![allow(clippy::unwrap_used)]

mod support;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use support::websocket::{V4, accept, client, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A connection accepted on this host, and the client's end of it.
async fn connected() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    (accepted.unwrap().0, client.unwrap())
}

#[tokio::test]
async fn a_connection_is_carried_both_ways_through_the_pods_portforward_stream() {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (kube_client, _) = client(&server);
    let api: kube::Api<Pod> = kube::Api::namespaced(kube_client, "ptest-ci");
    let port: u16 = 8080;
    // The API server's side: opens both channels of the port, takes what the client sends on
    // the data channel, answers on it and closes.
    let pod_side = tokio::spawn(async move {
        let (target, mut ws) = accept(&server, V4).await;
        send(&mut ws, 0, &port.to_le_bytes()).await;
        send(&mut ws, 1, &port.to_le_bytes()).await;
        let mut got = Vec::new();
        while got.len() < b"GET / HTTP/1.0\r\n\r\n".len() {
            let data = ws.next().await.unwrap().unwrap().into_data();
            if data.first() == Some(&0) {
                got.extend_from_slice(&data[1..]);
            }
        }
        send(&mut ws, 0, b"HTTP/1.0 200 OK\r\n\r\nhello from the pod").await;
        ws.close(None).await.unwrap();
        (target, got)
    });
    let (conn, mut host_client) = connected().await;
    let relay = tokio::spawn(async move {
        ptest_kube::forward::relay(conn, &api, "ptest-web-0a1b2c3d4e5f", port).await
    });
    host_client
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    host_client.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"HTTP/1.0 200 OK\r\n\r\nhello from the pod");
    let (target, got) = pod_side.await.unwrap();
    assert_eq!(got, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(
        target,
        "/api/v1/namespaces/ptest-ci/pods/ptest-web-0a1b2c3d4e5f/portforward?&ports=8080"
    );
    drop(host_client);
    let _ = relay.await.unwrap();
}

#[tokio::test]
async fn the_pods_refusal_of_the_port_ends_the_connection_with_its_words() {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (kube_client, _) = client(&server);
    let api: kube::Api<Pod> = kube::Api::namespaced(kube_client, "ptest-ci");
    let port: u16 = 5432;
    let said = "error forwarding port 5432 to pod 1f2e, uid : failed to execute portforward \
                in network namespace: failed to connect to localhost:5432 inside namespace: \
                connection refused";
    let pod_side = tokio::spawn(async move {
        let (_, mut ws) = accept(&server, V4).await;
        send(&mut ws, 0, &port.to_le_bytes()).await;
        send(&mut ws, 1, &port.to_le_bytes()).await;
        send(&mut ws, 1, said.as_bytes()).await;
        // Held open: the error alone must end the relay.
        while let Some(Ok(_)) = ws.next().await {}
    });
    let (conn, mut host_client) = connected().await;
    let e = ptest_kube::forward::relay(conn, &api, "ptest-web-0a1b2c3d4e5f", port)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("connection refused"), "{e}");
    assert!(e.contains("127.0.0.1:5432"), "{e}");
    // The host's side of the connection is closed.
    let mut rest = Vec::new();
    assert_eq!(host_client.read_to_end(&mut rest).await.unwrap_or(0), 0);
    pod_side.abort();
}
