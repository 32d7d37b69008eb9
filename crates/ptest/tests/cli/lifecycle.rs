//! Issue 19, item 1: an environment's lifecycle through the CLI — `env create --no-start`,
//! `env stop`, `env start`, `env pause`, `env resume` — each transition with its events and
//! its refusal (exit 3, the current state named) from the wrong state; what a stop keeps (root,
//! ports, record) and what it ends (processes); what a pause keeps (the processes, frozen).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;
use std::time::Duration;

use crate::support::TestHome;
use predicates::str::contains;

fn status(t: &TestHome, env: &str) -> String {
    t.json(["env", "show", env])["environment"]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `ptest ARGS` must exit 3 naming the state `state`.
fn refused(t: &TestHome, args: &[&str], state: &str) {
    t.ptest(args)
        .assert()
        .code(3)
        .stderr(contains(format!("is {state}, cannot")));
}

fn events(t: &TestHome, env: &str) -> Vec<String> {
    let out = t
        .ptest(["events", "--env", env, "--json"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            e["event"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The size of the file a ticking background process appends to, after `wait`.
fn ticks_after(file: &Path, wait: Duration) -> u64 {
    std::thread::sleep(wait);
    std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn stop_start_pause_resume_with_their_events_and_refusals() {
    let t = TestHome::new();
    let env = "life";
    let made = t.json(["env", "create", env, "--no-start", "--port", "http"]);
    assert_eq!(made["status"], "created", "{made}");
    refused(&t, &["env", "exec", env, "--", "true"], "created");
    refused(&t, &["env", "stop", env], "created");
    refused(&t, &["env", "pause", env], "created");

    t.ptest(["env", "start", env])
        .assert()
        .success()
        .stdout("life active\n");
    let port = t.json(["env", "show", env])["environment"]["ports"]["http"].clone();
    // A background process that ticks into a file of the root.
    let root = made["root"].as_str().unwrap().to_owned();
    let ticks = Path::new(&root).join("tmp/ticks");
    t.ptest([
        "proc",
        "start",
        env,
        "--name",
        "tick",
        "--",
        "sh",
        "-c",
        r#"while :; do echo x >> "$PTEST_ENV_ROOT/tmp/ticks"; sleep 0.02; done"#,
    ])
    .assert()
    .success();
    assert!(ticks_after(&ticks, Duration::from_millis(200)) > 0);

    // Pause: the process is frozen, alive, and nothing else runs.
    t.ptest(["env", "pause", env])
        .assert()
        .success()
        .stdout("life paused\n");
    let frozen_at = ticks_after(&ticks, Duration::from_millis(100));
    assert_eq!(
        ticks_after(&ticks, Duration::from_millis(400)),
        frozen_at,
        "still ticking while paused"
    );
    let pid = t.json(["proc", "list", env])[0]["pid"].as_u64().unwrap();
    assert!(
        crate::support::alive(pid as u32),
        "the paused process is gone"
    );
    refused(&t, &["env", "exec", env, "--", "true"], "paused");
    refused(&t, &["env", "pause", env], "paused");
    t.ptest(["env", "resume", env])
        .assert()
        .success()
        .stdout("life active\n");
    assert!(
        ticks_after(&ticks, Duration::from_millis(300)) > frozen_at,
        "not ticking after resume"
    );
    refused(&t, &["env", "resume", env], "active");

    // Stop: processes end, the root, the port and the record stay; validate finds nothing
    // broken in a stopped environment.
    t.ptest(["env", "stop", env])
        .assert()
        .success()
        .stdout("life inactive\n");
    assert!(
        crate::support::wait_gone(pid as u32),
        "the process outlived env stop"
    );
    let shown = t.json(["env", "show", env])["environment"].clone();
    assert_eq!(shown["ports"]["http"], port, "{shown}");
    assert!(
        !shown["deactivated_at"].is_null() && !shown["activated_at"].is_null(),
        "{shown}"
    );
    assert!(Path::new(&root).join("tmp/ticks").exists());
    refused(&t, &["env", "exec", env, "--", "true"], "inactive");
    refused(&t, &["env", "stop", env], "inactive");
    t.ptest(["env", "validate", env]).assert().success();

    // Start: the background process runs again.
    t.ptest(["env", "start", env]).assert().success();
    let services = t.json(["proc", "list", env]);
    let running = services
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "tick" && s["status"] == "running")
        .count();
    assert_eq!(running, 1, "{services}");
    t.ptest(["env", "exec", env, "--", "true"])
        .assert()
        .success();

    let seen = events(&t, env);
    for wanted in [
        "environment_created",
        "environment_activated",
        "environment_paused",
        "environment_resumed",
        "environment_deactivated",
    ] {
        assert!(seen.iter().any(|e| e == wanted), "no {wanted} in {seen:?}");
    }
    assert_eq!(
        seen.iter()
            .filter(|e| *e == "environment_activated")
            .count(),
        2
    );

    // A paused environment can still be removed.
    t.ptest(["env", "pause", env]).assert().success();
    t.ptest(["env", "rm", "--force", env]).assert().success();
    assert!(t.names().is_empty());
    assert!(!Path::new(&root).exists());
    assert_eq!(status_count(&t), 0);
}

fn status_count(t: &TestHome) -> usize {
    t.names().len()
}

#[test]
fn a_container_stops_starts_pauses_and_resumes() {
    let t = TestHome::new();
    let Some(context) = ptest_testkit::busybox::context(t.dir.path()) else {
        return;
    };
    let env = "box";
    t.json(["env", "create", env, "--build", context.to_str().unwrap()]);
    t.ptest(["env", "pause", env])
        .assert()
        .success()
        .stdout("box paused\n");
    refused(&t, &["env", "exec", env, "--", "true"], "paused");
    t.ptest(["env", "resume", env]).assert().success();
    t.ptest(["env", "stop", env])
        .assert()
        .success()
        .stdout("box inactive\n");
    assert_eq!(status(&t, env), "inactive");
    t.ptest(["env", "start", env])
        .assert()
        .success()
        .stdout("box active\n");
    t.ptest(["env", "exec", env, "--", "true"])
        .assert()
        .success();
    t.ptest(["env", "rm", env]).assert().success();
}

/// Issue 19, item 5: `env exec --cwd` (relative to the workspace, refused out of the root),
/// `env list --path`, `ptest status`.
#[test]
fn exec_cwd_list_path_and_status() {
    let t = TestHome::new();
    let made = t.json(["env", "create", "here"]);
    let root = made["root"].as_str().unwrap().to_owned();
    t.json(["env", "create", "there", "--no-start"]);
    std::fs::create_dir_all(Path::new(&root).join("workspace/sub")).unwrap();
    t.ptest(["env", "exec", "here", "--cwd", "sub", "--", "pwd"])
        .assert()
        .success()
        .stdout(format!("{root}/workspace/sub\n"));
    t.ptest(["env", "exec", "here", "--cwd", "../logs", "--", "pwd"])
        .assert()
        .success()
        .stdout(format!("{root}/logs\n"));
    for outside in ["../..", "/etc", "sub/../../../x"] {
        t.ptest(["env", "exec", "here", "--cwd", outside, "--", "pwd"])
            .assert()
            .code(2)
            .stderr(contains("leads out of environment here's root"));
    }
    let listed = t.json(["env", "list", "--path", &root]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["here"]);
    let status = t.json(["status"]);
    assert_eq!(status["environments"], 2, "{status}");
    assert_eq!(status["by_level"]["basic"]["active"], 1, "{status}");
    assert_eq!(status["by_level"]["basic"]["created"], 1, "{status}");
    assert_eq!(status["holders"]["gone"], 0, "{status}");
}
