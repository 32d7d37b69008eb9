//! cgroups: limits, readings, kill, removal, listing.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose
#![warn(clippy::undocumented_unsafe_blocks)]

mod support;

use std::fs;
use std::time::Duration;

use ptest_sandbox::{
    Cgroup, CgroupVersion, CommandSpec, Controller, ExitStatus, Limits, Stdio, spawn_in_cgroup,
};
use support::*;

fn has(c: Controller) -> bool {
    let probe = ptest_sandbox::cgroup::probe();
    let reason = probe
        .controllers
        .iter()
        .find(|p| p.controller == c)
        .and_then(|p| p.status.clone().err())
        .unwrap_or_else(|| format!("no cgroup controller {}", c.name()));
    require(probe.has(c), &reason)
}

#[test]
fn probe_reports_the_hierarchy() {
    let probe = ptest_sandbox::cgroup::probe();
    if !require(probe.version.is_ok(), "no cgroup hierarchy") {
        return;
    }
    assert_eq!(probe.controllers.len(), Controller::ALL.len());
    for c in &probe.controllers {
        if let Ok(path) = &c.status {
            assert!(
                path.is_dir(),
                "{} reported at missing {}",
                c.controller.name(),
                path.display()
            );
        }
    }
}

#[test]
fn memory_limit_oom_kills_and_is_counted() {
    if !can_sandbox() || !has(Controller::Memory) {
        return;
    }
    let Some(python) = python3() else {
        require(false, "python3 not found");
        return;
    };
    let fx = Fixture::new(Some(Limits {
        memory_bytes: Some(64 << 20),
        ..Limits::default()
    }));
    let out = run_with(
        |cmd| fx.pod().spawn(&cmd),
        &[
            python.to_str().expect("utf-8"),
            "-c",
            "b = bytearray(200 * 1024 * 1024)\nprint('allocated')",
        ],
    );
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGKILL), "{out:?}");
    let usage = fx.pod().cgroup().expect("cgroup").usage().expect("usage");
    assert!(
        usage.oom_kills.expect("oom count readable") >= 1,
        "{usage:?}"
    );
    assert!(
        usage.memory_peak.expect("peak readable") <= 64 << 20,
        "{usage:?}"
    );
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    if !can_sandbox() || !has(Controller::Pids) {
        return;
    }
    let fx = Fixture::new(Some(Limits {
        pids_max: Some(16),
        ..Limits::default()
    }));
    let out = sh(
        fx.pod(),
        "i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done; echo done",
    );
    assert!(
        out.stderr.contains("fork") || out.stderr.contains("Resource temporarily unavailable"),
        "{out:?}"
    );
    let usage = fx.pod().cgroup().expect("cgroup").usage().expect("usage");
    assert!(
        usage.pids_current.expect("pids readable") <= 16,
        "{usage:?}"
    );
}

#[test]
fn a_spawned_command_and_its_children_join_every_hierarchy() {
    if !can_sandbox() {
        return;
    }
    let name = unique("join");
    let cg = Cgroup::create(CGROUP_PARENT, &name, &Limits::default()).expect("create");
    let _guard = CgroupGuard(Some(cg.clone()));
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("cgroups");
    let script = format!("sh -c 'cat /proc/self/cgroup' > {}", out.display());
    let mut cmd = CommandSpec::new(["sh", "-c", script.as_str()]).env("PATH", PATH);
    cmd.stdin = Stdio::null().expect("null");
    let child = spawn_in_cgroup(&cmd, Some(&cg)).expect("spawn");
    assert!(child.wait().expect("wait").success());
    let text = fs::read_to_string(&out).expect("read");
    let member = format!("/{CGROUP_PARENT}/{name}");
    let lines: Vec<&str> = text.lines().filter(|l| l.ends_with(&member)).collect();
    // One line per hierarchy the group has a directory in (v2: the one unified line).
    assert_eq!(lines.len(), cg.paths().len(), "{text}");
}

