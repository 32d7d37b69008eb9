//! Fault injection (`ptest net fault|clear|list`): a proxy in front of an environment's port,
//! measured from real clients — latency and bandwidth as ratios, refusals, resets, cut-offs and
//! stalls as what a socket sees — and nothing left behind by `env rm`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::support::{TestHome, env_processes, wait_env_empty};
use predicates::str::contains;

/// An environment `name` with port lease `http`, and its JSON.
fn env_with_port(t: &TestHome, name: &str) -> serde_json::Value {
    t.json(["env", "create", name, "--port", "http"])
}

fn port_of(env: &serde_json::Value) -> u16 {
    env["ports"]["http"].as_u64().unwrap() as u16
}

/// `ptest net fault ENV http ARGS... --json`: the proxy's port.
fn fault(t: &TestHome, env: &str, args: &[&str]) -> u16 {
    let mut all = vec!["net", "fault", env, "http"];
    all.extend_from_slice(args);
    t.json(all)["proxy_port"].as_u64().unwrap() as u16
}

/// Serves on 127.0.0.1:`port` from this test process (an environment with host networking
/// reaches it there): each connection gets `serve` on a thread of its own.
fn serve(port: u16, serve: fn(TcpStream)) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
}

fn echo(mut s: TcpStream) {
    let mut r = s.try_clone().unwrap();
    let _ = std::io::copy(&mut r, &mut s);
}

/// Sends 64 KiB, then closes.
fn send_64k(mut s: TcpStream) {
    let _ = s.write_all(&[b'x'; 64 * 1024]);
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// The median of `n` round trips of 4 bytes over one connection to `port`.
fn median_round_trip(port: u16, n: usize) -> Duration {
    let mut s = connect(port);
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            s.write_all(b"ping").unwrap();
            let mut buf = [0; 4];
            s.read_exact(&mut buf).unwrap();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

/// How long reading everything from `port` takes, and how many bytes came.
fn download(port: u16) -> (Duration, usize) {
    let mut s = connect(port);
    let start = Instant::now();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    (start.elapsed(), got.len())
}

#[test]
fn latency_multiplies_round_trips_and_the_proxy_is_a_process_of_the_environment() {
    let t = TestHome::new();
    let env = env_with_port(&t, "web");
    serve(port_of(&env), echo);
    let proxy = fault(&t, "web", &[]);
    assert_ne!(proxy, port_of(&env));
    // New commands find the proxy's port in their environment, as with any lease.
    let var = t.exec_json("web", &["sh", "-c", "printf %s $PTEST_PORT_HTTP_PROXY"]);
    assert_eq!(var["stdout"], proxy.to_string());
    let procs = t.json(["proc", "list", "web"]);
    assert!(
        procs
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "proxy.http" && p["status"] == "running"),
        "{procs}"
    );

    let clear = median_round_trip(proxy, 9);
    fault(&t, "web", &["--latency", "100ms"]);
    let slow = median_round_trip(proxy, 5);
    fault(&t, "web", &["--latency", "200ms"]);
    let slower = median_round_trip(proxy, 5);
    // 100 ms each way dwarfs a loopback round trip (even one slowed by a busy host: the bound
    // holds up to 50 ms); twice the latency, twice the time.
    assert!(
        slow.as_secs_f64() / clear.as_secs_f64() > 4.0,
        "{clear:?} {slow:?}"
    );
    let ratio = slower.as_secs_f64() / slow.as_secs_f64();
    assert!((1.5..2.5).contains(&ratio), "{slow:?} {slower:?}");

    let listed = t.json(["net", "list", "web"]);
    assert_eq!(listed[0]["port"], "http");
    assert_eq!(listed[0]["upstream_port"], port_of(&env));
    assert_eq!(listed[0]["proxy_var"], "PTEST_PORT_HTTP_PROXY");
    assert_eq!(listed[0]["faults"]["latency"], "200ms");
    t.ptest(["net", "list"])
        .assert()
        .success()
        .stdout(contains("latency 200ms"));
}

/// Creates sandboxed environment `name` with port lease `http` and `security`, in its own
/// network namespace; false (the test skips) when this host cannot make it, which fails under
/// PTEST_REQUIRE_ALL=1.
fn sandboxed_env(t: &TestHome, name: &str, security: &str) -> bool {
    let created = t
        .ptest([
            "env",
            "create",
            name,
            "--security",
            security,
            "--network",
            "loopback",
            "--port",
            "http",
        ])
        .output()
        .unwrap();
    if created.status.success() {
        return true;
    }
    ptest_testkit::runnable(Some(format!(
        "security {security} with network loopback: {}",
        String::from_utf8_lossy(&created.stderr)
    )))
}

/// In environment `name`, whose network namespace is its own, starts an echo server on its
/// port `http` and checks from a client in there too that `--down` refuses connections to
/// the proxy and `net clear` restores them.
fn down_and_clear_inside(t: &TestHome, name: &str) {
    t.ptest([
        "proc",
        "start",
        name,
        "--name",
        "echo",
        "--ready-port",
        "http",
        "--",
        "python3",
        "-c",
        "import os, socket\n\
         s = socket.create_server(('127.0.0.1', int(os.environ['PTEST_PORT_HTTP'])))\n\
         while True:\n    c, _ = s.accept(); c.sendall(c.recv(100)); c.close()",
    ])
    .assert()
    .success();
    let client = "import os, socket\n\
                  try:\n    c = socket.create_connection(('127.0.0.1', int(os.environ['PTEST_PORT_HTTP_PROXY'])), timeout=10)\n    c.sendall(b'hi'); print(c.recv(100).decode())\n\
                  except OSError as e:\n    print(type(e).__name__)";
    let ask = || {
        t.exec_json(name, &["python3", "-c", client])["stdout"]
            .as_str()
            .unwrap()
            .trim()
            .to_owned()
    };
    fault(t, name, &[]);
    assert_eq!(ask(), "hi");
    fault(t, name, &["--down"]);
    assert_eq!(ask(), "ConnectionRefusedError");
    let cleared = t.json(["net", "clear", name]);
    assert_eq!(cleared[0]["faults"]["down"], false);
    assert_eq!(ask(), "hi");
}

#[test]
fn down_refuses_connections_inside_a_loopback_environment_and_clear_restores_them() {
    let t = TestHome::new();
    if sandboxed_env(&t, "lo", "medium") {
        down_and_clear_inside(&t, "lo");
    }
}

/// At `strict`, Landlock lets commands execute only what the pod shows: the proxy runs from
/// a copy of ptest in the root (a dev build in target/ is not in a system directory).
#[test]
fn faults_work_at_security_strict() {
    let t = TestHome::new();
    if sandboxed_env(&t, "tight", "strict") {
        down_and_clear_inside(&t, "tight");
    }
}

#[test]
fn drop_after_closes_the_connection_after_that_many_bytes() {
    let t = TestHome::new();
    let env = env_with_port(&t, "cut");
    serve(port_of(&env), send_64k);
    let proxy = fault(&t, "cut", &["--drop-after", "1000"]);
    assert_eq!(download(proxy).1, 1000);
    t.ptest(["net", "clear", "cut", "http"]).assert().success();
    assert_eq!(download(proxy).1, 64 * 1024);
}

#[test]
fn reset_resets_connections() {
    let t = TestHome::new();
    let env = env_with_port(&t, "rst");
    serve(port_of(&env), echo);
    let proxy = fault(&t, "rst", &["--reset"]);
    let mut s = connect(proxy);
    let mut buf = [0; 1];
    let err = s.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[test]
fn timeout_holds_data_until_cleared() {
    let t = TestHome::new();
    let env = env_with_port(&t, "stall");
    serve(port_of(&env), echo);
    let proxy = fault(&t, "stall", &["--timeout"]);
    let mut s = connect(proxy);
    s.write_all(b"held").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0; 4];
    let err = s.read(&mut buf).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    t.ptest(["net", "clear", "stall"]).assert().success();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"held");
}

