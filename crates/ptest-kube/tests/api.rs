//! Every request the engine makes, against kube's own test client: the request (method, path,
//! query, body) is asserted, and the answer is what a real API server sends (Pods with status
//! conditions, Status objects for refusals, watch events).

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use ptest_core::{EnvFilter, ErrorKind, Manager};
use serde_json::json;
use support::*;

/// Starts `spec` through the manager while `server` plays the API server.
async fn create(
    manager: &Manager,
    spec: ptest_core::EnvironmentSpec,
    server: impl std::future::Future<Output = ()>,
) -> ptest_core::Result<ptest_core::Environment> {
    let (created, ()) = tokio::join!(manager.create_environment(spec), server);
    created
}

fn named(name: &str) -> ptest_core::EnvironmentSpec {
    let mut spec = spec();
    spec.name = Some(ptest_core::EnvName::new(name).unwrap());
    spec
}

const PODS: &str = "/api/v1/namespaces/ptest-ci/pods";

fn ready_conditions() -> serde_json::Value {
    json!([
        {"type": "PodReadyToStartContainers", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": "True"},
        {"type": "ContainersReady", "status": "True"},
        {"type": "PodScheduled", "status": "True"}
    ])
}

fn waiting(reason: &str, message: &str) -> serde_json::Value {
    json!([{
        "name": "env", "image": "busybox:1.36", "imageID": "", "ready": false,
        "restartCount": 0, "started": false,
        "state": {"waiting": {"reason": reason, "message": message}}
    }])
}

/// Takes the pod creation: asserts it, answers 201 Pending, and returns the pod's name and
/// the pod as sent.
async fn expect_pod_created(server: &mut ApiServer) -> (String, serde_json::Value) {
    let (seen, send) = next(server).await;
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", PODS));
    let pod = seen.body;
    let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    answer(
        send,
        201,
        &with_status(&pod, "100", "Pending", json!([]), json!([])),
    );
    (name, pod)
}

/// Takes the watch of `name` from version `version`, asserting its selector.
async fn expect_watch(
    server: &mut ApiServer,
    name: &str,
    version: &str,
) -> tower_test::mock::SendResponse<http::Response<kube::client::Body>> {
    let (seen, send) = next(server).await;
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("GET", PODS));
    assert!(seen.query.contains("watch=true"), "{}", seen.query);
    assert!(
        seen.query
            .contains(&format!("fieldSelector=metadata.name={name}")),
        "{}",
        seen.query
    );
    assert!(
        seen.query.contains(&format!("resourceVersion={version}")),
        "{}",
        seen.query
    );
    send
}

/// Takes the deletion of pod `name`.
async fn expect_pod_deleted(server: &mut ApiServer, name: &str) {
    let (seen, send) = next(server).await;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("DELETE", format!("{PODS}/{name}").as_str())
    );
    answer(
        send,
        200,
        &json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name}}),
    );
}

fn nothing_recorded(manager: &Manager, home: &std::path::Path) {
    assert!(
        manager
            .list_environments(&EnvFilter::default())
            .unwrap()
            .is_empty()
    );
    assert_eq!(std::fs::read_dir(home.join("envs")).unwrap().count(), 0);
}

#[tokio::test]
async fn create_posts_the_pod_and_waits_until_it_is_ready() {
    let (cluster, mut server) = mock_cluster();
    let (manager, home) = manager(cluster, Duration::from_secs(30));
    let server = async {
        let (name, pod) = expect_pod_created(&mut server).await;
        assert_eq!(pod["metadata"]["namespace"], "ptest-ci");
        assert_eq!(
            pod["metadata"]["labels"]["ptest.home"],
            ptest_core::Home::at(home.path()).hash()
        );
        assert_eq!(pod["spec"]["containers"][0]["image"], "busybox:1.36");
        let send = expect_watch(&mut server, &name, "100").await;
        answer_events(
            send,
            &[
                event(
                    "MODIFIED",
                    &with_status(
                        &pod,
                        "101",
                        "Pending",
                        json!([{"type": "PodScheduled", "status": "True"}]),
                        waiting("ContainerCreating", ""),
                    ),
                ),
                event(
                    "MODIFIED",
                    &with_status(&pod, "102", "Running", ready_conditions(), json!([])),
                ),
            ],
        );
    };
    let env = create(&manager, named("web"), server).await.unwrap();
    assert_eq!(env.status, ptest_core::EnvironmentStatus::Active);
    assert_eq!(env.details["namespace"], "ptest-ci");
    assert_eq!(env.details["context"], "kind-ptest");
    assert_eq!(env.details["pod"], format!("ptest-web-{}", env.id));
    // The pod's labels name this environment.
    assert!(env.root.join(".ptest-env").exists());
}

