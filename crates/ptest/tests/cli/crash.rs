//! Issue 15, item 2: a `ptest` killed at any step of creating or removing an environment
//! leaves nothing that `ptest gc` does not take: no record, no root, no tmpfs mount, no
//! cgroup, no holder. Each step is a failpoint (compiled into the test build of the binary
//! only, `PTEST_FAILPOINT=<step>`), and a bounded random-kill test covers what lies between.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;

use crate::support::TestHome;

const CREATE_STEPS: [&str; 7] = [
    "create.recorded",
    "create.root_dir",
    "create.tmpfs",
    "create.engine_created",
    "create.cgroup",
    "create.holder",
    "create.activated",
];
const RM_STEPS: [&str; 3] = ["rm.deactivating", "rm.deactivated", "rm.cleaned"];

fn capable(t: &TestHome) -> bool {
    let missing = crate::support::missing_features(t, &["namespaces", "cgroups", "disk quota"]);
    crate::support::runnable(
        (!missing.is_empty()).then(|| format!("crash tests need: {}", missing.join(", "))),
    )
}

/// Everything of environment `id` (root at `root`) still on the host.
fn leftovers(id: &str, root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if root.exists() {
        out.push(format!("root {}", root.display()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    if mounts.contains(&format!("ptest-env-{id}")) {
        out.push("its tmpfs".into());
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let group = hierarchy.path().join(format!("ptest/env-{id}"));
        if group.exists() {
            out.push(format!("cgroup {}", group.display()));
        }
    }
    let needle = format!("env-{id}");
    for pid in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cg) = std::fs::read_to_string(pid.path().join("cgroup"))
            && cg.contains(&needle)
        {
            out.push(format!("process {}", pid.file_name().to_string_lossy()));
        }
    }
    out
}

/// `env create` with `args`, killed at `step`; returns the id and root it recorded. `None`
/// when the step is not on this create's way (no tmpfs without `--disk`): it then finished,
/// and is removed.
fn killed_create(t: &TestHome, step: &str, args: &[&str]) -> Option<(String, std::path::PathBuf)> {
    let mut argv = vec!["env", "create", "victim"];
    argv.extend_from_slice(args);
    let out = t
        .ptest(&argv)
        .env("PTEST_FAILPOINT", step)
        .output()
        .unwrap();
    if out.status.success() {
        t.ptest(["env", "rm", "--force", "victim"])
            .assert()
            .success();
        return None;
    }
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "{step}: not killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let envs = t.json(["env", "list"]);
    let env = envs.as_array().unwrap().first()?;
    Some((
        env["id"].as_str().unwrap().to_owned(),
        env["root"].as_str().unwrap().into(),
    ))
}

/// `gc` leaves no record and nothing of `id` on the host.
fn gc_leaves_nothing(t: &TestHome, what: &str, id: &str, root: &Path) {
    t.ptest(["gc"]).assert().success();
    assert!(t.names().is_empty(), "{what}: a record is left");
    let left = leftovers(id, root);
    assert!(left.is_empty(), "{what}: left {left:?}");
}

#[test]
fn a_create_killed_at_any_step_leaves_nothing_after_gc() {
    let t = TestHome::new();
    if !capable(&t) {
        return;
    }
    for args in [
        &["--disk", "8M"][..],
        &["--network", "loopback", "--memory", "64M"],
    ] {
        for step in CREATE_STEPS {
            let what = format!("{step} {args:?}");
            let Some((id, root)) = killed_create(&t, step, args) else {
                continue;
            };
            gc_leaves_nothing(&t, &what, &id, &root);
        }
    }
}

#[test]
fn an_rm_killed_at_any_step_leaves_nothing_after_gc() {
    let t = TestHome::new();
    if !capable(&t) {
        return;
    }
    for step in RM_STEPS {
        let env = t.json(["env", "create", "victim", "--disk", "8M"]);
        let (id, root) = (
            env["id"].as_str().unwrap().to_owned(),
            std::path::PathBuf::from(env["root"].as_str().unwrap()),
        );
        t.ptest([
            "proc", "start", "victim", "--name", "d", "--", "sleep", "300",
        ])
        .assert()
        .success();
        let out = t
            .ptest(["env", "rm", "--force", "victim"])
            .env("PTEST_FAILPOINT", step)
            .output()
            .unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "{step}"
        );
        gc_leaves_nothing(&t, step, &id, &root);
    }
}

