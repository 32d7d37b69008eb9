//! Issue 20, deliverable 3 (its second half): container services — `[[suite.services]]` with
//! `image` or `build` run in containers of their own, reached from the suite at
//! `NAME:$PTEST_PORT_<NAME>`, and gone when the suite ends (or, after a killed run, by `gc`).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;

use crate::support::TestHome;

/// The environment names of the containers Docker has for `t`'s home (`docker ps -a`, by
/// the labels ptest puts on them).
fn containers(t: &TestHome) -> Vec<String> {
    let home = format!("label=ptest.home={}", ptest_core::Home::at(t.home()).hash());
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &home,
            "--format",
            "{{.Label \"ptest.name\"}}",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A project in `t`'s temp dir with the busybox image's build context in `image/` and, in
/// `server/`, the same image running `busybox httpd` on port 8080 by itself (its `CMD`),
/// serving `from-the-image`; `None` (skipped) without Docker or busybox.
fn project(t: &TestHome) -> Option<std::path::PathBuf> {
    let dir = t.dir.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    let image = ptest_testkit::busybox::context(&dir)?;
    let server = dir.join("server");
    std::fs::create_dir(&server).unwrap();
    ptest_testkit::busybox::write_context(&server).unwrap();
    let dockerfile = std::fs::read_to_string(server.join("Dockerfile")).unwrap();
    let dockerfile = dockerfile.replace("CMD [\"sh\"]", "")
        + "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"mkdir /www && echo from-the-image > /www/index.html\"]\n\
           CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";
    std::fs::write(server.join("Dockerfile"), dockerfile).unwrap();
    assert!(image.is_dir());
    Some(dir)
}

fn run_json(t: &TestHome, dir: &Path) -> serde_json::Value {
    let out = t
        .ptest(["run", "--project", dir.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn a_sandboxed_suite_reaches_its_container_service_by_name_and_port() {
    let t = TestHome::new();
    let Some(dir) = project(&t) else { return };
    // The suite: a pod of its own (security medium, loopback only: no route to Docker's
    // networks); the service: the busybox image running httpd on the container's port 8080.
    std::fs::write(
        dir.join("ptest.toml"),
        "[[suite]]\nname = \"client\"\n\
         run = \"busybox wget -q -O - http://web:$PTEST_PORT_WEB/index.html && \
         busybox wget -q -O - http://127.0.0.1:$PTEST_PORT_WEB_8080/index.html\"\n\n\
         [[suite.services]]\nname = \"web\"\nbuild = \"image\"\n\
         run = \"sh -c 'mkdir -p /tmp/www && echo hello-from-the-service > /tmp/www/index.html \
         && exec httpd -f -p 8080 -h /tmp/www'\"\nports = [8080]\nready_port = \"8080\"\n",
    )
    .unwrap();
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    let report = run_json(&t, &dir);
    let suite = &report["suites"][0];
    assert_eq!(suite["status"], "passed", "{report}");
    assert_eq!(
        suite["stdout_tail"], "hello-from-the-service\nhello-from-the-service\n",
        "{report}"
    );
    // The name went into the suite's own view of /etc/hosts, not the host's.
    assert_eq!(std::fs::read_to_string("/etc/hosts").unwrap(), hosts);
    // Nothing is left: no environment, no container.
    assert!(t.names().is_empty(), "{:?}", t.names());
    assert!(containers(&t).is_empty(), "{:?}", containers(&t));
}

#[test]
fn a_container_suite_reaches_a_service_running_its_images_own_command() {
    let t = TestHome::new();
    let Some(dir) = project(&t) else { return };
    // No `run`: the service runs what its image runs by itself (httpd, its CMD).
    std::fs::write(
        dir.join("ptest.toml"),
        "[env.box]\nbuild = \"image\"\n\n\
         [[suite]]\nname = \"inbox\"\nenv = \"box\"\n\
         run = \"wget -q -O - http://web:$PTEST_PORT_WEB/\"\n\n\
         [[suite.services]]\nname = \"web\"\nbuild = \"server\"\nports = [8080]\n\
         ready_http = \"http://127.0.0.1:8080/\"\n",
    )
    .unwrap();
    let report = run_json(&t, &dir);
    let suite = &report["suites"][0];
    assert_eq!(suite["status"], "passed", "{report}");
    assert_eq!(suite["stdout_tail"], "from-the-image\n", "{report}");
    assert!(t.names().is_empty(), "{:?}", t.names());
    assert!(containers(&t).is_empty(), "{:?}", containers(&t));
}

#[test]
fn a_container_service_that_is_never_ready_errors_its_suite_and_goes() {
    let t = TestHome::new();
    let Some(dir) = project(&t) else { return };
    std::fs::write(
        dir.join("ptest.toml"),
        "[[suite]]\nname = \"s\"\nrun = \"true\"\n\n\
         [[suite.services]]\nname = \"mute\"\nbuild = \"image\"\n\
         run = \"sh -c 'echo starting; exec sleep 100'\"\nports = [9]\nready_port = \"9\"\n\
         ready_timeout = \"1s\"\n",
    )
    .unwrap();
    let out = t
        .ptest(["run", "--project", dir.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let suite = &report["suites"][0];
    assert_eq!(suite["status"], "error", "{report}");
    let reason = suite["reason"].as_str().unwrap();
    assert!(
        reason.contains("service \"mute\"") && reason.contains("starting"),
        "{reason}"
    );
    assert!(t.names().is_empty(), "{:?}", t.names());
    assert!(containers(&t).is_empty(), "{:?}", containers(&t));
}

#[test]
fn gc_removes_the_service_container_of_a_killed_run() {
    let t = TestHome::new();
    let Some(dir) = project(&t) else { return };
    let marker = t.dir.path().join("started");
    std::fs::write(
        dir.join("ptest.toml"),
        format!(
            "[env.low]\nsecurity = \"low\"\n\n\
             [[suite]]\nname = \"s\"\nenv = \"low\"\nrun = \"touch {} && sleep 600\"\n\n\
             [[suite.services]]\nname = \"web\"\nbuild = \"server\"\nports = [8080]\n\
             ready_port = \"8080\"\n",
            marker.display()
        ),
    )
    .unwrap();
    let mut run = t
        .std_command(["run", "--project", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = ptest_testkit::wait_until(std::time::Duration::from_secs(60), || marker.exists());
    assert!(started, "the suite never started");
    let running = containers(&t);
    assert!(
        running.len() == 1 && running[0].ends_with("-s-web"),
        "{running:?}"
    );
    run.kill().unwrap();
    run.wait().unwrap();
    t.ptest(["gc"]).assert().success();
    assert!(t.names().is_empty(), "{:?}", t.names());
    assert!(containers(&t).is_empty(), "{:?}", containers(&t));
}