/// Creates `spec` while the API server reports the new pod with `phase`, `conditions` and
/// `containers`, and then, where `hang` says so, keeps a second watch open until ptest's time
/// is up; the pod must then be deleted and nothing else asked. Returns the error and checks
/// that nothing is recorded.
async fn fails_to_start(
    spec: ptest_core::EnvironmentSpec,
    ready: Duration,
    phase: &str,
    conditions: serde_json::Value,
    containers: serde_json::Value,
    hang: bool,
) -> ptest_core::Error {
    let (cluster, mut server) = mock_cluster();
    let (manager, home) = manager(cluster, ready);
    let server = async {
        let (name, pod) = expect_pod_created(&mut server).await;
        let send = expect_watch(&mut server, &name, "100").await;
        let reported = with_status(&pod, "101", phase, conditions, containers);
        answer_events(send, &[event("MODIFIED", &reported)]);
        // The server ends a watch; ptest watches again from the last version it saw.
        let _open = if hang {
            Some(expect_watch(&mut server, &name, "101").await)
        } else {
            None
        };
        expect_pod_deleted(&mut server, &name).await;
        no_more_requests(&mut server).await;
    };
    let e = create(&manager, spec, server).await.unwrap_err();
    nothing_recorded(&manager, home.path());
    e
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_is_named_and_nothing_is_left() {
    let e = fails_to_start(
        named("web"),
        Duration::from_secs(30),
        "Pending",
        json!([{"type": "PodScheduled", "status": "True"}]),
        waiting(
            "ImagePullBackOff",
            "Back-off pulling image \"busybox:1.36\": ErrImagePull: failed to pull and unpack image",
        ),
        false,
    )
    .await;
    let text = e.to_string();
    assert!(text.contains("ImagePullBackOff"), "{text}");
    assert!(text.contains("image busybox:1.36"), "{text}");
    assert_eq!(e.kind(), ErrorKind::Usage);
}

#[tokio::test]
async fn an_unschedulable_pod_says_why_when_the_wait_ends() {
    let e = fails_to_start(
        named("web"),
        Duration::from_millis(500),
        "Pending",
        json!([{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        }]),
        json!([]),
        true,
    )
    .await;
    let text = e.to_string();
    assert!(text.contains("Unschedulable"), "{text}");
    assert!(text.contains("3 Insufficient memory"), "{text}");
}

#[tokio::test]
async fn an_oom_killed_container_names_its_memory_limit() {
    let mut spec = named("web");
    spec.limits.memory = Some(ptest_core::ByteSize(8 << 20));
    let e = fails_to_start(
        spec,
        Duration::from_secs(30),
        "Failed",
        json!([{"type": "Ready", "status": "False", "reason": "PodFailed"}]),
        json!([{
            "name": "env", "image": "busybox:1.36", "imageID": "", "ready": false,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
        }]),
        false,
    )
    .await;
    let text = e.to_string();
    assert!(text.contains("OOMKilled"), "{text}");
    // The limit as sent (`resources.limits.memory` of the pod ptest created).
    assert!(text.contains("memory limit 8388608"), "{text}");
}

#[tokio::test]
async fn rbac_forbidden_names_the_verb_and_resource_and_leaves_nothing() {
    let (cluster, mut server) = mock_cluster();
    let (manager, home) = manager(cluster, Duration::from_secs(30));
    let server = async {
        let (seen, send) = next(&mut server).await;
        assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", PODS));
        answer(
            send,
            403,
            &status(
                403,
                "Forbidden",
                "pods is forbidden: User \"system:serviceaccount:ci:runner\" cannot create resource \"pods\" in API group \"\" in the namespace \"ptest-ci\"",
                json!({"kind": "pods"}),
            ),
        );
        // The server made nothing: there is nothing to delete.
        no_more_requests(&mut server).await;
    };
    let e = create(&manager, named("web"), server).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("may not create pods"), "{text}");
    assert!(text.contains("system:serviceaccount:ci:runner"), "{text}");
    assert_eq!(e.kind(), ErrorKind::Usage);
    nothing_recorded(&manager, home.path());
}

