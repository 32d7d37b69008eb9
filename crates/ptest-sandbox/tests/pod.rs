//! Pods: namespaces, filesystem view, network, lifecycle.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose
#![warn(clippy::undocumented_unsafe_blocks)]

mod support;

use std::fs;
use std::path::Path;

use ptest_sandbox::{
    Bind, Cgroup, CommandSpec, Error, ExitStatus, HostView, NetworkMode, Pod, Rlimits, Stdio,
};
use support::*;

#[test]
fn command_sees_holder_as_pid_1() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    let out = sh(fx.pod(), "echo $$; ls /proc | grep -c '^[0-9]'");
    assert!(out.status.success(), "{out:?}");
    let mut lines = out.stdout.lines();
    let pid: i32 = lines
        .next()
        .expect("pid line")
        .trim()
        .parse()
        .expect("number");
    assert!(
        pid > 1 && pid < 100,
        "pid in the pod's namespace should be small: {pid}"
    );
    let visible: usize = lines
        .next()
        .expect("count line")
        .trim()
        .parse()
        .expect("number");
    assert!(
        visible <= 4,
        "only the holder, sh and ls should be visible in /proc, saw {visible}"
    );
    // PID 1 in the pod is the holder: its pid namespace is the one the command runs in.
    let holder_pidns = fs::read_link(format!(
        "/proc/{}/ns/pid_for_children",
        fx.pod().holder_pid()
    ))
    .expect("ns");
    let own_pidns = fs::read_link("/proc/self/ns/pid").expect("ns");
    assert_ne!(holder_pidns, own_pidns);
    let inside = sh(fx.pod(), "tr '\\0' ' ' < /proc/1/cmdline");
    let holder_cmdline =
        fs::read(format!("/proc/{}/cmdline", fx.pod().holder_pid())).expect("cmdline");
    let holder_cmdline: String = holder_cmdline
        .iter()
        .map(|&b| if b == 0 { ' ' } else { b as char })
        .collect();
    assert_eq!(
        inside.stdout, holder_cmdline,
        "/proc/1 in the pod is the holder"
    );
}

#[test]
fn holder_setup_error_names_the_step() {
    if !can_sandbox() {
        return;
    }
    let root = tempfile::tempdir().expect("root");
    let mut spec = ptest_sandbox::PodSpec::new(root.path(), "bad-bind");
    spec.binds.push(Bind {
        source: root.path().to_path_buf(),
        target: "/usr/ptest-no-such-dir/x".into(),
        read_only: true,
    });
    match Pod::create(&spec) {
        Err(Error::HolderSetup { step, source }) => {
            assert_eq!(step, "mkdir /usr/ptest-no-such-dir");
            assert_eq!(source.raw_os_error(), Some(libc::EROFS));
        }
        other => panic!("expected a holder set-up error, got {other:?}"),
    }
}

#[test]
fn pod_has_its_own_hostname() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::with(None, |spec| spec.hostname = "pod-host-name".into());
    let out = sh(fx.pod(), "cat /proc/sys/kernel/hostname");
    assert_eq!(out.stdout.trim(), "pod-host-name", "{out:?}");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").expect("host hostname");
    assert_ne!(host.trim(), "pod-host-name");
}

#[test]
fn loopback_pod_has_only_lo() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    let out = sh(fx.pod(), "cat /proc/net/dev");
    let devices: Vec<&str> = out
        .stdout
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(devices, ["lo"], "{out:?}");
}

#[test]
fn host_is_read_only_and_root_is_writable() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    let out = sh(fx.pod(), "echo x > /usr/ptest-sandbox-probe");
    assert!(!out.status.success());
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(!Path::new("/usr/ptest-sandbox-probe").exists());

    let file = fx.root().join("written-inside");
    let out = sh(fx.pod(), &format!("echo hello > {}", file.display()));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fs::read_to_string(&file).expect("file written in the pod"),
        "hello\n"
    );
}

