//! Issue 14's promise, tried as a hostile test would: each test is one attack, run from
//! inside a `basic` environment at every level the README says stops it (`medium`, `high`,
//! `strict`), by `fixtures/hostile.py` (raw system calls through ctypes). Each asserts that
//! every step was refused and that nothing changed on the host.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::TestHome;

/// The levels whose README lines promise what these tests try to break.
const LEVELS: [&str; 3] = ["medium", "high", "strict"];
const PYTHON: &str = "/usr/bin/python3";

/// Whether this host can run pods and the probe script; prints why not and skips, or fails
/// under PTEST_REQUIRE_ALL=1.
fn attackable(t: &TestHome) -> bool {
    let mut missing = crate::support::missing_features(t, &["namespaces", "cgroups", "strict"]);
    if !Path::new(PYTHON).exists() {
        missing.push(format!("{PYTHON} (Debian's python3) for the probes"));
    }
    crate::support::runnable(
        (!missing.is_empty()).then(|| format!("attack tests need: {}", missing.join(", "))),
    )
}

/// An environment at `level` made for one attack, with the probe script in its workspace.
struct Target {
    name: String,
    root: PathBuf,
}

fn target(t: &TestHome, level: &str, extra: &[&str]) -> Target {
    let name = format!("{level}-{}", extra.len());
    let mut args = vec!["env", "create", name.as_str(), "--security", level];
    args.extend_from_slice(extra);
    let env = t.json(&args);
    let root = PathBuf::from(env["root"].as_str().unwrap());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hostile.py");
    std::fs::copy(script, root.join("workspace/hostile.py")).unwrap();
    Target { name, root }
}

/// Runs `attack` in `target`; returns its report.
fn attack(t: &TestHome, target: &Target, attack: &str, args: &[&str]) -> serde_json::Value {
    let mut cmd = vec![PYTHON, "hostile.py", attack];
    cmd.extend_from_slice(args);
    let result = t.exec_json(&target.name, &cmd);
    assert_eq!(result["exit_code"], 0, "the probe itself failed: {result}");
    serde_json::from_str(result["stdout"].as_str().unwrap()).unwrap()
}

/// Asserts that no step of `report` went through.
fn assert_refused(level: &str, report: &serde_json::Value) {
    assert_eq!(
        report["escaped"], false,
        "at security {level}, a step that must be refused went through: {report:#}"
    );
}

/// Runs `attack` at every level (an environment each, made with `extra` flags) and asserts
/// that it was refused; `args` may depend on the environment.
fn refused_everywhere(
    t: &TestHome,
    extra: &[&str],
    name: &str,
    args: impl Fn(&Target) -> Vec<String>,
) {
    for level in LEVELS {
        let target = target(t, level, extra);
        let args = args(&target);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(level, &attack(t, &target, name, &args));
        t.ptest(["env", "rm", "--force", &target.name])
            .assert()
            .success();
    }
}

fn nonce() -> String {
    format!("{}-{}", std::process::id(), ptest_nonce())
}

fn ptest_nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn remount_root_read_write_then_write_the_hosts_etc() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    let planted = PathBuf::from(format!("/etc/ptest-hostile-{}", nonce()));
    refused_everywhere(&t, &[], "remount-root", |_| {
        vec![planted.display().to_string()]
    });
    assert!(!planted.exists(), "{} was written", planted.display());
}

#[test]
fn bind_root_elsewhere_to_reach_another_environment_and_the_state_db() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    let other = t.json(["env", "create", "victim"]);
    let other_root = other["root"].as_str().unwrap().to_owned();
    let state_db = t.home().join("state.db").display().to_string();
    refused_everywhere(&t, &[], "bind-root", |target| {
        vec![
            target.root.join("workspace/mnt").display().to_string(),
            other_root.clone(),
            state_db.clone(),
        ]
    });
}

