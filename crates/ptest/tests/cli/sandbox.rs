//! Security levels, network modes and limits of sandboxed environments, checked from inside
//! and outside: namespaces, read-only host, private /tmp, OOM kills, pids limits, daemons
//! killed with the environment.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::{TestHome, env_processes, wait_env_empty};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

/// Whether this host can run pods and cgroups (root, namespaces, cgroup controllers); prints
/// why not and skips, or fails under PTEST_REQUIRE_ALL=1.
fn sandbox_available(t: &TestHome) -> bool {
    let missing = crate::support::missing_features(t, &["namespaces", "cgroups"]);
    crate::support::runnable(
        (!missing.is_empty()).then(|| format!("sandbox tests need: {}", missing.join(", "))),
    )
}

fn out(t: &TestHome, args: &[&str]) -> String {
    let a = t.ptest(args).assert().success();
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

#[test]
fn medium_is_the_default_and_isolates_pids_hostname_filesystem_and_tmp() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.create("pod-a");
    t.create("pod-b");
    let env = &t.json(["env", "show", "pod-a"])["environment"];
    assert_eq!(env["details"]["isolation"]["security"], "medium");
    let seen = out(
        &t,
        &[
            "env",
            "exec",
            "pod-a",
            "--",
            "sh",
            "-c",
            "echo $$; hostname",
        ],
    );
    let mut lines = seen.lines();
    assert!(lines.next().unwrap().parse::<u32>().unwrap() < 10, "{seen}");
    assert_eq!(lines.next(), Some("pod-a"));
    t.ptest(["env", "exec", "pod-a", "--", "touch", "/usr/ptest-was-here"])
        .assert()
        .failure()
        .stderr(contains("Read-only file system"));
    assert!(!std::path::Path::new("/usr/ptest-was-here").exists());
    // The root is writable and keeps its host path.
    let root = env["root"].as_str().unwrap();
    t.ptest([
        "env",
        "exec",
        "pod-a",
        "--",
        "sh",
        "-c",
        "echo inside > made-here",
    ])
    .assert()
    .success();
    assert_eq!(
        std::fs::read_to_string(format!("{root}/workspace/made-here")).unwrap(),
        "inside\n"
    );
    // /tmp is private to each environment.
    t.ptest([
        "env",
        "exec",
        "pod-a",
        "--",
        "sh",
        "-c",
        "echo a > /tmp/ptest-private",
    ])
    .assert()
    .success();
    t.ptest(["env", "exec", "pod-b", "--", "cat", "/tmp/ptest-private"])
        .assert()
        .failure();
    assert!(!std::path::Path::new("/tmp/ptest-private").exists());
    t.ptest(["env", "exec", "pod-a", "--", "cat", "/tmp/ptest-private"])
        .assert()
        .success()
        .stdout("a\n");
}