#[test]
fn tmp_is_private() {
    if !can_sandbox() {
        return;
    }
    let a = Fixture::new(None);
    let b = Fixture::new(None);
    let marker = format!("/tmp/{}", unique("marker"));
    let out = sh(a.pod(), &format!("echo a > {marker} && cat {marker}"));
    assert_eq!(out.stdout, "a\n", "{out:?}");
    assert!(!Path::new(&marker).exists(), "pod /tmp leaked to the host");
    let out = sh(
        b.pod(),
        &format!("test -e {marker} && echo seen || echo absent"),
    );
    assert_eq!(out.stdout, "absent\n", "{out:?}");
    // The pod's /tmp is not the host's: a host file is not visible either.
    let host_marker = tempfile::NamedTempFile::new_in("/tmp").expect("host temp file");
    let out = sh(
        a.pod(),
        &format!(
            "test -e {} && echo seen || echo absent",
            host_marker.path().display()
        ),
    );
    assert_eq!(out.stdout, "absent\n", "{out:?}");
}

#[test]
fn two_pods_bind_the_same_port() {
    if !can_sandbox() {
        return;
    }
    let Some(python) = python3() else {
        require(false, "python3 not found");
        return;
    };
    let a = Fixture::new(None);
    let b = Fixture::new(None);
    let ready = a.root().join("ready");
    // A holds 127.0.0.1:8080 open while B binds it too.
    let holder_script = format!(
        "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',8080))\ns.listen()\nopen('{}','w').write('ok')\ntime.sleep(30)",
        ready.display()
    );
    let cmd = CommandSpec::new([python.as_os_str(), "-c".as_ref(), holder_script.as_ref()]);
    let server = a.pod().spawn(&cmd).expect("spawn server");
    eventually("server in pod A bound 8080", || ready.exists());
    let out = run_with(
        |cmd| b.pod().spawn(&cmd),
        &[
            python.to_str().expect("utf-8 path"),
            "-c",
            "import socket\ns=socket.socket()\ns.bind(('127.0.0.1',8080))\ns.listen()\nprint('bound')",
        ],
    );
    assert_eq!(out.stdout.trim(), "bound", "{out:?}");
    drop(a);
    let _ = server.wait();
}

#[test]
fn network_none_has_no_usable_loopback() {
    if !can_sandbox() {
        return;
    }
    let Some(python) = python3() else {
        require(false, "python3 not found");
        return;
    };
    let fx = Fixture::with(None, |spec| spec.network = NetworkMode::None);
    let out = run_with(
        |cmd| fx.pod().spawn(&cmd),
        &[
            python.to_str().expect("utf-8"),
            "-c",
            "import socket\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\nc=socket.create_connection(s.getsockname(),timeout=2)\nprint('connected')",
        ],
    );
    assert!(!out.status.success(), "loopback should be down: {out:?}");
    assert!(!out.stdout.contains("connected"));
}

#[test]
fn system_view_shows_only_system_directories() {
    if !can_sandbox() {
        return;
    }
    let extra = tempfile::tempdir().expect("extra dir");
    fs::write(extra.path().join("data"), "shared").expect("write");
    let fx = Fixture::with(None, |spec| {
        spec.host_view = HostView::System;
        spec.binds.push(Bind::read_only(extra.path()));
    });
    let out = sh(
        fx.pod(),
        &format!(
            "test -e /root && echo root-visible; test -e /work && echo work-visible; cat {}/data; echo x > {}/new",
            extra.path().display(),
            extra.path().display()
        ),
    );
    assert!(!out.stdout.contains("visible"), "{out:?}");
    assert!(out.stdout.contains("shared"), "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
}

#[test]
fn exit_code_and_signal_are_relayed() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    assert_eq!(sh(fx.pod(), "exit 7").status, ExitStatus::Exited(7));
    assert_eq!(
        sh(fx.pod(), "kill -TERM $$").status,
        ExitStatus::Signaled(libc::SIGTERM)
    );
}

