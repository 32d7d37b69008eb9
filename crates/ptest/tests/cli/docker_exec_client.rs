//! Issue 15, item 4: a docker `env exec` dies with its client. Docker has no call that kills
//! an exec, so a SIGKILLed `ptest env exec` used to leave its command running in the
//! container, its record `running`, and `env rm` refusing. At each security level: the
//! command (a shell and two sleeps, one in the background) runs, the client is SIGKILLed, and
//! within a bounded poll nothing of the command is left, in the container or on the host, and
//! `env rm` without `--force` succeeds.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::{Duration, Instant};

use crate::support::TestHome;

/// `ptest ARGS...` started in the background.
fn background_ptest(t: &TestHome, args: &[&str]) -> std::process::Child {
    t.std_command(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ptest starts")
}

/// Host pids of the `sleep 300`s running in environment `id`.
fn sleeps(id: &str) -> Vec<u32> {
    crate::support::env_processes(id)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x00300\x00")
        })
        .collect()
}

/// `docker top`'s lines for `container` that show a `sleep 300`.
fn sleeps_in_container(container: &str) -> usize {
    let out = std::process::Command::new("docker")
        .args(["top", container])
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("sleep 300"))
        .count()
}

/// Polls `done` for up to 10 s.
fn within_10s(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// Creates an environment at security `level`, runs two sleeps in it through a background
/// `ptest env exec`, SIGKILLs that ptest, and asserts that the sleeps die and `env rm`
/// succeeds without `--force`.
fn exec_dies_with_its_client(level: &str) {
    let t = TestHome::new();
    let Some(context) = ptest_testkit::busybox::context(t.dir.path()) else {
        return;
    };
    let env = t.json([
        "env",
        "create",
        "box",
        "--security",
        level,
        "--build",
        context.to_str().unwrap(),
    ]);
    let id = env["id"].as_str().unwrap().to_owned();
    let shown = &t.json(["env", "show", "box"])["environment"];
    let container = shown["details"]["container"].as_str().unwrap().to_owned();

    let mut client = background_ptest(
        &t,
        &[
            "env",
            "exec",
            "box",
            "--",
            "sh",
            "-c",
            "sleep 300 & sleep 300",
        ],
    );
    assert!(
        within_10s(|| sleeps(&id).len() == 2),
        "{level}: the two sleeps never ran (found {:?})",
        sleeps(&id)
    );
    assert_eq!(sleeps_in_container(&container), 2, "{level}");
    // The exec is recorded once its engine says the command started, which can be after the
    // sleeps are seen running.
    let recorded = || t.json(["env", "show", "box"])["processes"].clone();
    assert!(
        within_10s(|| recorded().as_array().is_some_and(|p| p.len() == 1)),
        "{level}: {}",
        recorded()
    );

    client.kill().unwrap(); // SIGKILL
    client.wait().unwrap();
    assert!(
        within_10s(|| sleeps(&id).is_empty() && sleeps_in_container(&container) == 0),
        "{level}: sleeps survived their client: {:?} on the host, {} in the container",
        sleeps(&id),
        sleeps_in_container(&container)
    );
    // The record was `running`; its process is gone, so `env show` (which corrects the
    // records of vanished processes) lists none.
    let processes = &t.json(["env", "show", "box"])["processes"];
    assert_eq!(
        processes.as_array().unwrap().len(),
        0,
        "{level}: {processes}"
    );
    t.ptest(["env", "rm", "box"]).assert().success();
}

#[test]
fn exec_dies_with_its_client_at_low() {
    exec_dies_with_its_client("low");
}

#[test]
fn exec_dies_with_its_client_at_medium() {
    exec_dies_with_its_client("medium");
}

#[test]
fn exec_dies_with_its_client_at_high() {
    exec_dies_with_its_client("high");
}

#[test]
fn exec_dies_with_its_client_at_strict() {
    exec_dies_with_its_client("strict");
}

/// The watchdog is disarmed, not fired, when the command ends: its output and exit code come
/// back, and a background job that outlives it (its output sent elsewhere) still runs.
#[test]
fn a_finished_exec_returns_its_result_and_kills_nothing() {
    let t = TestHome::new();
    let Some(context) = ptest_testkit::busybox::context(t.dir.path()) else {
        return;
    };
    let env = t.json(["env", "create", "box", "--build", context.to_str().unwrap()]);
    let id = env["id"].as_str().unwrap().to_owned();
    let result = t.exec_json(
        "box",
        &[
            "sh",
            "-c",
            "setsid sleep 300 >/dev/null 2>&1 </dev/null & echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(result["exit_code"], 3, "{result}");
    assert_eq!(result["stdout"], "out\n", "{result}");
    assert_eq!(result["stderr"], "err\n", "{result}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sleeps(&id).len(), 1, "the detached sleep was killed");
    t.ptest(["env", "rm", "--force", "box"]).assert().success();
}