#[tokio::test]
async fn a_missing_namespace_is_a_state_error_saying_how_to_make_it() {
    let (cluster, mut server) = mock_cluster();
    let (manager, home) = manager(cluster, Duration::from_secs(30));
    let mut spec = named("web");
    spec.kubernetes.as_mut().unwrap().namespace = Some("nope".into());
    let server = async {
        let (seen, send) = next(&mut server).await;
        assert_eq!(seen.path, "/api/v1/namespaces/nope/pods");
        answer(
            send,
            404,
            &status(
                404,
                "NotFound",
                "namespaces \"nope\" not found",
                json!({"name": "nope", "kind": "namespaces"}),
            ),
        );
        no_more_requests(&mut server).await;
    };
    let e = create(&manager, spec, server).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("namespace \"nope\" does not exist"), "{text}");
    assert!(text.contains("kubectl create namespace nope"), "{text}");
    assert_eq!(e.kind(), ErrorKind::State);
    nothing_recorded(&manager, home.path());
}

#[tokio::test]
async fn an_unreachable_api_server_is_named_and_nothing_is_left() {
    // A real client, to a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut config = kube::Config::new(url.parse().unwrap());
    config.default_namespace = "ptest-ci".into();
    let client = kube::Client::try_from(config).unwrap();
    let (manager, home) = manager(
        ptest_kube::Cluster::new(client, &url, "kind-gone"),
        Duration::from_secs(30),
    );
    let e = manager.create_environment(named("web")).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!("cannot reach the API server {url}")),
        "{text}"
    );
    assert!(text.contains("kind-gone"), "{text}");
    assert_eq!(e.kind(), ErrorKind::Usage);
    nothing_recorded(&manager, home.path());
}

#[tokio::test]
async fn a_limited_network_is_a_policy_made_first_and_deleted_with_the_pod() {
    let (cluster, mut server) = mock_cluster();
    let (manager, _home) = manager(cluster, Duration::from_secs(30));
    let mut spec = named("web");
    spec.network = Some(ptest_core::NetworkMode::Loopback);
    const POLICIES: &str = "/apis/networking.k8s.io/v1/namespaces/ptest-ci/networkpolicies";
    let script = async {
        let (seen, send) = next(&mut server).await;
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("POST", POLICIES)
        );
        assert_eq!(
            seen.body["spec"]["policyTypes"],
            json!(["Ingress", "Egress"])
        );
        let policy_name = seen.body["metadata"]["name"].as_str().unwrap().to_owned();
        answer(send, 201, &seen.body);
        let (name, pod) = expect_pod_created(&mut server).await;
        assert_eq!(name, policy_name);
        let send = expect_watch(&mut server, &name, "100").await;
        answer_events(
            send,
            &[event(
                "MODIFIED",
                &with_status(&pod, "102", "Running", ready_conditions(), json!([])),
            )],
        );
    };
    let env = create(&manager, spec, script).await.unwrap();
    let name = format!("ptest-web-{}", env.id);
    let api_server = async {
        // `env rm` stops (deletes the pod), then cleans up (the pod again, gone: 404; the
        // policy).
        expect_pod_deleted(&mut server, &name).await;
        let (seen, send) = next(&mut server).await;
        assert_eq!(seen.path, format!("{PODS}/{name}"));
        answer(
            send,
            404,
            &status(
                404,
                "NotFound",
                "pods \"x\" not found",
                json!({"kind": "pods"}),
            ),
        );
        let (seen, send) = next(&mut server).await;
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("DELETE", format!("{POLICIES}/{name}").as_str())
        );
        answer(
            send,
            404,
            &status(404, "NotFound", "gone already", json!({})),
        );
    };
    let (removed, ()) = tokio::join!(
        manager.cleanup(&env, ptest_core::RemoveOptions::default()),
        api_server
    );
    removed.unwrap();
    assert!(
        manager
            .list_environments(&EnvFilter::default())
            .unwrap()
            .is_empty()
    );
    assert!(!env.root.exists());
}