#[test]
fn loopback_environments_both_bind_the_same_port_and_none_has_no_network() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    for name in ["lo-a", "lo-b"] {
        t.ptest(["env", "create", name, "--network", "loopback"])
            .assert()
            .success();
    }
    // Both hold 127.0.0.1:8080 at the same time.
    let server = "import socket,time; s=socket.socket(); s.bind(('127.0.0.1', 8080)); s.listen(); \
                  open('bound','w').close(); time.sleep(30)";
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("ptest"))
        .env("PTEST_HOME", t.home())
        .args(["env", "exec", "lo-a", "--", "python3", "-c", server])
        .spawn()
        .unwrap();
    let root_a = t.json(["env", "show", "lo-a"])["environment"]["root"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..500 {
        if std::path::Path::new(&format!("{root_a}/workspace/bound")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    t.ptest([
        "env",
        "exec",
        "lo-b",
        "--",
        "python3",
        "-c",
        "import socket; s=socket.socket(); s.bind(('127.0.0.1', 8080)); print('bound')",
    ])
    .assert()
    .success()
    .stdout("bound\n");
    first.kill().unwrap();
    first.wait().unwrap();

    t.ptest(["env", "create", "offline", "--network", "none"])
        .assert()
        .success();
    let devs = out(
        &t,
        &["env", "exec", "offline", "--", "cat", "/proc/net/dev"],
    );
    let ifaces: Vec<&str> = devs
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, ["lo"]);
    t.ptest([
        "env",
        "exec",
        "offline",
        "--",
        "python3",
        "-c",
        "import socket; socket.create_connection(('127.0.0.1', 9), timeout=1)",
    ])
    .assert()
    .failure();
}

#[test]
fn memory_limit_kills_and_says_oom() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.ptest(["env", "create", "small", "--memory", "64M"])
        .assert()
        .success();
    let result = t.exec_json(
        "small",
        &["python3", "-c", "b = bytearray(300 * 1024 * 1024)"],
    );
    assert_eq!(result["signal"], 9);
    assert_eq!(result["oom_killed"], true);
    t.ptest([
        "env",
        "exec",
        "small",
        "--",
        "python3",
        "-c",
        "b = bytearray(300 * 1024 * 1024)",
    ])
    .assert()
    .code(137)
    .stderr(contains("killed: out of memory (limit 64M)"));
    let stopped: Vec<serde_json::Value> = String::from_utf8(
        t.ptest(["events", "--env", "small", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .filter(|e: &serde_json::Value| e["event"] == "process_stopped")
    .collect();
    assert!(
        stopped.iter().all(|e| e["details"]["oom_killed"] == true),
        "{stopped:?}"
    );
    let stats = t.json(["env", "stats", "small"]);
    assert!(stats["oom_kills"].as_u64().unwrap() >= 2, "{stats}");
    assert!(
        stats["memory_peak_bytes"].as_u64().unwrap() <= 64 << 20,
        "{stats}"
    );
    // A kill that is not the limit's is not called an OOM kill.
    let killed = t.exec_json("small", &["sh", "-c", "kill -9 $$"]);
    assert_eq!(
        (killed["signal"].as_i64(), killed["oom_killed"].as_bool()),
        (Some(9), Some(false))
    );
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.ptest(["env", "create", "few", "--pids", "10"])
        .assert()
        .success();
    let result = t.exec_json(
        "few",
        &[
            "sh",
            "-c",
            "for i in $(seq 40); do sleep 5 & done 2>&1; wait",
        ],
    );
    let said = format!("{}{}", result["stdout"], result["stderr"]);
    assert!(
        said.contains("fork") || said.contains("Resource temporarily unavailable"),
        "{said}"
    );
}

#[test]
fn rm_kills_a_daemon_that_left_its_process_group() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    let env = t.create("daemons");
    let id = env["id"].as_str().unwrap().to_owned();
    t.ptest([
        "env",
        "exec",
        "daemons",
        "--",
        "sh",
        "-c",
        "(setsid sleep 1000 >/dev/null 2>&1 &) & sleep 0.3",
    ])
    .assert()
    .success();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !env_processes(&id).is_empty(),
        "the daemon should outlive its command"
    );
    let sandbox = t.json(["env", "show", "daemons"])["environment"]["details"]["sandbox"].clone();
    let holder = sandbox["holder_pid"]
        .as_i64()
        .zip(sandbox["start_time"].as_u64());
    t.ptest(["env", "rm", "daemons"]).assert().success();
    assert!(
        wait_env_empty(&id),
        "survived env rm: {:?}",
        env_processes(&id)
    );
    if let Some((pid, start)) = holder {
        // Gone, a zombie, or its pid now another process's (started at another time).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let alive = fields.first().is_some_and(|s| *s != "Z" && *s != "X")
            && fields.get(19) == Some(&start.to_string().as_str());
        assert!(!alive, "the holder {pid} survived env rm");
    }
    // No directory left in any hierarchy (v1: one per controller; v2: the one).
    for controller in ["memory", "cpu", "cpuacct", "pids", "freezer"] {
        let dir = cgroup_file(&id, controller, "");
        assert!(!dir.exists(), "{} survived env rm", dir.display());
    }
}

#[test]
fn high_drops_capabilities_network_and_the_host_tree() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.ptest(["env", "create", "tight", "--security", "high"])
        .assert()
        .success();
    let status = out(
        &t,
        &[
            "env",
            "exec",
            "tight",
            "--",
            "grep",
            "-E",
            "^(CapEff|NoNewPrivs)",
            "/proc/self/status",
        ],
    );
    assert!(
        status.contains("CapEff:\t0000000000000000") && status.contains("NoNewPrivs:\t1"),
        "{status}"
    );
    let devs = out(&t, &["env", "exec", "tight", "--", "cat", "/proc/net/dev"]);
    assert_eq!(devs.lines().count(), 3, "only lo: {devs}");
    t.ptest(["env", "exec", "tight", "--", "ls", "/root"])
        .assert()
        .failure();
    t.ptest(["env", "exec", "tight", "--", "ls", "/usr/bin/env"])
        .assert()
        .success();
}

