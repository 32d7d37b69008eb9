//! Issue 19, item 4: `ptest gc --watch` as a small daemon — it removes a `scheduled`
//! environment after its TTL with no other help, and records `resource_threshold_exceeded`
//! when a command fills an environment's memory past a `[monitor]` threshold.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::{Duration, Instant};

use crate::support::TestHome;

/// A `gc --watch` in the background, stopped with SIGTERM (it must then exit 0).
struct Watcher(std::process::Child);

impl Watcher {
    fn start(t: &TestHome, vars: &[(&str, &str)]) -> Watcher {
        let mut cmd = t.std_command(["gc", "--watch", "--interval", "200ms"]);
        cmd.envs(vars.iter().copied())
            .stdout(std::process::Stdio::null());
        Watcher(cmd.spawn().unwrap())
    }

    fn stop(mut self) {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = self.0.wait().unwrap();
        assert!(status.success(), "gc --watch ended with {status}");
    }
}

/// Whether this host makes pods with a memory limit (their `/dev/shm` counts against it); a
/// skip (a failure under `PTEST_REQUIRE_ALL=1`) when not.
fn pods_with_memory_limits(t: &TestHome) -> bool {
    let missing = crate::support::missing_features(t, &["namespaces", "cgroups"]);
    crate::support::runnable(
        (!missing.is_empty())
            .then(|| format!("a pod's /dev/shm and memory limit need: {missing:?}")),
    )
}

/// What fills 40M of a pod's `/dev/shm` (tmpfs pages, charged to the environment's cgroup:
/// 62% of a 64M limit) and stays.
const FILL: &str = "head -c 40M /dev/zero > /dev/shm/fill && sleep 60";

/// Whether the event log (of `env`, or of every environment) holds a memory
/// `resource_threshold_exceeded` at or above 50%.
fn memory_threshold_recorded(t: &TestHome, env: Option<&str>) -> bool {
    let mut args = vec!["events", "--json"];
    args.extend(env.map(|e| ["--env", e]).into_iter().flatten());
    let out = t.ptest(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        e["event"] == "resource_threshold_exceeded"
            && e["details"]["resource"] == "memory"
            && e["details"]["percent"].as_f64().unwrap() >= 50.0
    })
}

/// Polls `done` every 100 ms for up to 20 s.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn gc_watch_removes_a_scheduled_environment_after_its_ttl() {
    let t = TestHome::new();
    t.ptest([
        "env",
        "create",
        "brief",
        "--cleanup",
        "scheduled",
        "--ttl",
        "1s",
        "--security",
        "low",
    ])
    .assert()
    .success();
    t.ptest(["env", "create", "kept", "--security", "low"])
        .assert()
        .success();
    let watcher = Watcher::start(&t, &[]);
    assert!(
        eventually(|| t.names() == ["kept"]),
        "still there: {:?}",
        t.names()
    );
    watcher.stop();
}

#[test]
fn a_command_filling_memory_past_the_threshold_raises_an_event() {
    let t = TestHome::new();
    if !pods_with_memory_limits(&t) {
        return;
    }
    t.ptest(["env", "create", "full", "--memory", "64M"])
        .assert()
        .success();
    let watcher = Watcher::start(&t, &[("PTEST_MONITOR_MEMORY", "50%")]);
    // 40M of tmpfs pages, charged to the environment's cgroup: 62% of its limit.
    t.ptest([
        "proc", "start", "full", "--name", "fill", "--", "sh", "-c", FILL,
    ])
    .assert()
    .success();
    let found = eventually(|| memory_threshold_recorded(&t, Some("full")));
    watcher.stop();
    assert!(found, "no resource_threshold_exceeded event");
    t.ptest(["env", "rm", "--force", "full"]).assert().success();
}

/// A background process's supervisor watches the thresholds too: no `gc --watch` needed.
#[test]
fn a_supervisor_records_the_threshold_its_own_process_crosses() {
    let t = TestHome::new();
    if !pods_with_memory_limits(&t) {
        return;
    }
    t.ptest(["env", "create", "self", "--memory", "64M"])
        .assert()
        .success();
    t.ptest([
        "proc", "start", "self", "--name", "fill", "--", "sh", "-c", FILL,
    ])
    .env("PTEST_MONITOR_MEMORY", "50%")
    .assert()
    .success();
    let found = eventually(|| memory_threshold_recorded(&t, Some("self")));
    assert!(
        found,
        "no resource_threshold_exceeded event from the supervisor"
    );
    t.ptest(["env", "rm", "--force", "self"]).assert().success();
}

/// `ptest run` watches its suites' environments too.
#[test]
fn a_suite_filling_memory_past_the_threshold_raises_an_event_in_ptest_run() {
    let t = TestHome::new();
    if !pods_with_memory_limits(&t) {
        return;
    }
    let dir = t.dir.path().join("filling");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ptest.toml"),
        "[env.small]\nlimits = { memory = \"64M\" }\n\n[[suite]]\nname = \"fill\"\nenv = \"small\"\n\
         run = \"head -c 40M /dev/zero > /dev/shm/fill && sleep 5\"\n",
    )
    .unwrap();
    t.ptest(["run", "--project", dir.to_str().unwrap()])
        .env("PTEST_MONITOR_MEMORY", "50%")
        .assert()
        .success();
    assert!(
        memory_threshold_recorded(&t, None),
        "no resource_threshold_exceeded event from ptest run"
    );
}
