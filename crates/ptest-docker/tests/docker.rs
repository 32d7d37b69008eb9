//! The docker engine against a real Docker engine, driven through the manager.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use ptest_core::*;
use ptest_docker::{LABEL_ENV, LABEL_HOME, ObjectKind};
use support::{TEST_IMAGE, fixture};

#[tokio::test]
async fn exec_passes_files_streams_and_exit_codes_and_remove_leaves_nothing() {
    let Some(f) = fixture().await else { return };
    let env = f.manager.create_environment(f.spec("round")).await.unwrap();
    let container = f.engine.container_name(&env);
    assert!(f.container_exists(&container).await);

    std::fs::write(
        env.workspace().join("from-host.txt"),
        "written on the host\n",
    )
    .unwrap();
    let cat = f
        .manager
        .execute_command(&env, ExecRequest::new(["cat", "from-host.txt"]))
        .await
        .unwrap();
    assert_eq!(cat.stdout, "written on the host\n");
    assert!(cat.success());
    assert!(cat.pid.is_some());

    let mixed = f.sh(&env, "echo out; echo err >&2; exit 3").await;
    assert_eq!(mixed.exit_code, Some(3));
    assert_eq!(mixed.stdout, "out\n");
    assert_eq!(mixed.stderr, "err\n");

    let vars = f
        .sh(
            &env,
            "echo $PTEST_ENV_NAME $PTEST_ENV_ROOT $HOME $TMPDIR; pwd; echo x > out.txt",
        )
        .await;
    assert_eq!(
        vars.stdout,
        "round /ptest /ptest/home /ptest/tmp\n/workspace\n"
    );
    assert_eq!(
        std::fs::read_to_string(env.workspace().join("out.txt")).unwrap(),
        "x\n"
    );
    // The marker is out of reach from inside.
    let marker = f.sh(&env, "echo forged > /ptest/.ptest-env").await;
    assert_ne!(marker.exit_code, Some(0));

    let mut request = ExecRequest::new(["sh", "-c", "echo $EXTRA"]);
    request.env.push(("EXTRA".into(), "given".into()));
    let extra = f.manager.execute_command(&env, request).await.unwrap();
    assert_eq!(extra.stdout, "given\n");

    let findings = f.manager.validate(&env).await.unwrap();
    assert!(findings.iter().all(|c| c.ok), "{findings:?}");
    let usage = f.manager.resource_usage(&env).await.unwrap();
    assert!(
        usage.memory_bytes.is_some() && usage.pids.is_some(),
        "{usage:?}"
    );
    assert!(usage.disk_bytes.unwrap() > 0);

    f.manager
        .cleanup(&env, RemoveOptions::default())
        .await
        .unwrap();
    assert!(!f.container_exists(&container).await);
    assert!(!env.root.exists());
    assert!(
        f.manager
            .list_environments(&EnvFilter::default())
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_tree() {
    let Some(f) = fixture().await else { return };
    let env = f.manager.create_environment(f.spec("slow")).await.unwrap();
    let request = ExecRequest::new(["sh", "-c", "sleep 300 & sleep 301 & sleep 302"])
        .timeout(Duration::from_millis(800));
    let result = f.manager.execute_command(&env, request).await.unwrap();
    assert!(result.timed_out);
    assert_eq!(result.shell_code(), 124);
    let left = f
        .sh(&env, "ps -o args | grep -c '^sleep 30[012]' || true")
        .await;
    assert_eq!(left.stdout.trim(), "0", "left behind: {}", left.stdout);
    assert!(f.manager.processes(&env).unwrap().is_empty());
    f.manager
        .cleanup(&env, RemoveOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn oom_kill_is_reported() {
    let Some(f) = fixture().await else { return };
    let mut spec = f.spec("hungry");
    spec.limits.memory = Some(ByteSize(32 << 20));
    let env = f.manager.create_environment(spec).await.unwrap();
    assert_eq!(f.engine.oom_killed(&env).await.unwrap(), Some(false));
    // The shell holds 100 MB in a variable: far past 32M with swap counted.
    let result = f
        .sh(
            &env,
            "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x}",
        )
        .await;
    assert_ne!(result.stdout.trim(), "100000000");
    assert_ne!(result.exit_code, Some(0));
    assert!(result.oom_killed, "{result:?}");
    assert_eq!(f.engine.oom_killed(&env).await.unwrap(), Some(true));
    // A command killed by anything else is not taken for an OOM kill.
    let killed = f.sh(&env, "kill -9 $$").await;
    assert_eq!(killed.exit_code, Some(137));
    assert!(!killed.oom_killed);
    // The environment survives its command's death.
    assert!(f.sh(&env, "true").await.success());
    f.manager
        .cleanup(&env, RemoveOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn pids_limit_caps_processes() {
    let Some(f) = fixture().await else { return };
    let mut spec = f.spec("forky");
    spec.limits.pids = Some(12);
    let env = f.manager.create_environment(spec).await.unwrap();
    let result = f
        .sh(
            &env,
            "i=0; while [ $i -lt 30 ]; do sleep 60 & i=$((i+1)); done",
        )
        .await;
    assert!(result.stderr.contains("can't fork"), "{result:?}");
    let usage = f.manager.resource_usage(&env).await.unwrap();
    assert!(usage.pids.unwrap() <= 12, "{usage:?}");
    f.manager
        .cleanup(&env, RemoveOptions { force: true })
        .await
        .unwrap();
}

#[tokio::test]
async fn build_builds_once_and_reuses_the_tag() {
    let Some(f) = fixture().await else { return };
    let context = tempfile::tempdir().unwrap();
    // Unique content, so this run really builds.
    let nonce = EnvId::random();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {TEST_IMAGE}\nCOPY greeting /greeting\nENV NONCE={nonce}\n"),
    )
    .unwrap();
    std::fs::write(context.path().join("greeting"), "built here\n").unwrap();
    let spec = |name: &str| {
        let mut s = f.spec(name);
        s.docker = Some(DockerSpec {
            image: None,
            build: Some(context.path().to_owned()),
        });
        s
    };
    let image_of = |env: &Environment| {
        let name = f.engine.container_name(env);
        let docker = f.docker.clone();
        async move {
            let c = docker.inspect_container(&name, None).await.unwrap();
            (c.config.unwrap().image.unwrap(), c.image.unwrap())
        }
    };
    let first = f.manager.create_environment(spec("built1")).await.unwrap();
    let (tag1, id1) = image_of(&first).await;
    assert!(tag1.starts_with("ptest-build:"), "{tag1}");
    let created1 = f.docker.inspect_image(&tag1).await.unwrap().created;
    let second = f.manager.create_environment(spec("built2")).await.unwrap();
    let (tag2, id2) = image_of(&second).await;
    assert_eq!((tag1.clone(), id1), (tag2, id2));
    assert_eq!(
        f.docker.inspect_image(&tag1).await.unwrap().created,
        created1
    );
    assert_eq!(f.sh(&second, "cat /greeting").await.stdout, "built here\n");
    for env in [first, second] {
        f.manager
            .cleanup(&env, RemoveOptions::default())
            .await
            .unwrap();
    }
    let _ = f
        .docker
        .remove_image(
            &tag1,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}

#[tokio::test]
async fn missing_image_is_a_clear_error_and_leaves_nothing() {
    let Some(f) = fixture().await else { return };
    let mut spec = f.spec("ghost");
    spec.docker = Some(DockerSpec {
        image: Some("ptest-no-such-image:v1".into()),
        build: None,
    });
    let err = f.manager.create_environment(spec).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ptest-no-such-image:v1"), "{text}");
    assert!(text.contains("--build"), "{text}");
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(
        f.manager
            .list_environments(&EnvFilter::default())
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        std::fs::read_dir(f.home.path().join("envs"))
            .unwrap()
            .count(),
        0
    );
    let labelled = f
        .docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&HashMap::from([(
                    "label",
                    vec![format!("{LABEL_HOME}={}", f.engine.home_hash())],
                )]))
                .build(),
        ))
        .await
        .unwrap();
    assert!(labelled.is_empty());
}

/// Outside a run, `bridge` is Docker's default bridge, as for `docker run`: a neighbour is
/// reachable by address but not by name, and ptest makes no network of its own.
#[tokio::test]
async fn outside_a_run_bridge_is_dockers_default_network() {
    let Some(f) = fixture().await else { return };
    let mut spec = f.spec("alpha");
    spec.network = Some(NetworkMode::Bridge);
    let alpha = f.manager.create_environment(spec).await.unwrap();
    let beta = f.manager.create_environment(f.spec("beta")).await.unwrap();
    assert_eq!(alpha.details["network"], "bridge");
    std::fs::write(alpha.workspace().join("index.html"), "hello from alpha\n").unwrap();
    // busybox httpd daemonizes: the exec returns, the server stays under the container's init.
    assert!(f.sh(&alpha, "httpd -p 8080 -h /workspace").await.success());
    // Docker writes the container's address next to its hostname in /etc/hosts.
    let address = f.sh(&alpha, "hostname -i").await;
    let address = address.stdout.trim().to_owned();
    assert!(address.contains('.'), "no address: {address:?}");
    let fetch = format!("wget -q -O - http://{address}:8080/index.html");
    let mut got = f.sh(&beta, &fetch).await;
    for _ in 0..20 {
        if got.success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = f.sh(&beta, &fetch).await;
    }
    assert_eq!(got.stdout, "hello from alpha\n", "{got:?}");
    let by_name = f
        .sh(&beta, "wget -q -T 2 -O - http://alpha:8080/index.html")
        .await;
    assert!(
        !by_name.success(),
        "resolved a neighbour by name: {by_name:?}"
    );
    let ours = f
        .docker
        .list_networks(Some(
            bollard::query_parameters::ListNetworksOptionsBuilder::new()
                .filters(&HashMap::from([(
                    "label",
                    vec![format!("{LABEL_HOME}={}", f.engine.home_hash())],
                )]))
                .build(),
        ))
        .await
        .unwrap();
    assert!(ours.is_empty(), "ptest made a network: {ours:?}");
    for env in [alpha, beta] {
        f.manager
            .cleanup(&env, RemoveOptions::default())
            .await
            .unwrap();
    }
}

/// `ptest run` labels its environments with the run: each run's containers share a bridge of
/// their own, reach each other by name, cannot reach another run's, and the run's network
/// goes with its last container.
#[tokio::test]
async fn each_run_has_its_own_bridge_network() {
    let Some(f) = fixture().await else { return };
    let in_run = |name: &str, run: &str| {
        let mut spec = f.spec(name);
        spec.labels.insert(RUN_LABEL.into(), run.into());
        spec
    };
    let alpha = f
        .manager
        .create_environment(in_run("alpha", "r1"))
        .await
        .unwrap();
    let beta = f
        .manager
        .create_environment(in_run("beta", "r1"))
        .await
        .unwrap();
    let gamma = f
        .manager
        .create_environment(in_run("gamma", "r2"))
        .await
        .unwrap();
    let network = format!("ptest-{}-r1", f.engine.home_hash());
    assert_eq!(alpha.details["network"], network.as_str());
    std::fs::write(alpha.workspace().join("index.html"), "r1\n").unwrap();
    assert!(f.sh(&alpha, "httpd -p 8080 -h /workspace").await.success());
    let fetch = "wget -q -O - http://alpha:8080/index.html";
    let mut got = f.sh(&beta, fetch).await;
    for _ in 0..20 {
        if got.success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = f.sh(&beta, fetch).await;
    }
    assert_eq!(got.stdout, "r1\n", "{got:?}");
    let stranger = f.sh(&gamma, fetch).await;
    assert!(
        !stranger.success(),
        "another run's container reached alpha: {stranger:?}"
    );
    f.manager
        .cleanup(&alpha, RemoveOptions::default())
        .await
        .unwrap();
    assert!(
        f.docker.inspect_network(&network, None).await.is_ok(),
        "beta still uses it"
    );
    f.manager
        .cleanup(&beta, RemoveOptions::default())
        .await
        .unwrap();
    assert!(
        f.docker.inspect_network(&network, None).await.is_err(),
        "the run's network outlived its last container"
    );
    f.manager
        .cleanup(&gamma, RemoveOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn gc_removes_labelled_orphans_and_spares_the_rest() {
    let Some(f) = fixture().await else { return };
    let live = f
        .manager
        .create_environment(f.spec("keeper"))
        .await
        .unwrap();
    // A ptest killed mid-create: a labelled container whose environment was never recorded.
    let orphan_id = EnvId::random().to_string();
    let make = |name: String, labels: Option<HashMap<String, String>>| {
        let docker = f.docker.clone();
        async move {
            docker
                .create_container(
                    Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                    ContainerCreateBody {
                        image: Some(TEST_IMAGE.into()),
                        entrypoint: Some(vec!["sleep".into(), "600".into()]),
                        labels,
                        ..ContainerCreateBody::default()
                    },
                )
                .await
                .unwrap();
            name
        }
    };
    let orphan = make(
        format!("ptest-orphan-{orphan_id}"),
        Some(HashMap::from([
            (LABEL_ENV.to_owned(), orphan_id.clone()),
            (LABEL_HOME.to_owned(), f.engine.home_hash().to_owned()),
        ])),
    )
    .await;
    let stranger = make(format!("not-ptest-{}", EnvId::random()), None).await;

    let reaped = f.engine.gc(&[live.id.to_string()]).await;
    assert!(
        reaped.iter().any(|r| r.kind == ObjectKind::Container
            && r.env_id.as_deref() == Some(orphan_id.as_str())
            && r.error.is_none()),
        "{reaped:?}"
    );
    assert!(!f.container_exists(&orphan).await);
    assert!(
        f.container_exists(&stranger).await,
        "an unlabelled container was touched"
    );
    assert!(f.container_exists(&f.engine.container_name(&live)).await);
    // The network is still used by the live environment: it stays.
    assert!(
        reaped.iter().all(|r| r.kind != ObjectKind::Network),
        "{reaped:?}"
    );

    f.docker
        .remove_container(
            &stranger,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await
        .unwrap();
    f.manager
        .cleanup(&live, RemoveOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn high_security_is_nobody_on_a_read_only_root() {
    let Some(f) = fixture().await else { return };
    let mut spec = f.spec("locked");
    spec.security = Some(SecurityLevel::High);
    let env = f.manager.create_environment(spec).await.unwrap();
    assert_eq!(f.sh(&env, "id -u").await.stdout, "65534\n");
    let write_root = f.sh(&env, "echo x > /intruder").await;
    assert_ne!(write_root.exit_code, Some(0), "{write_root:?}");
    assert!(
        f.sh(&env, "echo x > /workspace/ok && echo y > /tmp/ok")
            .await
            .success()
    );
    assert!(env.workspace().join("ok").exists());
    // No network but loopback by default at high.
    let links = f.sh(&env, "ls /sys/class/net").await;
    assert_eq!(links.stdout.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    f.manager
        .cleanup(&env, RemoveOptions::default())
        .await
        .unwrap();
    assert!(!env.root.exists());
}

#[tokio::test]
async fn capabilities_report_the_engine() {
    let Some(f) = fixture().await else { return };
    let findings = f
        .manager
        .engine_capabilities(IsolationLevel::Docker)
        .unwrap();
    let engine = findings.0.iter().find(|c| c.check == "engine").unwrap();
    assert!(engine.ok, "{findings:?}");
    assert!(engine.detail.contains("API"), "{}", engine.detail);
}

#[tokio::test]
async fn disk_limit_is_a_tmpfs_root_shared_by_tmp_and_dev_shm() {
    let Some(f) = fixture().await else { return };
    let mut spec = f.spec("quota");
    spec.limits.disk = Some(ByteSize(8 << 20));
    let env = f.manager.create_environment(spec).await.unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let source = format!("ptest-env-{}", env.id);
    assert!(mountinfo.contains(&source), "no tmpfs {source} at the root");
    // Written from the host, /tmp and /dev/shm: one limit.
    std::fs::write(env.workspace().join("host"), vec![0u8; 3 << 20]).unwrap();
    let fill = f
        .sh(
            &env,
            "dd if=/dev/zero of=/tmp/a bs=1M count=3 && dd if=/dev/zero of=/dev/shm/b bs=1M count=8",
        )
        .await;
    assert_ne!(fill.exit_code, Some(0), "{fill:?}");
    assert!(fill.stderr.contains("No space left on device"), "{fill:?}");
    f.manager
        .cleanup(&env, RemoveOptions::default())
        .await
        .unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&source), "{source} left mounted");
    assert!(!env.root.exists());
}

/// A `--disk` environment whose ptest died before `env rm`, and whose record is gone: its
/// container is an orphan, and its root a tmpfs mounted on the host. `gc` removes the
/// container and then unmounts and deletes the root (marker checked), reporting both.
#[tokio::test]
async fn gc_unmounts_the_tmpfs_root_of_a_container_it_reaps() {
    let Some(f) = fixture().await else { return };
    let id = EnvId::random();
    let root = f.home.path().join("envs").join(id.as_str());
    let mut spec = f.spec("orphan");
    spec.limits.disk = Some(ByteSize(8 << 20));
    limited_root::create(&root, &id, limited_root::limits(&spec, 0)).unwrap();
    let source = format!("ptest-env-{id}");
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&source)
    };
    assert!(mounted(), "no tmpfs {source} at the root");
    let name = orphan_container(&f, &id, &root).await;
    f.docker.start_container(&name, None).await.unwrap();

    let reaped = f.engine.gc(&[]).await;
    assert!(!f.container_exists(&name).await, "{reaped:?}");
    assert!(
        reaped.iter().any(|r| r.kind == ObjectKind::Root
            && r.env_id.as_deref() == Some(id.as_str())
            && r.error.is_none()),
        "{reaped:?}"
    );
    assert!(!mounted(), "{source} left mounted: {reaped:?}");
    assert!(!root.exists());
}

/// A reaped container's root outside the home whose marker names another environment is not
/// touched.
#[tokio::test]
async fn gc_leaves_a_root_whose_marker_names_another_environment() {
    let Some(f) = fixture().await else { return };
    let (id, other) = (EnvId::random(), EnvId::random());
    // Someone else's root (marked for `other`), where a `--path` would put it, bind-mounted
    // by a container labelled `id`.
    let root = f.home.path().join("elsewhere");
    root::create(&root, &other).unwrap();
    let name = orphan_container(&f, &id, &root).await;
    let reaped = f.engine.gc(&[]).await;
    assert!(!f.container_exists(&name).await, "{reaped:?}");
    assert!(
        reaped.iter().any(|r| r.kind == ObjectKind::Root
            && r.error.as_deref().is_some_and(|e| e.contains("marker"))),
        "{reaped:?}"
    );
    assert!(root::marker_id(&root).as_deref() == Some(other.as_str()));
}

/// A container of this home labelled for environment `id`, which no record names, with
/// `root` bind-mounted at `/ptest` as ptest mounts an environment's root. Returns its name.
async fn orphan_container(f: &support::Fixture, id: &EnvId, root: &std::path::Path) -> String {
    let name = format!("ptest-orphan-{id}");
    f.docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            ContainerCreateBody {
                image: Some(TEST_IMAGE.into()),
                entrypoint: Some(vec!["sleep".into(), "600".into()]),
                labels: Some(HashMap::from([
                    (LABEL_ENV.to_owned(), id.to_string()),
                    (LABEL_HOME.to_owned(), f.engine.home_hash().to_owned()),
                ])),
                host_config: Some(bollard::models::HostConfig {
                    binds: Some(vec![format!("{}:/ptest:ro", root.display())]),
                    ..Default::default()
                }),
                ..ContainerCreateBody::default()
            },
        )
        .await
        .unwrap();
    name
}