#[test]
fn low_shares_host_namespaces_but_has_a_cgroup() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.ptest(["env", "create", "thin", "--security", "low"])
        .assert()
        .success();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    t.ptest(["env", "exec", "thin", "--", "hostname"])
        .assert()
        .success()
        .stdout(host);
    let id = t.json(["env", "show", "thin"])["environment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        std::path::Path::new(&format!("/sys/fs/cgroup/pids/ptest/env-{id}")).exists()
            || std::path::Path::new(&format!("/sys/fs/cgroup/ptest/env-{id}")).exists()
    );
}

/// A `TestHome` whose directory is not under `/tmp` (every pod has a private `/tmp`, which
/// would hide the home for a reason other than the mask under test).
fn home_outside_tmp() -> TestHome {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    for sub in ["home", "xdg-config", "cwd"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    TestHome { dir }
}

fn root_of(t: &TestHome, name: &str) -> String {
    t.json(["env", "show", name])["environment"]["root"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn id_of(t: &TestHome, name: &str) -> String {
    t.json(["env", "show", name])["environment"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The environment's cgroup directory for `controller` (v1) or its v2 directory.
fn cgroup_file(id: &str, controller: &str, file: &str) -> std::path::PathBuf {
    let v1 = std::path::PathBuf::from(format!("/sys/fs/cgroup/{controller}/ptest/env-{id}"));
    if v1.is_dir() {
        v1.join(file)
    } else {
        std::path::PathBuf::from(format!("/sys/fs/cgroup/ptest/env-{id}/{file}"))
    }
}

#[test]
fn pid_namespace_shows_only_own_processes_and_cannot_signal_the_host() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.create("pa");
    t.create("pb");
    let mut host = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let mut other = std::process::Command::new(assert_cmd::cargo::cargo_bin("ptest"))
        .env("PTEST_HOME", t.home())
        .args(["env", "exec", "pb", "--", "sleep", "31"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let listing = out(&t, &["env", "exec", "pa", "--", "ps", "-eo", "pid,args"]);
    assert!(
        !listing.contains("sleep"),
        "B's and the host's sleeps seen: {listing}"
    );
    // The holder, ps itself, and nothing else.
    assert_eq!(listing.lines().count(), 3, "{listing}");
    t.ptest([
        "env",
        "exec",
        "pa",
        "--",
        "kill",
        "-TERM",
        &host.id().to_string(),
    ])
    .assert()
    .failure();
    assert!(
        crate::support::alive(host.id()),
        "a host process was signalled"
    );
    host.kill().unwrap();
    host.wait().unwrap();
    other.kill().unwrap();
    other.wait().unwrap();
}

#[test]
fn environments_cannot_read_or_write_each_others_roots_or_the_state_db() {
    let t = home_outside_tmp();
    if !sandbox_available(&t) {
        return;
    }
    t.create("ra");
    t.create("rb");
    let (root_a, root_b) = (root_of(&t, "ra"), root_of(&t, "rb"));
    std::fs::write(format!("{root_b}/workspace/secret"), "b's").unwrap();
    let home = t.home().display().to_string();
    for (cmd, what) in [
        (format!("cat {root_b}/workspace/secret"), "read B's file"),
        (format!("ls {root_b}"), "list B's root"),
        (format!("touch {root_b}/workspace/x"), "write into B's root"),
        (format!("cat {home}/state.db"), "read the state database"),
    ] {
        t.ptest(["env", "exec", "ra", "--", "sh", "-c", &cmd])
            .assert()
            .failure();
        assert!(
            !std::path::Path::new(&format!("{root_b}/workspace/x")).exists(),
            "{what}"
        );
    }
    // Inside, the home holds only the way to A's own root.
    assert_eq!(
        out(&t, &["env", "exec", "ra", "--", "ls", "-A", &home]),
        "envs\n"
    );
    t.ptest([
        "env",
        "exec",
        "ra",
        "--",
        "touch",
        &format!("{root_a}/workspace/mine"),
    ])
    .assert()
    .success();
    assert!(std::path::Path::new(&format!("{root_a}/workspace/mine")).exists());
}

#[test]
fn a_fork_bomb_is_contained_by_pids_and_the_environment_still_removes() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.ptest(["env", "create", "bomb", "--pids", "64"])
        .assert()
        .success();
    let id = id_of(&t, "bomb");
    let mut bomb = std::process::Command::new(assert_cmd::cargo::cargo_bin("ptest"))
        .env("PTEST_HOME", t.home())
        .args([
            "env",
            "exec",
            "bomb",
            "--",
            "sh",
            "-c",
            "f() { f | f & }; f; sleep 60",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let events = cgroup_file(&id, "pids", "pids.events");
    let mut hit = 0;
    for _ in 0..300 {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        hit = text
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if hit > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(hit > 0, "the pids limit was never reached");
    let current: u64 = std::fs::read_to_string(cgroup_file(&id, "pids", "pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 64, "{current} processes");
    t.ptest(["env", "rm", "--force", "bomb"]).assert().success();
    assert!(wait_env_empty(&id), "survived: {:?}", env_processes(&id));
    assert!(!events.exists());
    let _ = bomb.kill();
    bomb.wait().unwrap();
}

#[test]
fn cpus_limit_throttles_a_busy_loop() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.ptest(["env", "create", "slow", "--cpus", "0.2"])
        .assert()
        .success();
    let id = id_of(&t, "slow");
    t.ptest([
        "env",
        "exec",
        "slow",
        "--",
        "timeout",
        "1",
        "sh",
        "-c",
        "while :; do :; done",
    ])
    .assert()
    .code(124);
    let stat = std::fs::read_to_string(cgroup_file(&id, "cpu", "cpu.stat")).unwrap();
    let throttled: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(throttled > 0, "{stat}");
}

#[test]
fn strict_adds_seccomp_and_landlock_to_high() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    let doctor = t.json(["doctor"]);
    let strict = doctor["levels"][0]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "strict")
        .unwrap()
        .clone();
    if !ptest_testkit::runnable(
        (strict["ok"] != true).then(|| format!("strict unavailable: {strict}")),
    ) {
        return;
    }
    t.ptest(["env", "create", "hi", "--security", "high"])
        .assert()
        .success();
    t.ptest(["env", "create", "st", "--security", "strict"])
        .assert()
        .success();
    let iso = &t.json(["env", "show", "st"])["environment"]["details"]["isolation"];
    assert_eq!(iso["security"], "strict");
    assert!(iso["landlock_abi"].as_u64().unwrap() >= 1, "{iso}");
    let status = out(
        &t,
        &[
            "env",
            "exec",
            "st",
            "--",
            "grep",
            "-E",
            "^(Seccomp|NoNewPrivs|CapEff):",
            "/proc/self/status",
        ],
    );
    assert!(
        status.contains("Seccomp:\t2")
            && status.contains("NoNewPrivs:\t1")
            && status.contains("CapEff:\t0000000000000000"),
        "{status}"
    );
    // A user namespace needs no capability: the filters of high and strict answer EPERM.
    for env in ["hi", "st"] {
        t.ptest(["env", "exec", env, "--", "unshare", "-U", "true"])
            .assert()
            .failure()
            .stderr(contains("Operation not permitted"));
    }
    let mount = "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); \
                 r = libc.mount(b'none', b'/mnt', b'tmpfs', 0, None); \
                 print(r, os.strerror(ctypes.get_errno()))";
    assert_eq!(
        out(&t, &["env", "exec", "st", "--", "python3", "-c", mount]),
        "-1 Operation not permitted\n"
    );
    // The pod's /tmp is a writable mount; Landlock still refuses it at strict.
    t.ptest(["env", "exec", "hi", "--", "touch", "/tmp/ok"])
        .assert()
        .success();
    t.ptest(["env", "exec", "st", "--", "touch", "/tmp/no"])
        .assert()
        .failure()
        .stderr(contains("Permission denied"));
    // Beneath the root everything works, renames across directories included.
    let root = root_of(&t, "st");
    t.ptest([
        "env",
        "exec",
        "st",
        "--",
        "sh",
        "-c",
        "echo x > made && mkdir -p d && mv made d/ && python3 -c 'import tempfile; tempfile.mkstemp()' && cat /dev/null",
    ])
    .assert()
    .success();
    assert!(std::path::Path::new(&format!("{root}/workspace/d/made")).exists());
}

#[test]
fn disk_and_files_limits_are_enforced_by_a_tmpfs_root() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.ptest(["env", "create", "q", "--disk", "10M", "--files", "100"])
        .assert()
        .success();
    let (id, root) = (id_of(&t, "q"), root_of(&t, "q"));
    let mountinfo = || std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mountinfo().contains(&format!(" {root} ")),
        "root not mounted"
    );
    let writer = "import errno\n\
                  n = 0\n\
                  f = open('big', 'wb', buffering=0)\n\
                  try:\n    \
                      while True: n += f.write(b'x' * 65536)\n\
                  except OSError as e:\n    \
                      print(n, errno.errorcode[e.errno])\n";
    let said = out(&t, &["env", "exec", "q", "--", "python3", "-c", writer]);
    let (n, code) = said.trim().split_once(' ').unwrap();
    let n: u64 = n.parse().unwrap();
    assert_eq!(code, "ENOSPC", "{said}");
    assert!((9 << 20..=10 << 20).contains(&n), "{n} bytes written");
    t.ptest(["env", "exec", "q", "--", "rm", "big"])
        .assert()
        .success();
    let files = "import errno\n\
                 n = 0\n\
                 try:\n    \
                     while True:\n        \
                         open(f'f{n}', 'w').close(); n += 1\n\
                 except OSError as e:\n    \
                     print(n, errno.errorcode[e.errno])\n";
    assert_eq!(
        out(&t, &["env", "exec", "q", "--", "python3", "-c", files]),
        "100 ENOSPC\n"
    );
    t.ptest(["env", "rm", "q"]).assert().success();
    assert!(!mountinfo().contains(&format!("ptest-env-{id}")));
    assert!(!mountinfo().contains(&format!(" {root} ")));
    assert!(!std::path::Path::new(&root).exists());
}

#[test]
fn what_the_host_cannot_apply_is_refused_or_recorded_when_degraded() {
    let t = TestHome::new();
    let without = |what: &str, args: &[&str]| {
        let mut cmd = t.ptest(args);
        cmd.env("PTEST_SANDBOX_DISABLE", what);
        cmd
    };
    without("landlock", &["env", "create", "s", "--security", "strict"])
        .assert()
        .code(2)
        .stderr(contains("Landlock").and(contains("--allow-degraded")));
    without("quota", &["env", "create", "d", "--disk", "100M"])
        .assert()
        .code(2)
        .stderr(contains("--disk"));
    without(
        "namespaces,cgroups",
        &[
            "env",
            "create",
            "n",
            "--security",
            "medium",
            "--memory",
            "64M",
        ],
    )
    .assert()
    .code(2)
    .stderr(contains("security medium").and(contains("--memory")));
    without("bridge", &["env", "create", "b", "--network", "bridge"])
        .assert()
        .code(2)
        .stderr(contains(
            "network bridge (disabled by PTEST_SANDBOX_DISABLE)",
        ));
    t.ptest(["env", "create", "m", "--memory", "lots"])
        .assert()
        .code(2)
        .stderr(contains("invalid size"));
    assert!(t.names().is_empty());
    // Degraded: the rest is applied and each drop recorded.
    without(
        "namespaces,cgroups",
        &[
            "env",
            "create",
            "n",
            "--security",
            "medium",
            "--memory",
            "64M",
            "--allow-degraded",
        ],
    )
    .assert()
    .success();
    let iso = &t.json(["env", "show", "n"])["environment"]["details"]["isolation"];
    assert_eq!(
        (
            iso["security"].as_str(),
            iso["pod"].as_bool(),
            iso["cgroup"].as_bool()
        ),
        (Some("low"), Some(false), Some(false))
    );
    assert_eq!(iso["dropped"].as_array().unwrap().len(), 2, "{iso}");
    t.ptest(["env", "exec", "n", "--", "true"])
        .assert()
        .success();
    if !sandbox_available(&t) {
        return;
    }
    without(
        "landlock",
        &[
            "env",
            "create",
            "s",
            "--security",
            "strict",
            "--allow-degraded",
        ],
    )
    .assert()
    .success();
    let iso = &t.json(["env", "show", "s"])["environment"]["details"]["isolation"];
    assert_eq!(iso["security"], "high");
    assert!(iso["dropped"][0].as_str().unwrap().contains("strict"));
    t.ptest(["env", "show", "s"])
        .assert()
        .success()
        .stdout(contains("dropped"));
    without(
        "quota",
        &["env", "create", "d", "--disk", "10M", "--allow-degraded"],
    )
    .assert()
    .success();
    let root = root_of(&t, "d");
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!(" {root} "))
    );
}

#[test]
fn fsize_limits_the_size_of_a_written_file() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.ptest(["env", "create", "capped", "--fsize", "1M"])
        .assert()
        .success();
    let result = t.exec_json(
        "capped",
        &["sh", "-c", "head -c 5000000 /dev/zero > big; ls -l big"],
    );
    let root = t.json(["env", "show", "capped"])["environment"]["root"]
        .as_str()
        .unwrap()
        .to_owned();
    let size = std::fs::metadata(format!("{root}/workspace/big"))
        .unwrap()
        .len();
    assert_eq!(size, 1 << 20, "{result}");
}

#[test]
fn sigkill_of_env_exec_ends_the_whole_command_tree() {
    sigkill_of_env_exec(&[], "");
}

/// At `low` the command runs on the host, yet its relay outlives the killed `ptest`.
#[test]
fn sigkill_of_env_exec_ends_the_whole_command_tree_at_security_low() {
    sigkill_of_env_exec(&["--security", "low"], "");
}

/// Without namespaces or cgroups (a host where ptest is not root) the relay still does it.
#[test]
fn sigkill_of_env_exec_ends_the_whole_command_tree_without_a_sandbox() {
    sigkill_of_env_exec(&[], "namespaces,cgroups");
}

/// Starts a command that forks two children in environment `orphans` (created with `create`
/// flags, and `disabled` as PTEST_SANDBOX_DISABLE), SIGKILLs `ptest env exec`, and checks that
/// nothing of the command is left.
fn sigkill_of_env_exec(create: &[&str], disabled: &str) {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    let created = t
        .ptest([&["env", "create", "--json", "orphans"], create].concat())
        .env("PTEST_SANDBOX_DISABLE", disabled)
        .assert()
        .success();
    let env: serde_json::Value = serde_json::from_slice(&created.get_output().stdout).unwrap();
    let id = env["id"].as_str().unwrap().to_owned();
    let root = env["root"].as_str().unwrap().to_owned();
    let mut exec = std::process::Command::new(assert_cmd::cargo::cargo_bin("ptest"))
        .env("PTEST_HOME", t.home())
        .env("PTEST_SANDBOX_DISABLE", disabled)
        .args([
            "env",
            "exec",
            "orphans",
            "--",
            "sh",
            "-c",
            "sleep 300 & sleep 300 & touch started; wait",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if std::path::Path::new(&format!("{root}/workspace/started")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(env_processes(&id).len() >= 3, "{:?}", env_processes(&id));
    exec.kill().unwrap(); // SIGKILL: ptest gets no chance to clean up
    exec.wait().unwrap();
    assert!(
        wait_env_empty(&id),
        "outlived a SIGKILLed env exec: {:?}",
        env_processes(&id)
    );
}

/// Ctrl-C on `ptest env exec` reaches the command (which runs in a process group of its own
/// in the pod, not the terminal's): it decides how to end, and its exit code is ptest's.
#[test]
fn sigint_to_env_exec_reaches_the_command_and_its_exit_code_is_kept() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    let created = t
        .ptest(["env", "create", "--json", "ctrlc"])
        .assert()
        .success();
    let env: serde_json::Value = serde_json::from_slice(&created.get_output().stdout).unwrap();
    let started = std::path::Path::new(env["root"].as_str().unwrap()).join("workspace/started");
    let exec = std::process::Command::new(assert_cmd::cargo::cargo_bin("ptest"))
        .env("PTEST_HOME", t.home())
        .args(["env", "exec", "ctrlc", "--", "sh", "-c"])
        .arg("trap 'echo interrupted; exit 7' INT; touch started; while :; do sleep 0.1; done")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if started.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(started.exists(), "the command did not start");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(exec.id() as i32, libc::SIGINT) }, 0);
    let out = exec.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "interrupted\n");
}

/// CI runners and `nsenter` put ptest in a PID namespace whose session leader is outside it:
/// the session reads as 0 there, and exec must still run and still end what a command left.
#[test]
fn exec_works_in_a_pid_namespace_whose_session_leader_is_outside() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    // The namespace ends with its first process: it waits so that the check below sees what
    // the exec left, not what the namespace's end killed.
    let script = "ptest env create nested --json > created.json; \
        ptest env exec nested -- sh -c 'sleep 300 & echo ran' > ran.txt; \
        echo $? > done; sleep 60";
    let mut inside = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount-proc", "--"])
        .args(["sh", "-c", script])
        .env("PATH", crate::support::path_with_ptest())
        .env("PTEST_HOME", t.home())
        .current_dir(t.cwd())
        .spawn()
        .unwrap();
    // `echo $? > done` makes the file before it writes the status: wait for the line.
    let done = t.cwd().join("done");
    let read_done = || std::fs::read_to_string(&done).unwrap_or_default();
    ptest_testkit::wait_until(std::time::Duration::from_secs(10), || {
        read_done().ends_with('\n')
    });
    let code = read_done();
    let ran = std::fs::read_to_string(t.cwd().join("ran.txt")).unwrap_or_default();
    let created = std::fs::read_to_string(t.cwd().join("created.json")).unwrap_or_default();
    let id = serde_json::from_str::<serde_json::Value>(&created)
        .map(|env| env["id"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let emptied = wait_env_empty(&id);
    let _ = inside.kill();
    inside.wait().unwrap();
    assert_eq!(code.trim(), "0", "exec failed (created: {created})");
    assert_eq!(ran.trim(), "ran");
    assert!(emptied, "the background sleep outlived its command");
}

/// Issue 15, item 6: 1 GB of output through `env exec --json` keeps ptest's memory bounded;
/// the JSON holds the first 8 MiB, says it was truncated and where all of it is.
#[test]
fn a_gigabyte_of_output_is_spooled_not_held_in_memory() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    // The root in memory (a size-limited tmpfs): the spooled gigabyte needs no host disk.
    t.ptest(["env", "create", "loud", "--disk", "1100M"])
        .assert()
        .success();
    // ptest's peak RSS, read by a parent that waits for it (its only child: pod commands are
    // the holder's).
    let measure = "import subprocess, resource, json, sys\n\
         r = subprocess.run(sys.argv[1:], capture_output=True)\n\
         j = json.loads(r.stdout)\n\
         print(json.dumps({'rss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, \
         'len': len(j['stdout']), 'truncated': j['stdout_truncated'], 'file': j.get('stdout_file'), \
         'stderr': j['stderr'], 'stderr_truncated': j['stderr_truncated']}))\n";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(measure)
        .arg(assert_cmd::cargo::cargo_bin("ptest"))
        .args(["env", "exec", "--json", "loud", "--", "sh", "-c"])
        .arg("yes | head -c 1G; echo done >&2")
        .env("PTEST_HOME", t.home())
        .output()
        .unwrap();
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(seen["rss_kib"].as_u64().unwrap() < 64 << 10, "{seen}");
    assert_eq!(seen["len"], 8 << 20, "{seen}");
    assert_eq!(seen["truncated"], true);
    assert_eq!(
        (&seen["stderr"], &seen["stderr_truncated"]),
        (&serde_json::json!("done\n"), &serde_json::json!(false))
    );
    let file = seen["file"].as_str().unwrap();
    assert!(file.starts_with(&root_of(&t, "loud")), "{file}");
    assert_eq!(std::fs::metadata(file).unwrap().len(), 1 << 30);
}

/// Issue 15, item 8: `env validate` finds real breakage (the pod seeing a replaced root, a
/// dead holder, a missing cgroup) and raises no alarm on environments that are fine.
#[test]
fn validate_finds_a_replaced_root_a_dead_holder_and_a_missing_cgroup() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    let failed = |name: &str| -> Vec<String> {
        let out = t
            .ptest(["env", "validate", "--json", name])
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["ok"] == false)
            .map(|f| f["check"].as_str().unwrap().to_owned())
            .collect()
    };
    // Fine: plain, size-limited, loopback.
    for (name, args) in [
        ("plain", &[][..]),
        ("quota", &["--disk", "8M"][..]),
        ("lo", &["--network", "loopback"][..]),
    ] {
        let mut argv = vec!["env", "create", name];
        argv.extend_from_slice(args);
        t.ptest(&argv).assert().success();
        assert!(failed(name).is_empty(), "{name}: {:?}", failed(name));
    }
    // The root replaced on the host: the pod still sees the old one.
    let root = root_of(&t, "plain");
    std::fs::rename(&root, format!("{root}.moved")).unwrap();
    let copied = std::process::Command::new("cp")
        .args(["-a", &format!("{root}.moved"), &root])
        .status()
        .unwrap();
    assert!(copied.success());
    assert_eq!(failed("plain"), vec!["pod view".to_owned()]);
    std::fs::remove_dir_all(format!("{root}.moved")).unwrap();
    // A dead holder.
    let env = t.json(["env", "show", "lo"]);
    let holder = env["environment"]["details"]["sandbox"]["holder_pid"]
        .as_i64()
        .unwrap();
    std::process::Command::new("kill")
        .args(["-9", &holder.to_string()])
        .status()
        .unwrap();
    assert!(crate::support::wait_gone(holder as u32));
    assert_eq!(failed("lo"), vec!["holder".to_owned()]);
    t.ptest(["env", "validate", "lo"]).assert().code(1);
    // A missing cgroup (removed behind ptest's back, after its holder).
    let id = id_of(&t, "lo");
    for controller in ["memory", "pids", "cpu", "freezer", "cpuacct", "systemd"] {
        let _ = std::fs::remove_dir(cgroup_file(&id, controller, ""));
    }
    assert!(
        failed("lo").contains(&"cgroup".to_owned()),
        "{:?}",
        failed("lo")
    );
}