#[test]
fn creates_killed_at_random_moments_leave_nothing_after_gc() {
    let t = TestHome::new();
    if !capable(&t) {
        return;
    }
    let mut seen = Vec::new();
    // Delays spread over a create's whole length (a few ms to tens of ms), not random
    // seconds: deterministic enough to repeat, spread enough to land between the steps.
    for (i, delay_us) in [500u64, 1500, 3000, 5000, 8000, 12000, 20000, 35000]
        .iter()
        .enumerate()
    {
        let name = format!("r{i}");
        let mut child = t
            .std_command(["env", "create", &name, "--disk", "8M", "--memory", "64M"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(*delay_us));
        let _ = child.kill();
        child.wait().unwrap();
        for env in t.json(["env", "list"]).as_array().unwrap() {
            let id = env["id"].as_str().unwrap().to_owned();
            if !seen.iter().any(|(s, _)| *s == id) {
                seen.push((id, std::path::PathBuf::from(env["root"].as_str().unwrap())));
            }
        }
        // A create that finished is removed the ordinary way; gc takes the rest.
        let _ = t.ptest(["env", "rm", "--force", &name]).output();
    }
    let gc = t.ptest(["gc", "--json"]).output().unwrap();
    assert!(
        t.names().is_empty(),
        "records left: {}\ngc said: {}",
        t.json(["env", "list"]),
        String::from_utf8_lossy(&gc.stdout)
    );
    for (id, root) in &seen {
        let left = leftovers(id, root);
        assert!(left.is_empty(), "{id}: left {left:?}");
    }
    // And no root of any of them, seen or not, under envs/.
    let envs = t.home().join("envs");
    let roots: Vec<_> = std::fs::read_dir(&envs)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(roots.is_empty(), "{roots:?}");
}

#[test]
fn a_create_killed_before_its_bridge_is_recorded_leaves_nothing_after_gc() {
    let t = TestHome::new();
    let missing = crate::support::missing_features(&t, &["namespaces", "cgroups", "bridge"]);
    if !crate::support::runnable(
        (!missing.is_empty()).then(|| format!("bridge crash test needs: {}", missing.join(", "))),
    ) {
        return;
    }
    // The home's uplink name, from an environment made and removed the ordinary way.
    let env = t.json(["env", "create", "first", "--network", "bridge"]);
    let uplink = env["details"]["network"]["uplink"]
        .as_str()
        .unwrap()
        .to_owned();
    t.ptest(["env", "rm", "first"]).assert().success();
    let Some((id, root)) = killed_create(&t, "create.bridge_unrecorded", &["--network", "bridge"])
    else {
        panic!("the bridge step was not reached");
    };
    let holders = || {
        let needle = format!("PTEST_BRIDGE_HUB={uplink}");
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|p| {
                std::fs::read(p.path().join("environ"))
                    .is_ok_and(|e| e.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
            })
            .count()
    };
    assert_eq!(
        holders(),
        1,
        "the killed create left its unrecorded hub holder"
    );
    gc_leaves_nothing(&t, "bridge", &id, &root);
    assert_eq!(holders(), 0, "gc left the hub's holder");
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&uplink));
}

#[test]
fn a_run_killed_at_random_moments_leaves_nothing_after_gc() {
    let t = TestHome::new();
    if !capable(&t) {
        return;
    }
    // Two suites (one with a service) in sandboxed environments with overlays, two at a time.
    std::fs::write(
        t.cwd().join("ptest.toml"),
        "[env.box]\nlimits = { memory = \"64M\" }\n\n\
         [[suite]]\nname = \"a\"\nenv = \"box\"\nrun = \"sleep 0.05\"\n\n\
         [[suite.services]]\nname = \"svc\"\nrun = \"sleep 300\"\n\n\
         [[suite]]\nname = \"b\"\nenv = \"box\"\nrun = \"echo b > out\"\n",
    )
    .unwrap();
    let mut seen: Vec<(String, std::path::PathBuf)> = Vec::new();
    for delay_ms in [2u64, 8, 15, 25, 40, 60, 90, 130] {
        let mut child = t
            .std_command(["run", "-j", "2", "--json=report.json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        for env in t.json(["env", "list"]).as_array().unwrap() {
            let id = env["id"].as_str().unwrap().to_owned();
            if !seen.iter().any(|(s, _)| *s == id) {
                seen.push((id, env["root"].as_str().unwrap().into()));
            }
        }
    }
    assert!(!seen.is_empty(), "no run got as far as an environment");
    t.ptest(["gc"]).assert().success();
    assert!(t.names().is_empty(), "records left: {:?}", t.names());
    for (id, root) in &seen {
        let left = leftovers(id, root);
        assert!(left.is_empty(), "{id}: left {left:?}");
    }
}
