//! Issue 15, item 3: a run has an owner. Plain `gc` removes the environments of a run whose
//! `ptest run` died (SIGKILL), holders and services included; `gc --shutdown` never touches a
//! live run's.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::{TestHome, env_processes};

/// A project whose one suite runs until killed, with a service beside it.
fn slow_project(t: &TestHome) {
    std::fs::write(
        t.cwd().join("ptest.toml"),
        "[[suite]]\nname = \"slow\"\nrun = \"touch $PTEST_PROJECT_DIR/../started-$PTEST_RUN_ID; sleep 300\"\n\n\
         [[suite.services]]\nname = \"svc\"\nrun = \"sleep 300\"\n",
    )
    .unwrap();
}

/// Starts `ptest run` in the background and waits until its suite runs; returns the child
/// and the suite's environment id.
fn start_run(t: &TestHome) -> (std::process::Child, String) {
    let mut child = t
        .std_command(["run", "--json=report.json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..1000 {
        let envs = t.json(["env", "list"]);
        if let Some(env) = envs.as_array().unwrap().first()
            && env["status"] == "active"
            && !env_processes(env["id"].as_str().unwrap()).is_empty()
        {
            // The service and the suite both run.
            if env_processes(env["id"].as_str().unwrap()).len() >= 3 {
                return (child, env["id"].as_str().unwrap().to_owned());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("the run's suite never started");
}

/// Whether the host can run sandboxed suites; prints why not and skips (fails under
/// PTEST_REQUIRE_ALL=1).
fn capable(t: &TestHome) -> bool {
    crate::support::runnable(
        (!crate::support::missing_features(t, &["namespaces", "cgroups"]).is_empty())
            .then(|| "run owner tests need namespaces and cgroups".to_owned()),
    )
}

#[test]
fn gc_removes_the_environments_of_a_run_whose_ptest_was_killed() {
    let t = TestHome::new();
    if !capable(&t) {
        return;
    }
    slow_project(&t);
    let (mut run, id) = start_run(&t);
    let labels = &t.json(["env", "list"])[0]["spec"]["labels"];
    assert!(
        labels["ptest.run.owner"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:", run.id())),
        "{labels}"
    );
    run.kill().unwrap();
    run.wait().unwrap();
    // Its environment outlives it, until gc.
    assert_eq!(t.names().len(), 1);
    let gc = t.json(["gc"]);
    assert!(
        gc.as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str() && r["action"] == "removed"),
        "{gc}"
    );
    assert!(t.names().is_empty());
    assert!(
        crate::support::wait_env_empty(&id),
        "the suite or service outlived gc"
    );
}

#[test]
fn gc_shutdown_leaves_a_live_runs_environments_alone() {
    let t = TestHome::new();
    if !capable(&t) {
        return;
    }
    slow_project(&t);
    let (mut run, id) = start_run(&t);
    t.ptest(["gc", "--shutdown"]).assert().success();
    assert_eq!(
        t.names().len(),
        1,
        "gc --shutdown removed a live run's environment"
    );
    assert!(
        env_processes(&id).len() >= 3,
        "the live run's suite or service was killed"
    );
    assert!(run.try_wait().unwrap().is_none(), "the run ended");
    run.kill().unwrap();
    run.wait().unwrap();
    t.ptest(["gc"]).assert().success();
    assert!(t.names().is_empty());
}