#[test]
fn kill_all_kills_a_double_forked_daemon() {
    if !can_sandbox() {
        return;
    }
    let name = unique("daemon");
    let cg = Cgroup::create(CGROUP_PARENT, &name, &Limits::default()).expect("create");
    let guard = CgroupGuard(Some(cg.clone()));
    let mut cmd = CommandSpec::new(["sh", "-c", "(sleep 1000 &) &"]).env("PATH", PATH);
    cmd.stdin = Stdio::null().expect("null");
    cmd.stdout = Stdio::null().expect("null");
    cmd.stderr = Stdio::null().expect("null");
    let child = spawn_in_cgroup(&cmd, Some(&cg)).expect("spawn");
    assert!(child.wait().expect("wait").success());
    let comm = |pid: &i32| fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    eventually("orphaned sleep alone in the cgroup", || {
        let pids = cg.pids().expect("pids");
        !pids.is_empty() && pids.iter().all(|p| comm(p).trim() == "sleep")
    });
    let daemons = cg.pids().expect("pids");
    for pid in &daemons {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(
            status.contains("PPid:\t1\n")
                || !status.contains(&format!("PPid:\t{}\n", std::process::id())),
            "daemon must not be our child"
        );
    }
    cg.kill_all().expect("kill_all");
    drop(guard);
    for pid in daemons {
        assert!(!process_exists(pid), "daemon {pid} survived");
    }
    assert!(cg.pids().expect("pids").is_empty());
    let dirs = cg.paths();
    cg.remove().expect("remove");
    for dir in dirs {
        assert!(!dir.exists());
    }
}

#[test]
fn host_spawn_runs_in_the_cgroup_with_exit_code() {
    if !can_sandbox() {
        return;
    }
    let name = unique("host");
    let cg = Cgroup::create(CGROUP_PARENT, &name, &Limits::default()).expect("create");
    let out = run_with(
        |cmd| spawn_in_cgroup(&cmd, Some(&cg)),
        &["sh", "-c", "cat /proc/self/cgroup; exit 3"],
    );
    assert_eq!(out.status, ExitStatus::Exited(3));
    assert!(
        out.stdout.contains(&format!("/{CGROUP_PARENT}/{name}")),
        "{out:?}"
    );
    cg.remove().expect("remove");
}

#[test]
fn list_open_and_remove() {
    if !can_sandbox() {
        return;
    }
    let name = unique("listed");
    let cg = Cgroup::create(CGROUP_PARENT, &name, &Limits::default()).expect("create");
    assert!(Cgroup::list(CGROUP_PARENT).expect("list").contains(&name));
    assert!(
        Cgroup::create(CGROUP_PARENT, &name, &Limits::default()).is_err(),
        "duplicate create must fail"
    );
    let reopened = Cgroup::open(CGROUP_PARENT, &name).expect("open");
    assert_eq!(reopened.paths(), cg.paths());
    reopened.remove().expect("remove");
    assert!(!Cgroup::list(CGROUP_PARENT).expect("list").contains(&name));
    assert!(matches!(
        Cgroup::open(CGROUP_PARENT, &name),
        Err(ptest_sandbox::Error::CgroupNotFound { .. })
    ));
}

#[test]
fn cpu_limit_and_cpu_time_reading() {
    if !can_sandbox() || !has(Controller::Cpu) {
        return;
    }
    let name = unique("cpu");
    let cg = Cgroup::create(
        CGROUP_PARENT,
        &name,
        &Limits {
            cpu_cores: Some(0.5),
            ..Limits::default()
        },
    )
    .expect("create");
    let quota = match cg.version() {
        CgroupVersion::V1 => {
            let dir = cg
                .paths()
                .into_iter()
                .find(|p| p.join("cpu.cfs_quota_us").exists())
                .expect("cpu dir");
            fs::read_to_string(dir.join("cpu.cfs_quota_us")).expect("quota")
        }
        _ => fs::read_to_string(cg.paths()[0].join("cpu.max")).expect("cpu.max"),
    };
    assert!(quota.starts_with("50000"), "quota for half a core: {quota}");
    let out = run_with(
        |cmd| spawn_in_cgroup(&cmd, Some(&cg)),
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
        ],
    );
    assert!(out.status.success());
    let used = cg
        .usage()
        .expect("usage")
        .cpu_time
        .expect("cpu time readable");
    assert!(used > Duration::ZERO, "busy loop must show CPU time");
    cg.remove().expect("remove");
}
