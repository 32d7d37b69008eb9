//! `ptest gc`, `ptest events`, `ptest config`, `ptest doctor`, completions.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::TestHome;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

#[test]
fn gc_repairs_a_deleted_root() {
    let t = TestHome::new();
    let env = t.create("vanishing");
    t.create("intact");
    fs::remove_dir_all(env["root"].as_str().unwrap()).unwrap();
    let report = t.json(["gc"]);
    assert_eq!(report.as_array().unwrap().len(), 1);
    assert_eq!(report[0]["name"], "vanishing");
    assert!(report[0]["reason"].as_str().unwrap().contains("vanished"));
    assert_eq!(report[0]["error"], serde_json::Value::Null);
    assert_eq!(t.names(), ["intact"]);
}

#[test]
fn gc_removes_expired_scheduled_environments_only() {
    let t = TestHome::new();
    t.ptest([
        "env",
        "create",
        "short",
        "--cleanup",
        "scheduled",
        "--ttl",
        "100ms",
    ])
    .assert()
    .success();
    t.ptest([
        "env",
        "create",
        "long",
        "--cleanup",
        "scheduled",
        "--ttl",
        "1h",
    ])
    .assert()
    .success();
    t.create("manual");
    std::thread::sleep(std::time::Duration::from_millis(300));
    t.ptest(["gc"])
        .assert()
        .success()
        .stdout(contains("removed short (time to live expired)"));
    assert_eq!(t.names(), ["long", "manual"]);
    let show = t.json(["env", "show", "long"]);
    assert!(show["environment"]["expires_at"].is_string());
}

#[test]
fn gc_shutdown_removes_on_shutdown_environments() {
    let t = TestHome::new();
    t.ptest(["env", "create", "session", "--cleanup", "on_shutdown"])
        .assert()
        .success();
    t.ptest(["gc"])
        .assert()
        .success()
        .stdout(contains("nothing to collect"));
    t.ptest(["gc", "--shutdown"])
        .assert()
        .success()
        .stdout(contains("removed session"));
    assert!(t.names().is_empty());
}

#[test]
fn events_record_the_lifecycle_in_order() {
    let t = TestHome::new();
    t.create("logged");
    t.ptest(["env", "exec", "logged", "--", "sh", "-c", "exit 3"])
        .assert()
        .code(3);
    t.ptest(["env", "rm", "logged"]).assert().success();
    let out = t
        .ptest(["events", "--env", "logged", "--json"])
        .assert()
        .success();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "environment_creating",
            "environment_created",
            "environment_activating",
            "environment_activated",
            "process_starting",
            "process_started",
            "process_stopped",
            "environment_deactivating",
            "environment_deactivated",
            "environment_cleanup_start",
            "environment_cleanup_complete",
        ]
    );
    assert_eq!(events[6]["details"]["exit_code"], 3);
    assert!(
        events
            .iter()
            .all(|e| e["env_name"] == "logged" && e["time"].is_string())
    );
}