#[test]
fn connect_to_host_control_sockets_unless_exposed() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    // A control socket of the host's own, in /run as Docker's, containerd's and dbus's are.
    let path = PathBuf::from(format!("/run/ptest-hostile-{}.sock", nonce()));
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let accepting = std::thread::spawn(move || {
        let accepted = listener.accept().is_ok();
        drop(listener);
        accepted
    });
    let mut sockets = vec![path.display().to_string()];
    for known in [
        "/var/run/docker.sock",
        "/run/containerd/containerd.sock",
        "/run/dbus/system_bus_socket",
    ] {
        if Path::new(known).exists() {
            sockets.push(known.to_owned());
        }
    }
    refused_everywhere(&t, &[], "connect", |_| sockets.clone());
    // Asked for by path, the socket is there and answers.
    let exposed = target(&t, "medium", &["--expose-socket", path.to_str().unwrap()]);
    let report = attack(&t, &exposed, "connect", &[path.to_str().unwrap()]);
    assert_eq!(report["escaped"], true, "the exposed socket: {report:#}");
    assert!(accepting.join().unwrap());
    let shown = t.json(["env", "show", &exposed.name]);
    assert_eq!(
        shown["environment"]["spec"]["expose_sockets"][0],
        path.to_str().unwrap()
    );
    std::fs::remove_file(&path).unwrap();
    // A path that is no socket is refused when the environment is made.
    t.ptest(["env", "create", "bad", "--expose-socket", "/etc/hostname"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("not a Unix socket"));
}

#[test]
fn connect_to_the_hosts_abstract_sockets_on_the_host_network() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    let scope = crate::support::missing_features(&t, &["socket scope"]);
    if !crate::support::runnable((!scope.is_empty()).then(|| format!("needs {}", scope.join(", "))))
    {
        return;
    }
    // Abstract sockets belong to a network namespace: on the host's network a pod shares
    // the host's (X11's, systemd's, a container runtime's) unless Landlock scopes it.
    let name = format!("ptest-hostile-{}", nonce());
    let listener = abstract_listener(&name);
    for level in LEVELS {
        let target = target(&t, level, &["--network", "host"]);
        assert_refused(level, &attack(&t, &target, "connect-abstract", &[&name]));
        // Processes of one pod still reach each other's: a service and a later command.
        let own = format!("{name}-{level}");
        t.ptest([
            "proc",
            "start",
            &target.name,
            "--name",
            "l",
            "--ready-log",
            "listening",
            "--",
            PYTHON,
            "hostile.py",
            "listen-abstract",
            &own,
        ])
        .assert()
        .success();
        let report = attack(&t, &target, "connect-abstract", &[&own]);
        assert_eq!(
            report["escaped"], true,
            "at {level}, within the pod: {report:#}"
        );
        t.ptest(["env", "rm", "--force", &target.name])
            .assert()
            .success();
    }
    drop(listener);
}

/// A listening abstract Unix socket of the test (the host) named `name`.
fn abstract_listener(name: &str) -> std::os::unix::net::UnixListener {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
}

#[test]
fn write_global_sysctls() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    let files = ["/proc/sys/vm/swappiness", "/proc/sys/kernel/core_pattern"];
    let before: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    refused_everywhere(&t, &[], "sysctl", |_| {
        files.iter().map(|f| (*f).to_owned()).collect()
    });
    // sysrq and the rest of runc's read-only /proc entries.
    refused_everywhere(&t, &[], "write", |_| {
        ["/proc/sysrq-trigger", "/proc/irq/default_smp_affinity"]
            .iter()
            .filter(|p| Path::new(p).exists())
            .map(|p| (*p).to_owned())
            .collect()
    });
    for (file, was) in files.iter().zip(before) {
        assert_eq!(std::fs::read_to_string(file).unwrap(), was, "{file}");
    }
}

#[test]
fn read_host_secrets_and_kernel_memory() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    let files: Vec<String> = [
        "/etc/shadow",
        "/etc/gshadow",
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/kmsg",
        "/dev/mem",
        "/dev/kmem",
        "/dev/port",
    ]
    .iter()
    .map(|p| (*p).to_owned())
    .collect();
    refused_everywhere(&t, &[], "read", |_| files.clone());
}

#[test]
fn mknod_the_hosts_disk_and_read_it_raw() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    // The block device the host's root filesystem lives on, and /dev/mem (char 1:1).
    let dev = std::fs::metadata("/").unwrap().dev();
    let (major, minor) = (libc_major(dev), libc_minor(dev));
    refused_everywhere(&t, &[], "mknod-disk", |target| {
        vec![
            major.to_string(),
            minor.to_string(),
            target.root.join("workspace").display().to_string(),
            "/tmp".into(),
            "/dev/shm".into(),
            "/dev".into(),
            "/run".into(),
        ]
    });
}

fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

#[test]
fn enter_or_trace_the_pod_holder_through_proc() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    refused_everywhere(&t, &[], "holder", |_| Vec::new());
}

#[test]
fn open_by_handle_at_to_reach_the_hosts_inodes() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    refused_everywhere(&t, &[], "open-by-handle", |_| Vec::new());
}

