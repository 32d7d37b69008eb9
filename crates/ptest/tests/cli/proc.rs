//! Background processes: `proc start` with readiness, `stop`, `wait`, restart policies, logs
//! that outlive the CLI, supervisor deaths repaired by `gc`, and `env rm` leaving nothing.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::{TestHome, alive, env_processes, wait_env_empty, wait_gone};
use predicates::str::contains;

fn out(t: &TestHome, args: &[&str]) -> String {
    let a = t.ptest(args).assert().success();
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

fn service(t: &TestHome, env: &str, name: &str) -> serde_json::Value {
    t.json(["proc", "list", env])
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no process {name}"))
}

#[test]
fn http_server_is_ready_when_it_answers_and_serves_after_the_cli_exits() {
    let t = TestHome::new();
    let env = t.json(["env", "create", "web", "--port", "http"]);
    let id = env["id"].as_str().unwrap().to_owned();
    let port = env["ports"]["http"].as_u64().unwrap();
    std::fs::write(
        std::path::Path::new(env["root"].as_str().unwrap()).join("workspace/hello.txt"),
        "hi from the service\n",
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/hello.txt");
    t.ptest([
        "proc",
        "start",
        "web",
        "--name",
        "http",
        "--ready-http",
        &format!("{url}=200"),
        "--",
        "sh",
        "-c",
        "exec python3 -m http.server $PTEST_PORT_HTTP",
    ])
    .assert()
    .success();
    // The CLI has exited; the server runs on and answers from the environment's workspace.
    let got = t.exec_json("web", &["python3", "-c", &format!(
        "import urllib.request; print(urllib.request.urlopen('{url}').read().decode(), end='')"
    )]);
    assert_eq!(got["stdout"], "hi from the service\n");
    let s = service(&t, "web", "http");
    assert_eq!(s["status"], "running");
    assert!(s["stats"]["rss_bytes"].as_u64().unwrap() > 0, "{s}");
    assert!(s["stats"]["open_fds"].as_u64().unwrap() > 0, "{s}");
    // Its request log went to the stderr log, readable after the fact.
    assert!(out(&t, &["proc", "logs", "web", "http", "--stderr"]).is_empty());
    t.ptest(["proc", "logs", "web", "http", "--stderr"])
        .assert()
        .stderr(contains("GET /hello.txt"));
    t.ptest(["env", "rm", "web"]).assert().success();
    assert!(wait_env_empty(&id));
}

#[test]
fn ready_log_waits_for_the_line() {
    let t = TestHome::new();
    t.create("logs");
    t.ptest([
        "proc",
        "start",
        "logs",
        "--name",
        "slow",
        "--ready-log",
        "^ready$",
        "--",
        "sh",
        "-c",
        "echo starting; sleep 1; echo ready; exec sleep 600",
    ])
    .assert()
    .success();
    // Returned only once the line was there.
    assert_eq!(
        out(&t, &["proc", "logs", "logs", "slow"]),
        "starting\nready\n"
    );
    assert_eq!(service(&t, "logs", "slow")["status"], "running");
}

#[test]
fn readiness_timeout_fails_with_the_log_tail_and_stops_the_process() {
    let t = TestHome::new();
    t.create("late");
    t.ptest([
        "proc",
        "start",
        "late",
        "--name",
        "never",
        "--ready-log",
        "ready",
        "--ready-timeout",
        "1s",
        "--",
        "sh",
        "-c",
        "echo warming up; echo no config >&2; exec sleep 600",
    ])
    .assert()
    .code(1)
    .stderr(contains("was not ready after 1s"))
    .stderr(contains("warming up"))
    .stderr(contains("no config"));
    let s = service(&t, "late", "never");
    assert_eq!(s["status"], "stopped");
    assert!(!alive(s["pid"].as_u64().unwrap() as u32));
}

#[test]
fn stop_kills_a_tree_that_ignores_sigterm_after_the_timeout() {
    let t = TestHome::new();
    let id = t.create("stub")["id"].as_str().unwrap().to_owned();
    t.ptest([
        "proc",
        "start",
        "stub",
        "--name",
        "deaf",
        "--",
        "sh",
        "-c",
        "trap '' TERM; setsid sh -c 'trap \"\" TERM; sleep 600' & sleep 600",
    ])
    .assert()
    .success();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(env_processes(&id).len() >= 3);
    t.ptest(["proc", "stop", "stub", "deaf", "--timeout", "1s"])
        .assert()
        .success();
    let s = service(&t, "stub", "deaf");
    assert_eq!(s["status"], "stopped");
    // Killed by SIGKILL: as the signal, or as 128+9 where a relay process reported it.
    assert!(s["signal"] == 9 || s["exit_code"] == 137, "{s}");
    // The daemon that left the process group went too.
    assert!(wait_env_empty(&id), "{:?}", env_processes(&id));
}

#[test]
fn on_failure_2_restarts_twice_then_stops_and_wait_returns_the_code() {
    let t = TestHome::new();
    t.create("flaky");
    t.ptest([
        "proc",
        "start",
        "flaky",
        "--name",
        "f",
        "--restart",
        "on-failure:2",
        "--",
        "sh",
        "-c",
        "echo run; exit 3",
    ])
    .assert()
    .success();
    t.ptest(["proc", "wait", "flaky", "f", "--timeout", "30s"])
        .assert()
        .code(3);
    let s = service(&t, "flaky", "f");
    assert_eq!(s["status"], "stopped");
    assert_eq!(s["restarts"], 2);
    assert_eq!(s["exit_code"], 3);
    // Three runs, logged after each CLI that started or waited had exited.
    assert_eq!(out(&t, &["proc", "logs", "flaky", "f"]), "run\nrun\nrun\n");
    let events = out(&t, &["events", "--env", "flaky", "--json"]);
    let stopped = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "process_stopped")
        .count();
    assert_eq!(stopped, 3, "{events}");
}

#[test]
fn a_killed_supervisor_leaves_a_record_that_gc_repairs() {
    let t = TestHome::new();
    let id = t.create("orphan")["id"].as_str().unwrap().to_owned();
    t.ptest([
        "proc", "start", "orphan", "--name", "s", "--", "sleep", "600",
    ])
    .assert()
    .success();
    let s = service(&t, "orphan", "s");
    let supervisor = s["supervisor_pid"].as_u64().unwrap() as u32;
    let pid = s["pid"].as_u64().unwrap() as u32;
    unsafe_kill(supervisor);
    assert!(wait_gone(supervisor));
    t.ptest(["gc"])
        .assert()
        .success()
        .stdout(contains("record repaired"));
    let s = service(&t, "orphan", "s");
    assert_eq!(s["status"], "error");
    assert!(s["note"].as_str().unwrap().contains("supervisor"), "{s}");
    assert!(wait_gone(pid));
    assert!(wait_env_empty(&id));
}

fn unsafe_kill(pid: u32) {
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
}

#[test]
fn env_rm_with_three_running_services_leaves_nothing() {
    let t = TestHome::new();
    let id = t.create("busy")["id"].as_str().unwrap().to_owned();
    let mut supervisors = Vec::new();
    for name in ["a", "b", "c"] {
        t.ptest([
            "proc",
            "start",
            "busy",
            "--name",
            name,
            "--restart",
            "always",
            "--",
            "sh",
            "-c",
            "setsid sh -c 'sleep 600' & sleep 600",
        ])
        .assert()
        .success();
        supervisors.push(
            service(&t, "busy", name)["supervisor_pid"]
                .as_u64()
                .unwrap() as u32,
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(env_processes(&id).len() >= 6);
    t.ptest(["env", "rm", "busy"]).assert().success();
    assert!(wait_env_empty(&id), "{:?}", env_processes(&id));
    for s in supervisors {
        assert!(wait_gone(s), "supervisor {s} still runs");
    }
}

#[test]
fn names_are_unique_while_running_and_unknown_names_exit_3() {
    let t = TestHome::new();
    t.create("names");
    t.ptest([
        "proc", "start", "names", "--name", "x", "--", "sleep", "600",
    ])
    .assert()
    .success();
    t.ptest([
        "proc", "start", "names", "--name", "x", "--", "sleep", "600",
    ])
    .assert()
    .code(3)
    .stderr(contains("already runs"));
    t.ptest(["proc", "stop", "names", "nope"]).assert().code(3);
    t.ptest([
        "proc",
        "start",
        "names",
        "--restart",
        "sometimes",
        "--",
        "true",
    ])
    .assert()
    .code(2);
    t.ptest(["ps"])
        .assert()
        .success()
        .stdout(contains("sleep 600"));
}