#[test]
fn missing_program_is_a_spawn_error() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    let cmd = CommandSpec::new(["no-such-program-ptest"]).env("PATH", PATH);
    match fx.pod().spawn(&cmd) {
        Err(Error::Spawn { step, source, .. }) => {
            assert_eq!(step, "execve");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
}

#[test]
fn rlimits_apply_to_the_command() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    let out = run_with(
        |mut cmd| {
            cmd.rlimits = Rlimits {
                open_files: Some(64),
                file_size: Some(1000),
            };
            cmd.cwd = fx.root().to_path_buf();
            fx.pod().spawn(&cmd)
        },
        &["sh", "-c", "ulimit -n; head -c 5000 /dev/zero > big"],
    );
    assert_eq!(out.stdout.lines().next(), Some("64"), "{out:?}");
    let size = fs::metadata(fx.root().join("big"))
        .expect("big written")
        .len();
    assert_eq!(size, 1000, "file size limit must stop the write");
}

#[test]
fn capabilities_dropped_and_no_new_privs() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    let out = run_with(
        |mut cmd| {
            cmd.no_new_privs = true;
            cmd.capabilities = Some(ptest_sandbox::Capabilities::NONE);
            fx.pod().spawn(&cmd)
        },
        &[
            "sh",
            "-c",
            "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; echo x > /proc/sys/kernel/hostname",
        ],
    );
    assert!(out.stdout.contains("CapEff:\t0000000000000000"), "{out:?}");
    assert!(out.stdout.contains("CapBnd:\t0000000000000000"), "{out:?}");
    assert!(out.stdout.contains("NoNewPrivs:\t1"), "{out:?}");
}

#[test]
fn attach_works_from_a_fresh_value_and_refuses_stale_pids() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    let (pid, start) = (fx.pod().holder_pid(), fx.pod().start_time());
    let again = Pod::attach(pid, start, None).expect("attach");
    let out = sh(&again, "cat /proc/sys/kernel/hostname");
    assert!(out.stdout.trim().starts_with("pod-"), "{out:?}");

    match Pod::attach(pid, start + 1, None) {
        Err(Error::HolderPidReused { .. }) => {}
        other => panic!("expected reused-pid error, got {other:?}"),
    }
    // Our own pid is alive but is not a holder (start time may even match, to the tick).
    let own = std::process::id() as i32;
    assert!(matches!(
        Pod::attach(own, start, None),
        Err(Error::HolderPidReused { .. }) | Err(Error::NotAHolder { .. })
    ));
    // An absent pid.
    let absent = i32::MAX - 7;
    assert!(matches!(
        Pod::attach(absent, start, None),
        Err(Error::HolderGone { .. })
    ));
}

#[test]
fn destroy_leaves_no_process_cgroup_or_mount() {
    if !can_sandbox() {
        return;
    }
    let mut fx = Fixture::new(Some(Default::default()));
    let pod = fx.pod.take().expect("pod");
    let name = fx.cgroup_name.clone().expect("cgroup");
    let dirs = pod.cgroup().expect("cgroup").paths();
    let daemon = sh(&pod, "(sleep 1000 &) & echo started");
    assert!(daemon.stdout.contains("started"));
    let in_group = pod.cgroup().expect("cgroup").pids().expect("pids");
    assert!(
        in_group.len() >= 2,
        "holder and sleep expected in the cgroup: {in_group:?}"
    );
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mountinfo.contains(fx.root().to_str().expect("utf-8")),
        "pod mounts leaked to the host"
    );

    let holder = pod.holder_pid();
    pod.destroy().expect("destroy");
    for pid in in_group {
        assert!(!process_exists(pid), "process {pid} survived destroy");
    }
    assert!(!process_exists(holder));
    for dir in dirs {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
    assert!(!Cgroup::list(CGROUP_PARENT).expect("list").contains(&name));
}

#[test]
fn spawn_into_destroyed_pod_fails_clearly() {
    if !can_sandbox() {
        return;
    }
    let mut fx = Fixture::new(None);
    let pod = fx.pod.take().expect("pod");
    let (pid, start) = (pod.holder_pid(), pod.start_time());
    pod.destroy().expect("destroy");
    assert!(matches!(
        Pod::attach(pid, start, None),
        Err(Error::HolderGone { .. }) | Err(Error::HolderPidReused { .. })
    ));
}