#[test]
fn events_follow_prints_new_events() {
    let t = TestHome::new();
    let mut follow = Command::new(assert_cmd::cargo::cargo_bin("ptest"))
        .env("PTEST_HOME", t.home())
        .args(["events", "--follow", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    t.create("followed");
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["event"], "environment_creating");
    assert_eq!(first["env_name"], "followed");
    follow.kill().unwrap();
    follow.wait().unwrap();
}

#[test]
fn config_layers_and_origins() {
    let t = TestHome::new();
    let user = t.dir.path().join("xdg-config/ptest");
    fs::create_dir_all(&user).unwrap();
    fs::write(user.join("config.toml"), "max_environments = 50\n").unwrap();
    fs::write(
        t.cwd().join("ptest.toml"),
        "[defaults]\nmax_environments = 3\n\n[defaults.level.basic]\ncleanup = \"never\"\n",
    )
    .unwrap();
    let entries = t.json(["config", "show"]);
    let find = |k: &str| {
        entries
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == k)
            .unwrap()
            .clone()
    };
    assert_eq!(find("max_environments")["value"], 3);
    assert_eq!(find("max_environments")["origin"]["kind"], "project_file");
    assert_eq!(find("level.basic.cleanup")["value"], "never");
    assert_eq!(find("level.docker.cleanup")["origin"]["kind"], "default");

    let with_env = t
        .ptest(["config", "show", "--json"])
        .env("PTEST_MAX_ENVIRONMENTS", "9")
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&with_env.get_output().stdout).unwrap();
    let max = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "max_environments")
        .unwrap();
    assert_eq!(
        (max["value"].as_i64(), max["origin"]["var"].as_str()),
        (Some(9), Some("PTEST_MAX_ENVIRONMENTS"))
    );

    let flagged = t
        .ptest(["--config", "max_environments=4", "config", "show", "--json"])
        .env("PTEST_MAX_ENVIRONMENTS", "9")
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&flagged.get_output().stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["key"] == "max_environments"
                && e["value"] == 4
                && e["origin"]["kind"] == "flag")
    );

    // The project default applies to new environments.
    t.ptest(["env", "create", "kept"]).assert().success();
    assert_eq!(
        t.json(["env", "show", "kept"])["environment"]["spec"]["cleanup"],
        "never"
    );
}

#[test]
fn config_errors_name_file_line_and_column() {
    let t = TestHome::new();
    fs::write(
        t.cwd().join("ptest.toml"),
        "[defaults]\nmax_environments = 5\nmax_enviroments = 6\n",
    )
    .unwrap();
    t.ptest(["env", "list"])
        .assert()
        .code(2)
        .stderr(contains("ptest.toml:3:1").and(contains("unknown field `max_enviroments`")));
    t.ptest(["config", "validate"])
        .assert()
        .code(2)
        .stderr(contains("ptest.toml:3:1"));
    fs::write(
        t.cwd().join("ptest.toml"),
        "[defaults]\nmax_environments = \"many\"\n",
    )
    .unwrap();
    t.ptest(["config", "validate", "ptest.toml"])
        .assert()
        .code(2)
        .stderr(contains("ptest.toml:2:20").and(contains("invalid type")));
    fs::remove_file(t.cwd().join("ptest.toml")).unwrap();
    t.ptest(["env", "list"])
        .env("PTEST_MAX_ENVIRONMENTS", "lots")
        .assert()
        .code(2)
        .stderr(contains("PTEST_MAX_ENVIRONMENTS=lots"));
    t.ptest(["--config", "nope=1", "env", "list"])
        .assert()
        .code(2)
        .stderr(contains("unknown key \"nope\""));
}

#[test]
fn doctor_reports_every_level() {
    let t = TestHome::new();
    let report = t.json(["doctor"]);
    let levels = report["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 4);
    assert_eq!(levels[0]["level"], "basic");
    assert_eq!(levels[0]["available"], true);
    assert_eq!(levels[3]["available"], false);
    assert!(report["schema_version"].as_u64().unwrap() >= 1);
}

#[test]
fn completions_are_generated() {
    let t = TestHome::new();
    t.ptest(["completions", "bash"])
        .assert()
        .success()
        .stdout(contains("_ptest"));
}

/// `--version` and `-V` alone are answered before clap builds the command line (issue 21),
/// as clap answers them elsewhere on it.
#[test]
fn the_version_is_the_same_however_it_is_asked_for() {
    let t = TestHome::new();
    let expected = format!("ptest {}\n", env!("CARGO_PKG_VERSION"));
    for args in [
        &["--version"][..],
        &["-V"],
        &["--version", "--help"],
        &["-V", "env"],
    ] {
        t.ptest(args).assert().success().stdout(expected.clone());
    }
}

/// A listing whose reader has gone (`ptest events | head`) ends quietly, without a panic.
#[test]
fn a_listing_ends_quietly_when_its_reader_goes() {
    use std::os::unix::process::ExitStatusExt;
    let t = TestHome::new();
    t.create("piped");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(assert_cmd::cargo::cargo_bin("ptest"))
        .arg("events")
        .env("PTEST_HOME", t.home())
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{out:?}");
}