#[test]
fn bandwidth_limits_throughput_as_a_ratio() {
    let t = TestHome::new();
    let env = env_with_port(&t, "slow");
    serve(port_of(&env), send_64k);
    let proxy = fault(&t, "slow", &[]);
    let (free, n) = download(proxy);
    assert_eq!(n, 64 * 1024);
    fault(&t, "slow", &["--bandwidth", "256kbit"]);
    let (narrow, _) = download(proxy);
    fault(&t, "slow", &["--bandwidth", "512kbit"]);
    let (wider, n) = download(proxy);
    assert_eq!(n, 64 * 1024);
    assert!(
        narrow.as_secs_f64() / free.as_secs_f64() > 10.0,
        "{free:?} {narrow:?}"
    );
    let ratio = narrow.as_secs_f64() / wider.as_secs_f64();
    assert!((1.5..2.5).contains(&ratio), "{narrow:?} {wider:?}");
}

#[test]
fn faults_on_a_port_the_environment_lacks_are_refused() {
    let t = TestHome::new();
    env_with_port(&t, "web");
    t.ptest(["net", "fault", "web", "db", "--latency", "10ms"])
        .assert()
        .code(2)
        .stderr(contains(r#"has no port named "db" (its ports: http)"#));
    t.ptest(["net", "clear", "web", "http"])
        .assert()
        .code(2)
        .stderr(contains("no fault proxy for port"));
    t.ptest(["net", "fault", "nosuch", "http"]).assert().code(3);
    t.ptest(["net", "fault", "web", "http", "--bandwidth", "fast"])
        .assert()
        .code(2)
        .stderr(contains("invalid bandwidth"));
    // Nothing was started or leased for the refused faults.
    assert_eq!(t.json(["net", "list"]), serde_json::json!([]));
    assert_eq!(t.json(["port", "list", "web"]).as_array().unwrap().len(), 1);
}

#[test]
fn env_rm_leaves_no_proxy_behind() {
    let t = TestHome::new();
    let env = env_with_port(&t, "gone");
    let id = env["id"].as_str().unwrap().to_owned();
    fault(&t, "gone", &["--latency", "10ms"]);
    let proxies = || -> Vec<u32> {
        env_processes(&id)
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"__proxy"))
            })
            .collect()
    };
    assert_eq!(proxies().len(), 1, "one proxy process runs");
    t.ptest(["env", "rm", "gone"]).assert().success();
    assert!(wait_env_empty(&id));
    assert!(proxies().is_empty());
}

#[test]
fn concurrent_faults_on_one_port_share_one_proxy() {
    let t = TestHome::new();
    let env = env_with_port(&t, "both");
    serve(port_of(&env), echo);
    std::thread::scope(|scope| {
        let runs = ["--latency=1ms", "--jitter=1ms"]
            .map(|flag| scope.spawn(|| t.ptest(["net", "fault", "both", "http", flag]).output()));
        for run in runs {
            let out = run.join().unwrap().unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    });
    let listed = t.json(["net", "list", "both"]);
    assert_eq!(listed[0]["faults"]["latency"], "1ms");
    assert_eq!(listed[0]["faults"]["jitter"], "1ms");
    let procs = t.json(["proc", "list", "both"]);
    let running: Vec<_> = procs
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "running")
        .collect();
    assert_eq!(running.len(), 1, "{procs}");
    median_round_trip(listed[0]["proxy_port"].as_u64().unwrap() as u16, 3);
}