fn holder_pid(t: &TestHome, name: &str) -> i64 {
    t.json(["env", "show", name])["environment"]["details"]["sandbox"]["holder_pid"]
        .as_i64()
        .expect("a medium environment has a holder")
}

/// Checks that `holder` is a fresh image of `program` (as `ps` shows every holder) keeping
/// under `max_kib` of anonymous memory: the pages it wrote (relocated data, heap, stack,
/// `.bss`). Its private dirty memory is the same plus, just after a build, the program's own
/// pages not yet written back to disk, so it is not the one measured here.
fn assert_fresh_holder(holder: i64, program: &std::path::Path, max_kib: u64) {
    let cmdline = std::fs::read(format!("/proc/{holder}/cmdline")).unwrap();
    assert_eq!(cmdline, b"ptest-pod-holder\0");
    let exe = std::fs::read_link(format!("/proc/{holder}/exe")).unwrap();
    assert_eq!(
        exe,
        std::fs::canonicalize(program).unwrap(),
        "the holder's program"
    );
    let rollup = std::fs::read_to_string(format!("/proc/{holder}/smaps_rollup")).unwrap();
    let anonymous_kib: u64 = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Anonymous:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("smaps_rollup has an Anonymous line");
    assert!(
        anonymous_kib < max_kib,
        "the holder keeps {anonymous_kib} KiB of anonymous memory:\n{rollup}"
    );
}

