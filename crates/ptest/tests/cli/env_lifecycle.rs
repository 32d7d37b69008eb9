//! Creating, listing, running commands in and removing environments through the CLI.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::fs;

use crate::support::{TestHome, env_processes, read_pid, wait_env_empty};
use predicates::str::contains;

#[test]
fn create_exec_rm_leaves_nothing_behind() {
    let t = TestHome::new();
    t.ptest(["env", "create", "demo"])
        .assert()
        .success()
        .stdout("demo\n");
    let env = &t.json(["env", "show", "demo"])["environment"];
    let root = std::path::PathBuf::from(env["root"].as_str().unwrap());
    assert_eq!(env["status"], "active");
    assert!(root.join("workspace").is_dir() && root.join(".ptest-env").is_file());

    t.ptest([
        "env",
        "exec",
        "demo",
        "--",
        "sh",
        "-c",
        "echo $PTEST_ENV_NAME > f; pwd",
    ])
    .assert()
    .success()
    .stdout(format!("{}\n", root.join("workspace").display()));
    assert_eq!(
        fs::read_to_string(root.join("workspace/f")).unwrap(),
        "demo\n"
    );
    assert_eq!(t.names(), ["demo"]);

    t.ptest(["env", "rm", "demo"]).assert().success();
    assert!(!root.exists());
    assert!(t.names().is_empty());
    assert_eq!(fs::read_dir(t.home().join("envs")).unwrap().count(), 0);
}

#[test]
fn commands_see_the_environment_variables_and_directories() {
    let t = TestHome::new();
    let env = t.create("vars");
    let root = env["root"].as_str().unwrap();
    let out = t.json([
        "env",
        "exec",
        "vars",
        "--env",
        "EXTRA=yes",
        "--",
        "sh",
        "-c",
        "echo $PTEST_ENV_ID $PTEST_ENV_NAME $PTEST_ENV_ROOT $HOME $TMPDIR $EXTRA",
    ]);
    let expected = format!(
        "{} vars {root} {root}/home {root}/tmp yes\n",
        env["id"].as_str().unwrap()
    );
    assert_eq!(out["stdout"], expected);
    assert_eq!(out["exit_code"], 0);
    assert_eq!(out["timed_out"], false);
}