#[tokio::test]
async fn gc_deletes_only_this_homes_labelled_objects_of_gone_environments() {
    let (cluster, mut server) = mock_cluster();
    let (manager, home) = manager(cluster, Duration::from_secs(30));
    let hash = ptest_core::Home::at(home.path()).hash();
    ptest_kube::gc::Targets::of_home(home.path())
        .add(&ptest_kube::gc::Target {
            context: None,
            namespace: "ptest-ci".into(),
        })
        .unwrap();
    let group = |kind: &str| {
        if kind.starts_with("NetworkPolicy") {
            "networking.k8s.io/v1"
        } else {
            "v1"
        }
    };
    let object = |kind: &str, name: &str, labels: serde_json::Value| {
        json!({
            "kind": kind, "apiVersion": group(kind),
            "metadata": {"name": name, "namespace": "ptest-ci", "labels": labels}
        })
    };
    let list = |kind: &str, items: Vec<serde_json::Value>| {
        json!({
            "kind": format!("{kind}List"), "apiVersion": group(kind),
            "metadata": {"resourceVersion": "7"}, "items": items
        })
    };
    let selector = format!("labelSelector=ptest.home={hash}");
    let server = async {
        let (seen, send) = next(&mut server).await;
        assert_eq!((seen.method.as_str(), seen.path.as_str()), ("GET", PODS));
        assert!(seen.query.contains(&selector), "{}", seen.query);
        answer(
            send,
            200,
            &list(
                "Pod",
                vec![
                    object(
                        "Pod",
                        "ptest-orphan-aaaaaaaaaaaa",
                        json!({"ptest.home": hash, "ptest.env": "aaaaaaaaaaaa"}),
                    ),
                    // A server that ignored the selector: not this home's, left alone.
                    object(
                        "Pod",
                        "someone-else",
                        json!({"ptest.home": "ffffffffffff", "ptest.env": "bbbbbbbbbbbb"}),
                    ),
                    object("Pod", "unlabelled", json!({})),
                ],
            ),
        );
        let (seen, send) = next(&mut server).await;
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            (
                "DELETE",
                format!("{PODS}/ptest-orphan-aaaaaaaaaaaa").as_str()
            )
        );
        answer(
            send,
            200,
            &json!({"kind": "Pod", "apiVersion": "v1", "metadata": {}}),
        );
        let (seen, send) = next(&mut server).await;
        assert_eq!(seen.path, "/api/v1/namespaces/ptest-ci/services");
        assert!(seen.query.contains(&selector), "{}", seen.query);
        answer(send, 200, &list("Service", vec![]));
        let (seen, send) = next(&mut server).await;
        assert_eq!(
            seen.path,
            "/apis/networking.k8s.io/v1/namespaces/ptest-ci/networkpolicies"
        );
        assert!(seen.query.contains(&selector), "{}", seen.query);
        answer(
            send,
            200,
            &list(
                "NetworkPolicy",
                vec![object(
                    "NetworkPolicy",
                    "ptest-orphan-aaaaaaaaaaaa",
                    json!({"ptest.home": hash, "ptest.env": "aaaaaaaaaaaa"}),
                )],
            ),
        );
        let (seen, send) = next(&mut server).await;
        assert_eq!(seen.method, "DELETE");
        assert!(
            seen.path
                .ends_with("/networkpolicies/ptest-orphan-aaaaaaaaaaaa")
        );
        answer(
            send,
            200,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        );
        no_more_requests(&mut server).await;
    };
    let (removed, ()) = tokio::join!(manager.gc(ptest_core::GcOptions::default()), server);
    let removed = removed.unwrap();
    let names: Vec<&str> = removed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ptest-ci/ptest-orphan-aaaaaaaaaaaa",
            "ptest-ci/ptest-orphan-aaaaaaaaaaaa"
        ]
    );
    assert!(
        removed
            .iter()
            .all(|r| r.error.is_none() && r.id == "aaaaaaaaaaaa")
    );
}

/// A leased port is forwarded from this host while the environment is active in this
/// process: a connection to `127.0.0.1:PORT` asks for the pod's portforward of that port;
/// `env stop` ends the listening.
#[tokio::test]
async fn a_leased_port_is_forwarded_from_this_host_until_the_environment_stops() {
    let (cluster, mut server) = mock_cluster();
    let (manager, _home) = manager(cluster, Duration::from_secs(30));
    let mut spec = named("web");
    spec.ports = vec!["http".parse().unwrap()];
    let (env, name) = {
        let server = &mut server;
        let mut name = String::new();
        let answered = async {
            let (pod_name, pod) = expect_pod_created(server).await;
            name = pod_name;
            let send = expect_watch(server, &name, "100").await;
            answer_events(
                send,
                &[event(
                    "MODIFIED",
                    &with_status(&pod, "101", "Running", ready_conditions(), json!([])),
                )],
            );
        };
        let env = create(&manager, spec, answered).await.unwrap();
        (env, name)
    };
    let port = env.ports[&"http".parse().unwrap()];

    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (seen, send) = next(&mut server).await;
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, format!("{PODS}/{name}/portforward"));
    assert_eq!(seen.query, format!("&ports={port}"));
    // Refused (as RBAC would): the relay ends and closes the connection.
    answer(
        send,
        403,
        &status(403, "Forbidden", "pods \"x\" is forbidden", json!({})),
    );
    let mut rest = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut rest).await;
    assert!(rest.is_empty());

    let (stopped, ()) = tokio::join!(
        manager.stop_environment(&env),
        expect_pod_deleted(&mut server, &name)
    );
    stopped.unwrap();
    // Nothing listens there any more (the listener goes as its task is dropped).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(std::time::Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    no_more_requests(&mut server).await;
}
