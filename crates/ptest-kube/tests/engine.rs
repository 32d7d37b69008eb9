//! The engine's calls on a made environment, against kube's own test client: exec, metrics,
//! and the dry run that asks nothing.

#![allow(clippy::unwrap_used)]

mod support;

use ptest_core::{Engine, ErrorKind, ExecRequest};
use ptest_kube::KubernetesEngine;
use serde_json::json;
use support::*;

/// `web`, made in namespace `ptest-ci` of context `kind-ptest`.
fn made() -> ptest_core::Environment {
    let mut env = env(spec());
    env.details.insert("namespace".into(), json!("ptest-ci"));
    env.details.insert("context".into(), json!("kind-ptest"));
    env
}

const POD: &str = "/api/v1/namespaces/ptest-ci/pods/ptest-web-0a1b2c3d4e5f";

#[tokio::test]
async fn exec_asks_for_the_exec_subresource_with_stdout_and_stderr_apart() {
    let (cluster, mut server) = mock_cluster();
    let home = tempfile::tempdir().unwrap();
    let engine = KubernetesEngine::with_cluster(home.path(), cluster);
    let env = made();
    let mut request = ExecRequest::new(["echo", "hi"]);
    request.env = vec![("A".into(), "1".into())];
    let (spawned, ()) = tokio::join!(engine.spawn(&env, request), async {
        let (seen, send) = next(&mut server).await;
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("GET", format!("{POD}/exec").as_str())
        );
        let query = &seen.query;
        for part in [
            "container=env",
            "stdout=true",
            "stderr=true",
            "command=sh&command=-c&command=",
            "&command=/workspace&command=PTEST_ENV_ID=0a1b2c3d4e5f&command=PTEST_ENV_NAME=web",
            "&command=A=1&command=echo&command=hi",
        ] {
            assert!(query.contains(part), "{part} not in {query}");
        }
        assert!(
            !query.contains("stdin=true") && !query.contains("tty=true"),
            "{query}"
        );
        // The API server refuses the upgrade: no RBAC grant for pods/exec.
        answer(
            send,
            403,
            &status(
                403,
                "Forbidden",
                "pods \"ptest-web-0a1b2c3d4e5f\" is forbidden: User \"dev\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"ptest-ci\"",
                json!({"kind": "pods"}),
            ),
        );
    });
    let e = spawned.err().unwrap();
    assert!(e.to_string().contains("may not create pods/exec"), "{e}");
    assert_eq!(e.kind(), ErrorKind::Usage);
}

#[tokio::test]
async fn stats_read_memory_from_the_metrics_api() {
    let (cluster, mut server) = mock_cluster();
    let home = tempfile::tempdir().unwrap();
    let engine = KubernetesEngine::with_cluster(home.path(), cluster);
    let env = made();
    let (usage, ()) = tokio::join!(engine.resource_usage(&env), async {
        let (seen, send) = next(&mut server).await;
        assert_eq!(
            seen.path,
            "/apis/metrics.k8s.io/v1beta1/namespaces/ptest-ci/pods/ptest-web-0a1b2c3d4e5f"
        );
        answer(
            send,
            200,
            &json!({
                "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": "ptest-web-0a1b2c3d4e5f", "namespace": "ptest-ci"},
                "timestamp": "2026-12-05T20:00:00Z", "window": "15.01s",
                "containers": [{"name": "env", "usage": {"cpu": "1234567n", "memory": "3412Ki"}}]
            }),
        );
    });
    let usage = usage.unwrap();
    assert_eq!(usage.memory_bytes, Some(3412 * 1024));
    // The API gives a rate, not CPU time: not made up.
    assert_eq!(usage.cpu_seconds, None);
}

#[tokio::test]
async fn stats_without_a_metrics_api_say_so() {
    let (cluster, mut server) = mock_cluster();
    let home = tempfile::tempdir().unwrap();
    let engine = KubernetesEngine::with_cluster(home.path(), cluster);
    let env = made();
    let (usage, ()) = tokio::join!(engine.resource_usage(&env), async {
        let (_, send) = next(&mut server).await;
        answer(
            send,
            404,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                json!({}),
            ),
        );
    });
    let text = usage.unwrap_err().to_string();
    assert!(text.contains("metrics-server"), "{text}");
}

#[tokio::test]
async fn a_dry_run_prints_the_manifests_and_asks_nothing() {
    let (cluster, mut server) = mock_cluster();
    let home = tempfile::tempdir().unwrap();
    let engine = KubernetesEngine::with_cluster(home.path(), cluster);
    let mut spec = spec();
    spec.kubernetes.as_mut().unwrap().namespace = Some("ci".into());
    spec.network = Some(ptest_core::NetworkMode::Loopback);
    let yaml = engine
        .dry_run(spec, &ptest_core::config::LevelDefaults::default())
        .await
        .unwrap();
    assert!(yaml.contains("kind: Pod\n"), "{yaml}");
    assert!(
        yaml.contains("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"),
        "{yaml}"
    );
    assert!(yaml.contains("  namespace: ci\n"), "{yaml}");
    no_more_requests(&mut server).await;
    assert!(!home.path().join("kubernetes-targets").exists());
}