#[test]
fn exit_codes_and_stderr_pass_through() {
    let t = TestHome::new();
    t.create("codes");
    t.ptest([
        "env",
        "exec",
        "codes",
        "--",
        "sh",
        "-c",
        "echo oops >&2; exit 7",
    ])
    .assert()
    .code(7)
    .stderr(contains("oops"));
    t.ptest(["env", "exec", "codes", "--", "sh", "-c", "kill -9 $$"])
        .assert()
        .code(128 + 9);
    let out = t.json([
        "env",
        "exec",
        "codes",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(out["stdout"], "out\n");
    assert_eq!(out["stderr"], "err\n");
}

#[test]
fn timeout_kills_the_whole_tree() {
    let t = TestHome::new();
    let env = t.create("slow");
    let id = env["id"].as_str().unwrap();
    t.ptest([
        "env",
        "exec",
        "slow",
        "--timeout",
        "500ms",
        "--",
        "sh",
        "-c",
        "sleep 300 & echo $! > child.pid; wait",
    ])
    .assert()
    .code(124)
    .stderr(contains("timed out"));
    assert!(
        wait_env_empty(id),
        "left running after the timeout: {:?}",
        env_processes(id)
    );
    let events = t
        .ptest(["events", "--env", "slow", "--json"])
        .assert()
        .success();
    let log = String::from_utf8_lossy(&events.get_output().stdout).into_owned();
    assert!(
        log.contains("\"process_stopping\"") && log.contains("\"timeout\""),
        "{log}"
    );
}

#[test]
fn leftover_background_processes_die_with_the_command() {
    let t = TestHome::new();
    let env = t.create("bg");
    let id = env["id"].as_str().unwrap();
    t.ptest([
        "env",
        "exec",
        "bg",
        "--",
        "sh",
        "-c",
        "sleep 300 & echo $! > bg.pid",
    ])
    .assert()
    .success();
    assert!(
        wait_env_empty(id),
        "outlived env exec: {:?}",
        env_processes(id)
    );
}

#[test]
fn rm_refuses_a_busy_environment_unless_forced() {
    let t = TestHome::new();
    let env = t.create("busy");
    let root = env["root"].as_str().unwrap().to_owned();
    let mut exec = std::process::Command::new(assert_cmd::cargo::cargo_bin("ptest"));
    exec.env("PTEST_HOME", t.home()).args([
        "env",
        "exec",
        "busy",
        "--",
        "sh",
        "-c",
        "echo $$ > me.pid; exec sleep 300",
    ]);
    let mut running = exec.spawn().unwrap();
    read_pid(&std::path::Path::new(&root).join("workspace/me.pid"));
    let id = env["id"].as_str().unwrap();

    t.ptest(["env", "rm", "busy"])
        .assert()
        .code(3)
        .stderr(contains("running process").and(contains("--force")));
    assert!(!env_processes(id).is_empty() && std::path::Path::new(&root).exists());

    t.ptest(["env", "rm", "--force", "busy"]).assert().success();
    assert!(
        wait_env_empty(id),
        "survived rm --force: {:?}",
        env_processes(id)
    );
    assert!(!std::path::Path::new(&root).exists());
    let status = running.wait().unwrap();
    assert!(!status.success());
}

use predicates::prelude::PredicateBooleanExt;

#[test]
fn rm_deletes_link_not_target() {
    let t = TestHome::new();
    let outside = t.dir.path().join("precious");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("data"), "keep me").unwrap();
    let env = t.create("links");
    let root = std::path::PathBuf::from(env["root"].as_str().unwrap());
    std::os::unix::fs::symlink(&outside, root.join("workspace/out")).unwrap();
    std::os::unix::fs::symlink(outside.join("data"), root.join("home/data")).unwrap();
    t.ptest(["env", "rm", "links"]).assert().success();
    assert!(!root.exists());
    assert_eq!(fs::read_to_string(outside.join("data")).unwrap(), "keep me");
}

#[test]
fn custom_path_is_used_and_removed() {
    let t = TestHome::new();
    let path = t.dir.path().join("mine/env");
    let env = t.json(["env", "create", "custom", "--path", path.to_str().unwrap()]);
    assert_eq!(env["root"], path.to_str().unwrap());
    assert!(path.join("workspace").is_dir());
    t.ptest(["env", "rm", "custom"]).assert().success();
    assert!(!path.exists());
    assert!(path.parent().unwrap().exists());
}

#[test]
fn labels_and_filters() {
    let t = TestHome::new();
    t.ptest(["env", "create", "a", "--label", "team=red"])
        .assert()
        .success();
    t.ptest(["env", "create", "b", "--label", "team=blue"])
        .assert()
        .success();
    let red = t.json(["env", "list", "--label", "team=red"]);
    assert_eq!(red.as_array().unwrap().len(), 1);
    assert_eq!(red[0]["name"], "a");
    assert_eq!(red[0]["spec"]["labels"]["team"], "red");
    assert_eq!(
        t.json(["env", "list", "--status", "active", "--level", "basic"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(
        t.json(["env", "list", "--status", "error"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let table = t.ptest(["env", "list"]).assert().success();
    let text = String::from_utf8_lossy(&table.get_output().stdout).into_owned();
    assert!(
        text.starts_with("NAME") && text.contains("a ") && text.contains("active"),
        "{text}"
    );
}

#[test]
fn rm_all_keeps_going_and_skips_never() {
    let t = TestHome::new();
    for n in ["one", "two"] {
        t.create(n);
    }
    t.ptest(["env", "create", "keeper", "--cleanup", "never"])
        .assert()
        .success();
    t.ptest(["env", "rm", "keeper"])
        .assert()
        .code(3)
        .stderr(contains("never"));
    t.ptest(["env", "rm", "--all"]).assert().success();
    assert_eq!(t.names(), ["keeper"]);
    t.ptest(["env", "rm", "--force", "keeper"])
        .assert()
        .success();
    assert!(t.names().is_empty());
}

#[test]
fn immediate_policy_removes_after_the_command() {
    let t = TestHome::new();
    let env = t.json(["env", "create", "once", "--cleanup", "immediate"]);
    t.ptest(["env", "exec", "once", "--", "true"])
        .assert()
        .success();
    assert!(t.names().is_empty());
    assert!(!std::path::Path::new(env["root"].as_str().unwrap()).exists());
}

#[test]
fn stats_and_validate_report_what_is_there() {
    let t = TestHome::new();
    let env = t.create("measured");
    let root = std::path::PathBuf::from(env["root"].as_str().unwrap());
    fs::write(root.join("workspace/blob"), vec![0u8; 10_000]).unwrap();
    let stats = t.json(["env", "stats", "measured"]);
    assert!(stats["disk_bytes"].as_u64().unwrap() >= 10_000);
    assert!(stats["files"].as_u64().unwrap() >= 7);
    t.ptest(["env", "validate", "measured"]).assert().success();
    fs::remove_dir(root.join("logs")).unwrap();
    t.ptest(["env", "validate", "measured"])
        .assert()
        .code(1)
        .stdout(contains("FAIL logs/"));
}

#[test]
fn stats_watch_keeps_reading() {
    use std::io::BufRead;
    let t = TestHome::new();
    t.create("watched");
    let mut watch = std::process::Command::new(assert_cmd::cargo::cargo_bin("ptest"))
        .env("PTEST_HOME", t.home())
        .args(["env", "stats", "watched", "--watch", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let reading: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert!(reading["files"].as_u64().unwrap() >= 6, "{reading}");
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
}