/// An idle environment costs its holder, and the holder is a fresh image of the small
/// `ptest-pod-holder` installed beside ptest: none of the creating call's heap, stack or
/// relocated data, nor ptest's own. (In this debug build a holder that only forked kept over
/// 1 MiB of anonymous memory; one that re-executes ptest keeps 227 KiB, one that executes
/// `ptest-pod-holder` 159 KiB.)
#[test]
fn an_idle_environments_holder_is_a_fresh_small_process() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    t.create("idle");
    let program = std::path::Path::new(env!("CARGO_BIN_EXE_ptest-pod-holder"));
    assert_fresh_holder(holder_pid(&t, "idle"), program, 200);
    // It serves commands as the forked holder did, and a signal-sensitive pipeline behaves.
    let seen = out(
        &t,
        &[
            "env",
            "exec",
            "idle",
            "--",
            "sh",
            "-c",
            "yes | head -n 2; echo $$",
        ],
    );
    assert_eq!(seen, "y\ny\n2\n");
}

/// Where no `ptest-pod-holder` is installed beside ptest (a copy of ptest alone), or the one
/// there is of another build of the holder's code (`cargo run -p ptest` relinks ptest alone),
/// the holder re-executes ptest itself, still a fresh image, and serves commands.
#[test]
fn a_holder_re_executes_ptest_where_no_holder_program_of_its_build_is_beside_it() {
    let t = TestHome::new();
    if !sandbox_available(&t) {
        return;
    }
    // The holder program with its build (16 hex digits, in a section of its own) changed.
    let mut other_build = std::fs::read(env!("CARGO_BIN_EXE_ptest-pod-holder")).unwrap();
    let build = env!("PTEST_HOLDER_BUILD").as_bytes();
    let at = other_build
        .windows(build.len())
        .position(|w| w == build)
        .expect("the holder carries its build");
    other_build[at..at + build.len()].copy_from_slice(b"0123456789abcdef");
    for (case, holder) in [("alone", None), ("other-build", Some(&other_build))] {
        let dir = t.dir.path().join(case);
        std::fs::create_dir(&dir).unwrap();
        let ptest = dir.join("ptest");
        // A hard link names this directory in /proc/self/exe as a copy does, without copying.
        if std::fs::hard_link(env!("CARGO_BIN_EXE_ptest"), &ptest).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_ptest"), &ptest).unwrap();
        }
        if let Some(holder) = holder {
            let path = dir.join("ptest-pod-holder");
            std::fs::write(&path, holder).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let run = |args: &[&str]| {
            let bound = t.std_command(args);
            let mut cmd = std::process::Command::new(&ptest);
            cmd.env_clear()
                .envs(bound.get_envs().filter_map(|(k, v)| Some((k, v?))))
                .current_dir(t.cwd())
                .args(args);
            assert_cmd::Command::from_std(cmd)
        };
        let name = format!("idle-{case}");
        run(&["env", "create", &name]).assert().success();
        assert_fresh_holder(holder_pid(&t, &name), &ptest, 512);
        run(&["env", "exec", &name, "--", "echo", "served"])
            .assert()
            .success()
            .stdout("served\n");
    }
}
