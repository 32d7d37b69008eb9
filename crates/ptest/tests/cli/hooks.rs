//! Issue 19, item 2: `[[hooks]]` — a command run for the events it names, by whichever ptest
//! process records the event (here a background process's supervisor, a process of its own),
//! with the event on stdin and in `PTEST_EVENT_*`; a failing or slow hook is recorded as
//! `hook_failed` and holds its caller no longer than its timeout.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::{Duration, Instant};

use crate::support::TestHome;

fn events(t: &TestHome) -> Vec<serde_json::Value> {
    let out = t.ptest(["events", "--json"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn hooks_run_where_the_event_is_recorded_and_their_failures_are_events() {
    let t = TestHome::new();
    let out = t.dir.path().join("hooked");
    std::fs::create_dir_all(&out).unwrap();
    let config = t.dir.path().join("xdg-config/ptest");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.toml"),
        format!(
            r#"
[[hooks]]
on = ["process_stopped"]
env = "h"
run = 'cat > "{out}/$PTEST_EVENT_ID.json"; echo "$PTEST_EVENT $PTEST_EVENT_ENV" > "{out}/$PTEST_EVENT_ID.vars"'

[[hooks]]
on = ["process_stopped"]
label = "team=qa"
run = "exit 5"

[[hooks]]
on = ["environment_created"]
run = "sleep 30"
timeout = "300ms"
"#,
            out = out.display()
        ),
    )
    .unwrap();

    let started = Instant::now();
    t.ptest(["env", "create", "h", "--label", "team=qa"])
        .assert()
        .success();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the slow hook held env create past its timeout"
    );
    // The supervisor of a background process records its end: the hook runs there.
    t.ptest([
        "proc",
        "start",
        "h",
        "--name",
        "x",
        "--",
        "sh",
        "-c",
        "sleep 1; exit 3",
    ])
    .assert()
    .success();
    // The hook writes the `.vars` file once the event's JSON is whole: wait for that one.
    let vars_files = || -> Vec<_> {
        std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "vars"))
            .filter(|p| std::fs::read_to_string(p).is_ok_and(|v| v.ends_with('\n')))
            .collect()
    };
    ptest_testkit::wait_until(Duration::from_secs(20), || !vars_files().is_empty());
    let written = vars_files();
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(
        std::fs::read_to_string(&written[0]).unwrap(),
        "process_stopped h\n"
    );
    let event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(written[0].with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(event["event"], "process_stopped", "{event}");
    assert_eq!(event["env_name"], "h");

    // The supervisor runs the hooks in order: the failing one's event comes after the
    // first hook's files.
    let exit_5_failed = |all: &[serde_json::Value]| {
        all.iter()
            .any(|e| e["event"] == "hook_failed" && e["details"]["hook"] == "exit 5")
    };
    ptest_testkit::wait_until(Duration::from_secs(20), || exit_5_failed(&events(&t)));
    let all = events(&t);
    let failed: Vec<&serde_json::Value> =
        all.iter().filter(|e| e["event"] == "hook_failed").collect();
    assert!(
        failed.iter().any(|e| e["details"]["hook"] == "sleep 30"
            && e["details"]["error"].as_str().unwrap().contains("timeout")),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|e| e["details"]["hook"] == "exit 5"
            && e["details"]["error"].as_str().unwrap().contains("5")),
        "{failed:?}"
    );
    t.ptest(["env", "rm", "--force", "h"]).assert().success();
}
