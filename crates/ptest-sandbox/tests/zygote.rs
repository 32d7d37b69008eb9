//! Commands the pod holder forks for `Pod::spawn`: where they run, what comes back, who may
//! ask, and what ends them.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose
#![warn(clippy::undocumented_unsafe_blocks)]

mod support;

use std::fs;
use std::os::fd::AsRawFd;
use std::time::Duration;

use ptest_sandbox::{CommandSpec, Error, ExitStatus, Limits, Stdio};
use support::*;

/// Field `n` (1-based, as in proc(5)) of `/proc/<pid>/stat`.
fn stat_field(pid: i32, n: usize) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n - 3)?.parse().ok()
}

/// Whether `fd` is readable within `ms` milliseconds.
fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

fn sleeper(argv: &[&str]) -> CommandSpec {
    let mut cmd = CommandSpec::new(argv.iter().copied()).env("PATH", PATH);
    cmd.stdin = Stdio::null().unwrap();
    cmd
}

#[test]
fn the_holder_forks_the_command_inside_the_pod_and_its_cgroup() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(Some(Limits::default()));
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut cmd = sleeper(&["sh", "-c", "echo to-out; echo to-err >&2; exec sleep 30"]);
    cmd.stdout = Stdio::Fd(fs::File::create(&out).unwrap().into());
    cmd.stderr = Stdio::Fd(fs::File::create(&err).unwrap().into());
    let child = fx.pod().spawn(&cmd).unwrap();
    drop(cmd);
    let pid = child.pid();
    let holder = fx.pod().holder_pid();
    // The pid is the command's, on the host: a child of the holder, in the holder's PID
    // namespace and in the pod's cgroup from birth.
    assert_eq!(stat_field(pid, 4), Some(holder), "parent of {pid}");
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap(),
        fs::read_link(format!("/proc/{holder}/ns/pid")).unwrap()
    );
    assert!(fx.pod().cgroup().unwrap().pids().unwrap().contains(&pid));
    // It leads its own process group.
    assert_eq!(stat_field(pid, 5), Some(pid));
    eventually("output arrived", || {
        fs::read_to_string(&out).unwrap() == "to-out\n"
            && fs::read_to_string(&err).unwrap() == "to-err\n"
    });
    let exit_fd = child.exit_fd().unwrap();
    assert!(!readable(exit_fd.as_raw_fd(), 50), "readable while running");
    assert_eq!(child.try_wait().unwrap(), None);
    // Signalled directly: no relay in between.
    // SAFETY: plain kill(2) of the command we started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(
        readable(exit_fd.as_raw_fd(), 10_000),
        "exit fd never readable"
    );
    assert_eq!(
        child.try_wait().unwrap(),
        Some(ExitStatus::Signaled(libc::SIGTERM))
    );
    assert_eq!(child.wait().unwrap(), ExitStatus::Signaled(libc::SIGTERM));
}

#[test]
fn a_failing_step_is_named_with_its_errno() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    let cmd = sleeper(&["true"]).cwd("/no/such/dir");
    match fx.pod().spawn(&cmd) {
        Err(Error::Spawn { step, source, .. }) => {
            assert_eq!(step, "chdir to working directory");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
    // The holder goes on serving.
    assert!(sh(fx.pod(), "exit 0").status.success());
}

#[test]
fn a_client_inside_the_pod_is_refused() {
    if !can_sandbox() {
        return;
    }
    let Some(python) = python3() else {
        require(false, "python3 not found");
        return;
    };
    let fx = Fixture::new(None);
    // A request as the host would send it (40-byte header, magic first), from inside.
    let script = "import socket, struct\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n\
        s.connect('/dev/.ptest/exec.sock')\n\
        s.send(struct.pack('<IIQQIIIIQ', 0x7a796702, 0, 2**64-1, 2**64-1, 1, 0, 1, 0, 0) + b'/\\0true\\0/bin/true\\0')\n\
        kind, step, errno = struct.unpack('<iii', s.recv(16))\n\
        print(kind, errno)";
    let out = run_with(
        |cmd| fx.pod().spawn(&cmd),
        &[python.to_str().unwrap(), "-c", script],
    );
    assert_eq!(out.stdout, format!("2 {}\n", libc::EPERM), "{out:?}");
}

#[test]
fn dropping_the_child_kills_the_commands_process_group() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(Some(Limits::default()));
    let group = fx.pod().cgroup().unwrap();
    let child = fx
        .pod()
        .spawn(&sleeper(&["sh", "-c", "sleep 1000 & sleep 1000"]))
        .unwrap();
    eventually("both sleeps run", || group.pids().unwrap().len() >= 4);
    drop(child);
    eventually("the command's group is gone", || {
        group.pids().unwrap() == vec![fx.pod().holder_pid()]
    });
}

#[test]
fn without_die_with_parent_the_command_outlives_its_handle() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    let mut cmd = sleeper(&["sleep", "1000"]);
    cmd.die_with_parent = false;
    let child = fx.pod().spawn(&cmd).unwrap();
    let pid = child.pid();
    drop(child);
    std::thread::sleep(Duration::from_millis(200));
    assert!(process_exists(pid), "the command died with its handle");
    // SAFETY: plain kill(2) of the command we started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    eventually("the holder reaped it", || !process_exists(pid));
}

#[test]
fn end_group_on_exit_kills_what_the_command_left_behind() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(Some(Limits::default()));
    let mut cmd = sleeper(&["sh", "-c", "sleep 1000 & exit 3"]);
    cmd.end_group_on_exit = true;
    let child = fx.pod().spawn(&cmd).unwrap();
    assert_eq!(child.wait().unwrap(), ExitStatus::Exited(3));
    // Sent SIGKILL before the status was: nothing but the holder is left once it lands.
    eventually("the left-behind sleep is gone", || {
        fx.pod().cgroup().unwrap().pids().unwrap() == vec![fx.pod().holder_pid()]
    });
}

#[test]
fn concurrent_spawns_into_one_pod_each_get_their_own_status() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..24)
            .map(|i| {
                let pod = fx.pod();
                s.spawn(move || {
                    let script = format!("sleep 0.0{}; exit {i}", i % 10);
                    let mut cmd = sleeper(&["sh", "-c", &script]);
                    cmd.end_group_on_exit = i % 2 == 0;
                    let child = pod.spawn(&cmd).unwrap();
                    (i, child.wait().unwrap())
                })
            })
            .collect();
        for run in runs {
            let (i, status) = run.join().unwrap();
            assert_eq!(status, ExitStatus::Exited(i));
        }
    });
}

#[test]
fn a_large_request_travels_whole() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    // 400 KiB of environment, past what one message carries inline (execve takes at most
    // 128 KiB a string).
    let big = "x".repeat(100 << 10);
    let out = run_with(
        |cmd| {
            let cmd = (1..=4).fold(cmd, |cmd, i| cmd.env(format!("BIG{i}"), &big));
            fx.pod().spawn(&cmd)
        },
        &["sh", "-c", "printf %s \"$BIG1$BIG2$BIG3$BIG4\" | wc -c"],
    );
    assert_eq!(out.stdout.trim(), (400 << 10).to_string(), "{out:?}");
}
