//! Issue 15, item 2, at the docker level: `env create` and `env exec` of a container
//! environment killed at spread-out moments leave nothing that `ptest gc` does not take: no
//! record, no root, no container labelled with the environment, no command running.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;

/// Containers labelled `ptest.env=<id>`, running or not.
fn containers(id: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=ptest.env={id}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn docker_creates_and_execs_killed_at_random_moments_leave_nothing_after_gc() {
    let t = TestHome::new();
    let Some(context) = ptest_testkit::busybox::context(t.dir.path()) else {
        return;
    };
    // The image once, so that every create below is only the container's.
    t.ptest([
        "env",
        "create",
        "warm",
        "--build",
        context.to_str().unwrap(),
    ])
    .assert()
    .success();
    t.ptest(["env", "rm", "warm"]).assert().success();
    let mut seen: Vec<(String, std::path::PathBuf)> = Vec::new();
    for (i, delay_ms) in [5u64, 20, 50, 90, 150, 250].iter().enumerate() {
        let name = format!("d{i}");
        let mut create = t
            .std_command(["env", "create", &name, "--build", context.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(*delay_ms));
        let _ = create.kill();
        create.wait().unwrap();
        let envs = t.json(["env", "list"]);
        for env in envs.as_array().unwrap() {
            let id = env["id"].as_str().unwrap().to_owned();
            if !seen.iter().any(|(s, _)| *s == id) {
                seen.push((id, env["root"].as_str().unwrap().into()));
            }
        }
        // Where the create finished, an exec killed after the same delay.
        if envs
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == name.as_str() && e["status"] == "active")
        {
            let mut exec = t
                .std_command([
                    "env",
                    "exec",
                    &name,
                    "--",
                    "sh",
                    "-c",
                    "sleep 300 & sleep 300",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(*delay_ms));
            let _ = exec.kill();
            exec.wait().unwrap();
        }
    }
    assert!(!seen.is_empty(), "no create got as far as a record");
    // gc takes what the killed creates abandoned; the creates that finished are removed the
    // ordinary way (their killed execs must not stop that).
    t.ptest(["gc"]).assert().success();
    t.ptest(["env", "rm", "--all", "--force"])
        .assert()
        .success();
    t.ptest(["gc"]).assert().success();
    assert!(t.names().is_empty(), "records left: {:?}", t.names());
    for (id, root) in &seen {
        assert!(containers(id).is_empty(), "{id}: a container is left");
        assert!(!root.exists(), "{id}: its root is left");
        assert!(
            crate::support::env_processes(id).is_empty(),
            "{id}: a process is left"
        );
    }
}