#[test]
fn unshare_a_user_namespace_then_mount() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    refused_everywhere(&t, &[], "userns", |_| Vec::new());
}

#[test]
fn unmount_the_mask_over_ptests_home_and_the_secrets() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    let home = t.home().display().to_string();
    refused_everywhere(&t, &[], "unmask", |_| {
        vec![home.clone(), "/etc/shadow".into(), "/proc/sys".into()]
    });
}

#[test]
fn move_the_holders_socket_to_break_the_environment() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    for level in LEVELS {
        let target = target(&t, level, &[]);
        assert_refused(level, &attack(&t, &target, "move-socket", &[]));
        // The environment still takes commands.
        t.ptest(["env", "exec", &target.name, "--", "true"])
            .assert()
            .success();
        t.ptest(["env", "rm", "--force", &target.name])
            .assert()
            .success();
    }
}

#[test]
fn write_a_cgroup_release_agent() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    refused_everywhere(&t, &[], "cgroup-release-agent", |_| Vec::new());
}

#[test]
fn write_sysfs() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    refused_everywhere(&t, &[], "write", |_| {
        [
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "/sys/kernel/uevent_helper",
            "/sys/power/state",
        ]
        .iter()
        .map(|p| (*p).to_owned())
        .collect()
    });
}

#[test]
fn fill_tmp_and_dev_shm_past_the_disk_limit() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    let fill = "for d in /tmp /dev/shm; do \
                  dd if=/dev/zero of=$d/fill bs=1M count=40 2>/dev/null; \
                  echo $d $(($(wc -c < $d/fill) / 1048576)); done";
    for level in LEVELS {
        // With --disk: /tmp and /dev/shm live in the size-limited root and share its limit.
        let limited = target(&t, level, &["--disk", "16M"]);
        let out = t.exec_json(&limited.name, &["sh", "-c", fill]);
        let written: u64 = out["stdout"]
            .as_str()
            .unwrap()
            .lines()
            .map(|l| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap())
            .sum();
        // strict's Landlock keeps /tmp read-only: only /dev/shm is written there.
        assert!(
            written <= 16,
            "at {level}: {written} MiB written past --disk 16M: {out}"
        );
        let stats = t.json(["env", "stats", &limited.name]);
        assert!(
            stats["disk_bytes"].as_u64().unwrap() >= (written.max(1) - 1) << 20,
            "at {level}: {stats}"
        );
        t.ptest(["env", "rm", "--force", &limited.name])
            .assert()
            .success();
        // Without: bounded by the documented defaults, and counted in env stats DISK.
        let plain = target(&t, level, &[]);
        let sizes = t.exec_json(&plain.name, &["df", "-k", "/tmp", "/dev/shm"]);
        let kib: Vec<u64> = sizes["stdout"]
            .as_str()
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(kib, vec![1 << 20, 64 << 10], "at {level}: {sizes}");
        let out = t.exec_json(
            &plain.name,
            &["dd", "if=/dev/zero", "of=/dev/shm/x", "bs=1M", "count=8"],
        );
        assert_eq!(out["exit_code"], 0, "{out}");
        let stats = t.json(["env", "stats", &plain.name]);
        assert!(
            stats["disk_bytes"].as_u64().unwrap() >= 8 << 20,
            "at {level}: /dev/shm uncounted: {stats}"
        );
        t.ptest(["env", "rm", "--force", &plain.name])
            .assert()
            .success();
    }
}

#[test]
fn everyday_work_still_works_at_medium() {
    let t = TestHome::new();
    if !attackable(&t) {
        return;
    }
    let env = t.json(["env", "create", "daily", "--port", "http"]);
    assert_eq!(env["details"]["isolation"]["security"], "medium");
    // git in the workspace.
    let git = "git init -q . && git config user.email t@example.com && git config user.name t \
               && echo hi > f && git add f && git commit -qm first && git log --oneline | wc -l";
    let out = t.exec_json("daily", &["sh", "-c", git]);
    assert_eq!(out["stdout"], "1\n", "{out}");
    // A server on a leased port, reached from the host.
    let port = env["ports"]["http"].as_u64().unwrap();
    t.ptest([
        "proc",
        "start",
        "daily",
        "--name",
        "web",
        "--ready-port",
        "http",
        "--",
        PYTHON,
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
    ])
    .assert()
    .success();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
    use std::io::{Read, Write};
    conn.write_all(b"GET /f HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.0 200") && reply.ends_with("hi\n"),
        "{reply}"
    );
}
