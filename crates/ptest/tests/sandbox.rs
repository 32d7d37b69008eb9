//! Security levels, network modes and limits of sandboxed environments, checked from inside
//! and outside: namespaces, read-only host, private /tmp, OOM kills, pids limits, daemons
//! killed with the environment.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use support::{TestHome, env_processes, wait_env_empty};

/// Whether this host can run pods and cgroups (root, namespaces, cgroup controllers); prints
/// why not and skips, or fails under PTEST_REQUIRE_ALL=1.
fn sandbox_available(t: &TestHome) -> bool {
    let report = t.json(["doctor"]);
    let features = report["levels"][0]["features"].as_array().unwrap().clone();
    let has = |name: &str| {
        features
            .iter()
            .any(|f| f["check"] == name && f["ok"] == true)
    };
    if has("namespaces") && has("cgroups") {
        return true;
    }
    let why = format!("sandbox tests need namespaces and cgroups: {features:?}");
    if std::env::var_os("PTEST_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    false
}

fn out(t: &TestHome, args: &[&str]) -> String {
    let a = t.ptest(args).assert().success();
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

#[test]
fn medium_is_the_default_and_isolates_pids_hostname_filesystem_and_tmp() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.create("pod-a");
    t.create("pod-b");
    let env = &t.json(["env", "show", "pod-a"])["environment"];
    assert_eq!(env["details"]["isolation"]["security"], "medium");
    let seen = out(
        &t,
        &[
            "env",
            "exec",
            "pod-a",
            "--",
            "sh",
            "-c",
            "echo $$; hostname",
        ],
    );
    let mut lines = seen.lines();
    assert!(lines.next().unwrap().parse::<u32>().unwrap() < 10, "{seen}");
    assert_eq!(lines.next(), Some("pod-a"));
    t.ptest(["env", "exec", "pod-a", "--", "touch", "/usr/ptest-was-here"])
        .assert()
        .failure()
        .stderr(contains("Read-only file system"));
    assert!(!std::path::Path::new("/usr/ptest-was-here").exists());
    // The root is writable and keeps its host path.
    let root = env["root"].as_str().unwrap();
    t.ptest([
        "env",
        "exec",
        "pod-a",
        "--",
        "sh",
        "-c",
        "echo inside > made-here",
    ])
    .assert()
    .success();
    assert_eq!(
        std::fs::read_to_string(format!("{root}/workspace/made-here")).unwrap(),
        "inside\n"
    );
    // /tmp is private to each environment.
    t.ptest([
        "env",
        "exec",
        "pod-a",
        "--",
        "sh",
        "-c",
        "echo a > /tmp/ptest-private",
    ])
    .assert()
    .success();
    t.ptest(["env", "exec", "pod-b", "--", "cat", "/tmp/ptest-private"])
        .assert()
        .failure();
    assert!(!std::path::Path::new("/tmp/ptest-private").exists());
    t.ptest(["env", "exec", "pod-a", "--", "cat", "/tmp/ptest-private"])
        .assert()
        .success()
        .stdout("a\n");
}

#[test]
fn loopback_environments_both_bind_the_same_port_and_none_has_no_network() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    for name in ["lo-a", "lo-b"] {
        t.ptest(["env", "create", name, "--network", "loopback"])
            .assert()
            .success();
    }
    // Both hold 127.0.0.1:8080 at the same time.
    let server = "import socket,time; s=socket.socket(); s.bind(('127.0.0.1', 8080)); s.listen(); \
                  open('bound','w').close(); time.sleep(30)";
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("ptest"))
        .env("PTEST_HOME", t.home())
        .args(["env", "exec", "lo-a", "--", "python3", "-c", server])
        .spawn()
        .unwrap();
    let root_a = t.json(["env", "show", "lo-a"])["environment"]["root"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..500 {
        if std::path::Path::new(&format!("{root_a}/workspace/bound")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    t.ptest([
        "env",
        "exec",
        "lo-b",
        "--",
        "python3",
        "-c",
        "import socket; s=socket.socket(); s.bind(('127.0.0.1', 8080)); print('bound')",
    ])
    .assert()
    .success()
    .stdout("bound\n");
    first.kill().unwrap();
    first.wait().unwrap();

    t.ptest(["env", "create", "offline", "--network", "none"])
        .assert()
        .success();
    let devs = out(
        &t,
        &["env", "exec", "offline", "--", "cat", "/proc/net/dev"],
    );
    let ifaces: Vec<&str> = devs
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, ["lo"]);
    t.ptest([
        "env",
        "exec",
        "offline",
        "--",
        "python3",
        "-c",
        "import socket; socket.create_connection(('127.0.0.1', 9), timeout=1)",
    ])
    .assert()
    .failure();
}

#[test]
fn memory_limit_kills_and_says_oom() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.ptest(["env", "create", "small", "--memory", "64M"])
        .assert()
        .success();
    let result = t.exec_json(
        "small",
        &["python3", "-c", "b = bytearray(300 * 1024 * 1024)"],
    );
    assert_eq!(result["signal"], 9);
    assert_eq!(result["oom_killed"], true);
    t.ptest([
        "env",
        "exec",
        "small",
        "--",
        "python3",
        "-c",
        "b = bytearray(300 * 1024 * 1024)",
    ])
    .assert()
    .code(137);
    let stats = t.json(["env", "stats", "small"]);
    assert!(stats["oom_kills"].as_u64().unwrap() >= 2, "{stats}");
    assert!(
        stats["memory_peak_bytes"].as_u64().unwrap() <= 64 << 20,
        "{stats}"
    );
    // A kill that is not the limit's is not called an OOM kill.
    let killed = t.exec_json("small", &["sh", "-c", "kill -9 $$"]);
    assert_eq!(
        (killed["signal"].as_i64(), killed["oom_killed"].as_bool()),
        (Some(9), Some(false))
    );
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.ptest(["env", "create", "few", "--pids", "10"])
        .assert()
        .success();
    let result = t.exec_json(
        "few",
        &[
            "sh",
            "-c",
            "for i in $(seq 40); do sleep 5 & done 2>&1; wait",
        ],
    );
    let said = format!("{}{}", result["stdout"], result["stderr"]);
    assert!(
        said.contains("fork") || said.contains("Resource temporarily unavailable"),
        "{said}"
    );
}