/// Re-run by `killing_the_caller_kills_the_command` in a child process: attaches to the pod
/// given in the environment, spawns `sleep`, reports, then waits to be killed.
#[test]
#[ignore = "helper: run in a child process by killing_the_caller_kills_the_command"]
fn pdeathsig_helper() {
    let spec = std::env::var("PTEST_SANDBOX_HELPER_POD")
        .expect("run by killing_the_caller_kills_the_command, which names the pod");
    let (pid, start) = spec.split_once(':').expect("pid:start");
    let pod = Pod::attach(
        pid.parse().expect("pid"),
        start.parse().expect("start"),
        None,
    )
    .expect("attach");
    let mut cmd = CommandSpec::new(["sleep", "1000"]).env("PATH", PATH);
    cmd.stdin = Stdio::null().expect("null");
    let child = pod.spawn(&cmd).expect("spawn sleep");
    println!("command {}", child.pid());
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn killing_the_caller_kills_the_command() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    let exe = std::env::current_exe().expect("test binary");
    let mut helper = std::process::Command::new(exe)
        .args([
            "--exact",
            "pdeathsig_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "PTEST_SANDBOX_HELPER_POD",
            format!("{}:{}", fx.pod().holder_pid(), fx.pod().start_time()),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("helper");
    // Wait until the sleep is running inside the pod (a child of the holder's namespace).
    let count_sleeps = || {
        let out = sh(fx.pod(), "ls -l /proc/*/exe 2>/dev/null | grep -c sleep");
        out.stdout.trim().parse::<usize>().unwrap_or(0)
    };
    eventually("sleep started in the pod", || count_sleeps() >= 1);
    helper.kill().expect("kill helper");
    let _ = helper.wait();
    eventually("sleep killed after its caller died", || count_sleeps() == 0);
}

/// The holder, forked from the caller, runs as long as the pod: it must not keep the
/// caller's descriptors open (nor pass them to the commands it forks), or a script another
/// thread was writing at that moment cannot be run (ETXTBSY) until the pod ends.
#[test]
fn a_running_command_does_not_hold_the_callers_files_open() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    let script = fx.root().join("script.sh");
    let mut writer = fs::File::create(&script).unwrap();
    let mut cmd = CommandSpec::new(["sleep", "30"]).env("PATH", PATH);
    cmd.stdin = Stdio::null().unwrap();
    let sleeper = fx.pod().spawn(&cmd).unwrap();
    std::io::Write::write_all(&mut writer, b"#!/bin/sh\necho ran\n").unwrap();
    drop(writer);
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&script).output();
    // SAFETY: plain kill(2) of the sleeper.
    unsafe { libc::kill(sleeper.pid(), libc::SIGTERM) };
    let _ = sleeper.wait();
    let out = out.expect("the script runs: no process holds it open for writing");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
}

#[test]
fn destroy_kills_a_cgroup_member_outside_the_namespace() {
    if !can_sandbox() {
        return;
    }
    let mut fx = Fixture::new(Some(Default::default()));
    let pod = fx.pod.take().expect("pod");
    let cgroup = pod.cgroup().expect("cgroup").clone();
    let dirs = cgroup.paths();
    // A host process in the pod's cgroup but not in its PID namespace: the holder's death
    // does not take it, the cgroup kill must.
    let out = run_with(
        |cmd| ptest_sandbox::spawn_in_cgroup(&cmd, Some(&cgroup)),
        &["sh", "-c", "setsid sleep 1000 >/dev/null 2>&1 & echo $!"],
    );
    let daemon: i32 = out.stdout.trim().parse().expect("daemon pid");
    assert!(process_exists(daemon));
    let holder = pod.holder_pid();
    pod.destroy().expect("destroy");
    assert!(!process_exists(daemon), "daemon {daemon} survived destroy");
    assert!(!process_exists(holder));
    for dir in dirs {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
}
