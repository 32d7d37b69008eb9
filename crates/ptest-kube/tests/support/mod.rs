//! What the kubernetes engine's tests share: environments with fixed ids, and kube's own test
//! client (a `tower_test` mock service behind `kube::Client::new`) whose requests a test
//! reads and answers as an API server would.

#![allow(dead_code, clippy::unwrap_used)]

use std::pin::pin;

use http::{Request, Response};
use kube::client::Body;
use ptest_core::{
    CleanupPolicy, EnvId, EnvName, Environment, EnvironmentSpec, EnvironmentStatus, IsolationLevel,
    KubernetesSpec,
};
use ptest_kube::Cluster;
use tower_test::mock::{Handle, SendResponse};

pub mod websocket;

/// The id every test environment has, so manifests are the same on every run.
pub const ID: &str = "0a1b2c3d4e5f";
/// The home hash tests label with.
pub const HOME: &str = "ab12cd34ef56";

/// A kubernetes spec running `busybox:1.36`.
pub fn spec() -> EnvironmentSpec {
    let mut spec = EnvironmentSpec::new(IsolationLevel::Kubernetes);
    spec.kubernetes = Some(KubernetesSpec {
        image: Some("busybox:1.36".into()),
        ..KubernetesSpec::default()
    });
    spec
}

/// The environment `web` made from `spec`.
pub fn env(spec: EnvironmentSpec) -> Environment {
    Environment {
        id: serde_json::from_value::<EnvId>(serde_json::json!(ID)).unwrap(),
        name: EnvName::new("web").unwrap(),
        level: IsolationLevel::Kubernetes,
        status: EnvironmentStatus::Initializing,
        root: "/h/envs/x".into(),
        spec: EnvironmentSpec {
            cleanup: CleanupPolicy::OnRequest,
            ..spec
        },
        created_at: jiff::Timestamp::UNIX_EPOCH,
        updated_at: jiff::Timestamp::UNIX_EPOCH,
        expires_at: None,
        error: None,
        details: Default::default(),
        ports: Default::default(),
        activated_at: None,
        deactivated_at: None,
        last_activity: None,
    }
}

/// The mock API server's side.
pub type ApiServer = Handle<Request<Body>, Response<Body>>;

/// A cluster whose every request reaches the returned handle; its default namespace is
/// `ptest-ci`.
pub fn mock_cluster() -> (Cluster, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "ptest-ci");
    (
        Cluster::new(client, "https://10.0.0.1:6443", "kind-ptest"),
        handle,
    )
}

/// One request as the API server saw it.
#[derive(Debug)]
pub struct Seen {
    /// `GET`, `POST`, `DELETE`.
    pub method: String,
    /// The path.
    pub path: String,
    /// The query string, decoded.
    pub query: String,
    /// The body, as JSON (`Null` when empty).
    pub body: serde_json::Value,
}

/// Takes the next request from `server` (failing when none comes) and what answers it.
pub async fn next(server: &mut ApiServer) -> (Seen, SendResponse<Response<Body>>) {
    let mut server = pin!(server);
    let (request, send) =
        tokio::time::timeout(std::time::Duration::from_secs(10), server.next_request())
            .await
            .expect("ptest made no request within 10s")
            .expect("ptest made no further request");
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    let query = parts.uri.query().unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: percent_decode(query),
        body: if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        },
    };
    (seen, send)
}

/// Answers with `status` and a JSON body.
pub fn answer(send: SendResponse<Response<Body>>, status: u16, body: &serde_json::Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// Answers a watch with these events, one JSON object a line, then ends the stream.
pub fn answer_events(send: SendResponse<Response<Body>>, events: &[serde_json::Value]) {
    let mut text = Vec::new();
    for e in events {
        text.extend(serde_json::to_vec(e).unwrap());
        text.push(b'\n');
    }
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(text))
            .unwrap(),
    );
}

/// A Status object as the API server sends with an error code.
pub fn status(
    code: u16,
    reason: &str,
    message: &str,
    details: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    })
}

/// `s` with its `%XX` escapes and `+` (a space) decoded, as a query string is written.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The values for `key` in the query of a request's `target` (path and query), decoded.
pub fn query_values(target: &str, key: &str) -> Vec<String> {
    let query = target.split_once('?').unwrap().1;
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

/// A manager on a fresh home whose kubernetes engine reaches `cluster`, waiting `ready` for
/// pods; the home's directory goes with the returned guard.
pub fn manager(
    cluster: Cluster,
    ready: std::time::Duration,
) -> (ptest_core::Manager, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let engine =
        ptest_kube::KubernetesEngine::with_cluster(home.path(), cluster).ready_timeout(ready);
    let mut engines = ptest_core::EngineRegistry::new();
    engines.register(std::sync::Arc::new(engine));
    let manager = ptest_core::Manager::open(
        ptest_core::Home::at(home.path()),
        ptest_core::Config::default(),
        engines,
    )
    .unwrap();
    (manager, home)
}

/// `pod` (as ptest sent it) as the API server returns it: with a version, a uid and a status
/// of `phase` with these conditions and container statuses.
pub fn with_status(
    pod: &serde_json::Value,
    version: &str,
    phase: &str,
    conditions: serde_json::Value,
    containers: serde_json::Value,
) -> serde_json::Value {
    let mut pod = pod.clone();
    pod["metadata"]["resourceVersion"] = version.into();
    pod["metadata"]["uid"] = "5f0c3f8e-2b1a-4c47-9a7e-0d1f2e3c4b5a".into();
    pod["status"] = serde_json::json!({
        "phase": phase,
        "conditions": conditions,
        "containerStatuses": containers,
        "qosClass": "BestEffort",
    });
    pod
}

/// A watch event of `kind` (`ADDED`, `MODIFIED`, `DELETED`) for `object`.
pub fn event(kind: &str, object: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "type": kind, "object": object })
}

/// Fails if ptest makes another request within a moment.
pub async fn no_more_requests(server: &mut ApiServer) {
    let mut server = pin!(server);
    let next = tokio::time::timeout(std::time::Duration::from_millis(200), server.next_request());
    if let Ok(Some((request, _))) = next.await {
        panic!("unexpected request: {} {}", request.method(), request.uri());
    }
}
