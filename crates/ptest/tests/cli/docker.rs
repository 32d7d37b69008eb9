//! The docker level through the CLI: an image built from a local Dockerfile (no registry),
//! commands in the container, limits, removal that leaves no container behind.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;
use predicates::str::contains;

/// The busybox build context in `t`'s temp dir, or a skip (see [`ptest_testkit::busybox::context`]).
fn busybox_context(t: &TestHome) -> Option<std::path::PathBuf> {
    ptest_testkit::busybox::context(t.dir.path())
}

#[test]
fn a_container_environment_runs_commands_and_is_removed_cleanly() {
    let t = TestHome::new();
    let Some(context) = busybox_context(&t) else {
        return;
    };
    t.ptest([
        "env",
        "create",
        "box",
        "--build",
        context.to_str().unwrap(),
        "--memory",
        "64M",
    ])
    .assert()
    .success();
    let env = &t.json(["env", "show", "box"])["environment"];
    assert_eq!(env["level"], "docker");
    let container = env["details"]["container"].as_str().unwrap().to_owned();
    let root = env["root"].as_str().unwrap().to_owned();
    std::fs::write(format!("{root}/workspace/from-host"), "hello\n").unwrap();
    t.ptest([
        "env",
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "pwd; cat from-host; echo oops >&2; exit 3",
    ])
    .assert()
    .code(3)
    .stdout("/workspace\nhello\n")
    .stderr(contains("oops"));
    let inspect = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{index .Config.Labels \"ptest.env\"}}",
            &container,
        ])
        .output()
        .unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout).into_owned();
    assert_eq!(
        inspect.trim(),
        format!("{} {}", 64 << 20, env["id"].as_str().unwrap())
    );

    t.ptest(["env", "rm", "box"]).assert().success();
    let gone = std::process::Command::new("docker")
        .args(["inspect", &container])
        .output()
        .unwrap();
    assert!(
        !gone.status.success(),
        "container {container} survived env rm"
    );
    assert!(!std::path::Path::new(&root).exists());
}

#[test]
fn a_missing_image_is_a_clear_error_and_leaves_nothing() {
    let t = TestHome::new();
    if busybox_context(&t).is_none() {
        return;
    }
    t.ptest(["env", "create", "ghost", "--image", "ptest-no-such-image:0"])
        .assert()
        .code(2)
        .stderr(contains("ptest-no-such-image:0").and(contains("--build")));
    assert!(t.names().is_empty());
}

use predicates::prelude::PredicateBooleanExt;

#[test]
fn background_processes_run_in_containers_too() {
    let t = TestHome::new();
    let Some(context) = busybox_context(&t) else {
        return;
    };
    t.ptest(["env", "create", "svc", "--build", context.to_str().unwrap()])
        .assert()
        .success();
    t.ptest([
        "proc",
        "start",
        "svc",
        "--name",
        "web",
        "--ready-log",
        "listening",
        "--",
        "sh",
        "-c",
        "echo listening; exec sleep 300",
    ])
    .assert()
    .success();
    let list = t.json(["proc", "list", "svc"]);
    assert_eq!(list[0]["name"], "web");
    assert_eq!(list[0]["status"], "running");
    t.ptest(["proc", "logs", "svc", "web"])
        .assert()
        .success()
        .stdout("listening\n");
    t.ptest(["proc", "stop", "svc", "web"]).assert().success();
    assert_eq!(t.json(["proc", "list", "svc"])[0]["status"], "stopped");
    t.ptest(["env", "rm", "svc"]).assert().success();
}

#[test]
fn a_published_named_port_answers_from_the_host() {
    let t = TestHome::new();
    let Some(context) = busybox_context(&t) else {
        return;
    };
    t.ptest([
        "env",
        "create",
        "web",
        "--build",
        context.to_str().unwrap(),
        "--port",
        "http",
    ])
    .assert()
    .success();
    let env = &t.json(["env", "show", "web"])["environment"];
    let port = env["ports"]["http"].as_u64().unwrap();
    let root = env["root"].as_str().unwrap().to_owned();
    std::fs::write(
        format!("{root}/workspace/index.html"),
        "served from the container\n",
    )
    .unwrap();
    t.ptest([
        "proc",
        "start",
        "web",
        "--name",
        "httpd",
        "--ready-port",
        "http",
        "--",
        "sh",
        "-c",
        "exec httpd -f -p $PTEST_PORT_HTTP -h /workspace",
    ])
    .assert()
    .success();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("served from the container"), "{answer}");
    let stats = t.json(["env", "stats", "web"]);
    assert!(stats["network_tx_bytes"].as_u64().unwrap() > 0, "{stats}");
}
