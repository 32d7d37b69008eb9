//! The engine end to end on a real cluster: kind, k3s or any, named by
//! `PTEST_TEST_KUBECONFIG` (a kubeconfig file; its current context, or
//! `PTEST_TEST_CONTEXT`), in the context's namespace, with `PTEST_TEST_IMAGE` (default
//! `busybox:1.36`, which the nodes must be able to pull). See CONTRIBUTING.md.
//!
//! CI has no cluster, so without `PTEST_TEST_KUBECONFIG` these tests print why and pass,
//! even under `PTEST_REQUIRE_ALL=1`: the README lists the level as "verified against: none in
//! CI", and these are how a contributor with a cluster verifies it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use ptest_core::{
    EngineRegistry, EnvFilter, ExecRequest, Home, IsolationLevel, KubernetesSpec, Manager,
    RemoveOptions,
};
use ptest_kube::connect::Lookup;
use ptest_kube::{Cluster, KubernetesEngine};

/// The cluster to test against, or `None` (having said why) when none is configured.
async fn cluster() -> Option<Cluster> {
    let Some(kubeconfig) = std::env::var_os("PTEST_TEST_KUBECONFIG") else {
        eprintln!(
            "SKIPPED: no cluster: set PTEST_TEST_KUBECONFIG to a kubeconfig file to run the \
             kubernetes engine against it (not required under PTEST_REQUIRE_ALL: CI has none)"
        );
        return None;
    };
    let lookup = Lookup {
        kubeconfig: Some(kubeconfig),
        ..Lookup::default()
    };
    let context = std::env::var("PTEST_TEST_CONTEXT").ok();
    let (config, context) = lookup.config(context.as_deref()).await.unwrap();
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).unwrap();
    Some(Cluster::new(client, &server, &context))
}

fn manager(cluster: Cluster, home: &std::path::Path) -> Manager {
    let mut engines = EngineRegistry::new();
    engines.register(std::sync::Arc::new(KubernetesEngine::with_cluster(
        home, cluster,
    )));
    Manager::open(Home::at(home), ptest_core::Config::default(), engines).unwrap()
}