#[tokio::test]
async fn a_spec_a_pod_cannot_apply_is_refused_with_each_reason() {
    let home = tempfile::tempdir().unwrap();
    let engine = KubernetesEngine::new(home.path());
    let mut refused = spec();
    refused.limits.pids = Some(64);
    refused.network = Some(ptest_core::NetworkMode::Host);
    let text = engine.check(&refused).unwrap_err().to_string();
    assert!(text.contains("--pids"), "{text}");
    assert!(text.contains("--network host"), "{text}");
    let mut of_a_run = spec();
    of_a_run
        .labels
        .insert(ptest_core::RUN_LABEL.into(), "0a1b2c".into());
    // The project is copied into the pod (`copy_in`): a run's environment is welcome.
    engine.check(&of_a_run).unwrap();
    let mut no_image = spec();
    no_image.kubernetes = None;
    let text = engine.check(&no_image).unwrap_err().to_string();
    assert!(text.contains("needs an image"), "{text}");
}

#[tokio::test]
async fn start_after_stop_waits_for_the_old_pod_to_go() {
    let (cluster, mut server) = mock_cluster();
    let (manager, _home) = manager(cluster, std::time::Duration::from_secs(30));
    let mut spec = spec();
    spec.name = Some(ptest_core::EnvName::new("web").unwrap());
    // Made but not started: no pod yet, nothing asked of the cluster.
    let env = manager.create_environment_unstarted(spec).await.unwrap();
    let name = format!("ptest-web-{}", env.id);
    let pods = "/api/v1/namespaces/ptest-ci/pods";
    let (started, ()) = tokio::join!(manager.start_environment(&env), async {
        let (seen, send) = next(&mut server).await;
        assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", pods));
        let pod = seen.body;
        answer(
            send,
            409,
            &status(
                409,
                "AlreadyExists",
                &format!("pods \"{name}\" already exists"),
                json!({"name": name, "kind": "pods"}),
            ),
        );
        let (seen, send) = next(&mut server).await;
        assert_eq!(seen.path, format!("{pods}/{name}"));
        answer(
            send,
            404,
            &status(
                404,
                "NotFound",
                &format!("pods \"{name}\" not found"),
                json!({"name": name, "kind": "pods"}),
            ),
        );
        let (seen, send) = next(&mut server).await;
        assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", pods));
        answer(
            send,
            201,
            &with_status(
                &pod,
                "100",
                "Running",
                json!([{"type": "Ready", "status": "True"}]),
                json!([]),
            ),
        );
    });
    assert_eq!(
        started.unwrap().status,
        ptest_core::EnvironmentStatus::Active
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_shows_the_context_the_server_version_and_what_rbac_allows() {
    let (cluster, mut server) = mock_cluster();
    let home = tempfile::tempdir().unwrap();
    let engine = KubernetesEngine::with_cluster(home.path(), cluster);
    let doctor = tokio::task::spawn_blocking(move || engine.capabilities());
    let (seen, send) = next(&mut server).await;
    assert_eq!(seen.path, "/version");
    answer(
        send,
        200,
        &json!({
            "major": "1", "minor": "32", "gitVersion": "v1.32.2", "gitCommit": "67a30c0",
            "gitTreeState": "clean", "buildDate": "2025-02-12T21:19:47Z", "goVersion": "go1.23.6",
            "compiler": "gc", "platform": "linux/amd64"
        }),
    );
    for _ in 0..7 {
        let (seen, send) = next(&mut server).await;
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            (
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
            )
        );
        let attributes = &seen.body["spec"]["resourceAttributes"];
        assert_eq!(attributes["namespace"], "ptest-ci");
        // This user may do everything but exec.
        let allowed = attributes["subresource"] != "exec";
        let mut review = seen.body.clone();
        review["status"] = json!({ "allowed": allowed });
        answer(send, 201, &review);
    }
    let findings = doctor.await.unwrap();
    let find = |check: &str| findings.iter().find(|f| f.check == check).unwrap();
    assert!(find("context").detail.contains("kind-ptest"));
    assert!(find("server").ok);
    assert!(find("server").detail.contains("v1.32.2"));
    let rbac = find("rbac");
    assert!(!rbac.ok);
    assert!(
        rbac.detail.contains("may not create pods/exec"),
        "{}",
        rbac.detail
    );
    assert!(rbac.detail.contains("may create pods"), "{}", rbac.detail);
}