#[test]
fn rm_kills_a_daemon_that_left_its_process_group() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    let env = t.create("daemons");
    let id = env["id"].as_str().unwrap().to_owned();
    t.ptest([
        "env",
        "exec",
        "daemons",
        "--",
        "sh",
        "-c",
        "(setsid sleep 1000 >/dev/null 2>&1 &) & sleep 0.3",
    ])
    .assert()
    .success();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !env_processes(&id).is_empty(),
        "the daemon should outlive its command"
    );
    t.ptest(["env", "rm", "daemons"]).assert().success();
    assert!(
        wait_env_empty(&id),
        "survived env rm: {:?}",
        env_processes(&id)
    );
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/pids/ptest/env-{id}")).exists());
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/ptest/env-{id}")).exists());
}

#[test]
fn high_drops_capabilities_network_and_the_host_tree() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.ptest(["env", "create", "tight", "--security", "high"])
        .assert()
        .success();
    let status = out(
        &t,
        &[
            "env",
            "exec",
            "tight",
            "--",
            "grep",
            "-E",
            "^(CapEff|NoNewPrivs)",
            "/proc/self/status",
        ],
    );
    assert!(
        status.contains("CapEff:\t0000000000000000") && status.contains("NoNewPrivs:\t1"),
        "{status}"
    );
    let devs = out(&t, &["env", "exec", "tight", "--", "cat", "/proc/net/dev"]);
    assert_eq!(devs.lines().count(), 3, "only lo: {devs}");
    t.ptest(["env", "exec", "tight", "--", "ls", "/root"])
        .assert()
        .failure();
    t.ptest(["env", "exec", "tight", "--", "ls", "/usr/bin/env"])
        .assert()
        .success();
}

#[test]
fn low_shares_host_namespaces_but_has_a_cgroup() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.ptest(["env", "create", "thin", "--security", "low"])
        .assert()
        .success();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    t.ptest(["env", "exec", "thin", "--", "hostname"])
        .assert()
        .success()
        .stdout(host);
    let id = t.json(["env", "show", "thin"])["environment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        std::path::Path::new(&format!("/sys/fs/cgroup/pids/ptest/env-{id}")).exists()
            || std::path::Path::new(&format!("/sys/fs/cgroup/ptest/env-{id}")).exists()
    );
}

#[test]
fn what_the_host_cannot_apply_is_refused_or_recorded_when_degraded() {
    let t = TestHome::new();
    t.ptest(["env", "create", "s", "--security", "strict"])
        .assert()
        .code(2)
        .stderr(contains("seccomp and Landlock").and(contains("--allow-degraded")));
    t.ptest(["env", "create", "d", "--disk", "100M"])
        .assert()
        .code(2)
        .stderr(contains("--disk"));
    t.ptest(["env", "create", "b", "--network", "bridge"])
        .assert()
        .code(2)
        .stderr(contains("bridge"));
    t.ptest(["env", "create", "m", "--memory", "lots"])
        .assert()
        .code(2)
        .stderr(contains("invalid size"));
    assert!(t.names().is_empty());
    if !sandbox_available(&t) {
        return;
    }
    t.ptest([
        "env",
        "create",
        "s",
        "--security",
        "strict",
        "--allow-degraded",
    ])
    .assert()
    .success();
    let iso = &t.json(["env", "show", "s"])["environment"]["details"]["isolation"];
    assert_eq!(iso["security"], "high");
    assert!(iso["dropped"][0].as_str().unwrap().contains("strict"));
    t.ptest(["env", "show", "s"])
        .assert()
        .success()
        .stdout(contains("dropped"));
}