fn spec(name: &str) -> ptest_core::EnvironmentSpec {
    let mut spec = ptest_core::EnvironmentSpec::new(IsolationLevel::Kubernetes)
        .name(ptest_core::EnvName::new(name).unwrap());
    spec.kubernetes = Some(KubernetesSpec {
        image: Some(std::env::var("PTEST_TEST_IMAGE").unwrap_or_else(|_| "busybox:1.36".into())),
        ..KubernetesSpec::default()
    });
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_runs_commands_and_leaves_nothing_when_removed() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let m = manager(cluster.clone(), home.path());
    let env = m.create_environment(spec("e2e")).await.unwrap();
    let namespace = env.details["namespace"].as_str().unwrap().to_owned();
    let pod_name = env.details["pod"].as_str().unwrap().to_owned();

    let result = m
        .execute_command(
            &env,
            ExecRequest::new(["sh", "-c", "echo out; echo err >&2; pwd; exit 3"]),
        )
        .await
        .unwrap();
    assert_eq!(result.exit_code, Some(3));
    assert_eq!(result.stdout, "out\n/workspace\n");
    assert_eq!(result.stderr, "err\n");

    // The timeout kills the command's tree in the pod: nothing of it is left running.
    let slow =
        ExecRequest::new(["sh", "-c", "sleep 300 & sleep 301"]).timeout(Duration::from_secs(2));
    let result = m.execute_command(&env, slow).await.unwrap();
    assert!(result.timed_out);
    let left = m
        .execute_command(
            &env,
            ExecRequest::new(["sh", "-c", "ps -o args | grep -c '^sleep 30[01]' || true"]),
        )
        .await
        .unwrap();
    assert_eq!(left.stdout.trim(), "0", "{left:?}");

    let findings = m.validate(&env).await.unwrap();
    assert!(findings.iter().all(|f| f.ok), "{findings:?}");

    m.cleanup(&env, RemoveOptions::default()).await.unwrap();
    assert!(
        m.list_environments(&EnvFilter::default())
            .unwrap()
            .is_empty()
    );
    let pods: kube::Api<Pod> = kube::Api::namespaced(cluster.client.clone(), &namespace);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while pods.get_opt(&pod_name).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "pod {pod_name} still there"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Nothing of this home's is left for gc either.
    let removed = m.gc(ptest_core::GcOptions::default()).await.unwrap();
    assert!(removed.is_empty(), "{removed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_namespace_and_a_missing_image_leave_nothing() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let m = manager(cluster.clone(), home.path());
    let mut no_namespace = spec("nons");
    no_namespace.kubernetes.as_mut().unwrap().namespace = Some("ptest-no-such-namespace".into());
    let e = m.create_environment(no_namespace).await.unwrap_err();
    assert_eq!(e.kind(), ptest_core::ErrorKind::State, "{e}");

    let mut no_image = spec("noimage");
    no_image.kubernetes.as_mut().unwrap().image = Some("ptest.invalid/no-such-image:0".into());
    let e = m.create_environment(no_image).await.unwrap_err();
    assert!(
        e.to_string().contains("ptest.invalid/no-such-image:0"),
        "{e}"
    );
    assert!(
        m.list_environments(&EnvFilter::default())
            .unwrap()
            .is_empty()
    );
    assert!(
        m.gc(ptest_core::GcOptions::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_directory_replaces_the_workspace_in_the_pod() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let m = manager(cluster, home.path());
    let env = m.create_environment(spec("copyin")).await.unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("tests")).unwrap();
    std::fs::write(project.path().join("tests/a.txt"), "from the host\n").unwrap();
    std::os::unix::fs::symlink("tests/a.txt", project.path().join("link")).unwrap();
    let workspace = std::path::Path::new("workspace");
    // Twice: the second copy replaces what the first left (and what a command wrote).
    m.copy_in(&env, project.path(), workspace).await.unwrap();
    let wrote = ExecRequest::new(["sh", "-c", "echo stale > left-over"]);
    assert!(m.execute_command(&env, wrote).await.unwrap().success());
    m.copy_in(&env, project.path(), workspace).await.unwrap();
    let seen = m
        .execute_command(
            &env,
            ExecRequest::new(["sh", "-c", "ls -A; cat link; readlink link"]),
        )
        .await
        .unwrap();
    assert_eq!(
        seen.stdout, "link\ntests\nfrom the host\ntests/a.txt\n",
        "{seen:?}"
    );
    m.cleanup(&env, RemoveOptions::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_command_wrote_in_the_pod_is_copied_out_to_this_host() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let m = manager(cluster, home.path());
    let env = m.create_environment(spec("copyout")).await.unwrap();
    let wrote = ExecRequest::new([
        "sh",
        "-c",
        "mkdir -p reports/sub && echo '<testsuite/>' > reports/sub/a.xml \
         && ln -s sub/a.xml reports/latest.xml",
    ]);
    assert!(m.execute_command(&env, wrote).await.unwrap().success());
    let to = tempfile::tempdir().unwrap();
    let reports = std::path::Path::new("workspace/reports");
    m.copy_out(&env, reports, to.path()).await.unwrap();
    let copied = to.path().join("reports");
    assert_eq!(
        std::fs::read_to_string(copied.join("sub/a.xml")).unwrap(),
        "<testsuite/>\n"
    );
    assert_eq!(
        std::fs::read_link(copied.join("latest.xml")).unwrap(),
        std::path::Path::new("sub/a.xml")
    );
    // One file, beside what is there.
    let file = std::path::Path::new("workspace/reports/sub/a.xml");
    m.copy_out(&env, file, to.path()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(to.path().join("a.xml")).unwrap(),
        "<testsuite/>\n"
    );
    let missing = std::path::Path::new("workspace/no-such.xml");
    let e = m.copy_out(&env, missing, to.path()).await.unwrap_err();
    assert!(matches!(e, ptest_core::Error::Missing(_)), "{e:?}");
    m.cleanup(&env, RemoveOptions::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_port_is_reached_from_this_host_while_the_environment_is_active() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let m = std::sync::Arc::new(manager(cluster, home.path()));
    let mut spec = spec("fwd");
    spec.ports = vec!["http".parse().unwrap()];
    let env = m.create_environment(spec).await.unwrap();
    let port = env.ports[&"http".parse().unwrap()];
    // A one-shot server in the pod, on the leased port (busybox's nc).
    let serving = {
        let (m, env) = (m.clone(), env.clone());
        tokio::spawn(async move {
            let serve = "echo hello from the pod | nc -l -p \"$PTEST_PORT_HTTP\"";
            m.execute_command(&env, ExecRequest::new(["sh", "-c", serve]))
                .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let got = loop {
        // Until nc listens, the pod refuses and the forward closes the connection.
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        // nc keeps the connection open after its line: read just the line.
        let mut got = vec![0u8; "hello from the pod\n".len()];
        let read = tokio::io::AsyncReadExt::read_exact(&mut conn, &mut got).await;
        if read.is_ok() || std::time::Instant::now() > deadline {
            break String::from_utf8_lossy(&got).into_owned();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(got, "hello from the pod\n");
    let _ = serving.await;
    m.cleanup(&env, RemoveOptions::default()).await.unwrap();
}
