//! Port leases: clash-free across processes, bound before handed out, visible to commands,
//! released with the environment.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::net::TcpListener;
use std::process::{Command, Stdio};

use crate::support::TestHome;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

#[test]
fn leased_ports_reach_commands_and_are_bindable() {
    let t = TestHome::new();
    t.ptest(["env", "create", "web", "--port", "http", "--port", "db"])
        .assert()
        .success();
    let env = &t.json(["env", "show", "web"])["environment"];
    let http = env["ports"]["http"].as_u64().unwrap();
    let db = env["ports"]["db"].as_u64().unwrap();
    assert_ne!(http, db);
    assert!((20000..=29999).contains(&http) && (20000..=29999).contains(&db));
    // The command sees the port and can listen on it.
    let script = "import os, socket; s = socket.socket(); \
                  s.bind(('0.0.0.0', int(os.environ['PTEST_PORT_HTTP']))); s.listen(); \
                  print('bound', s.getsockname()[1], os.environ['PTEST_PORT_DB'])";
    t.ptest(["env", "exec", "web", "--", "python3", "-c", script])
        .assert()
        .success()
        .stdout(format!("bound {http} {db}\n"));
    let leases = t.json(["port", "list"]);
    assert_eq!(leases.as_array().unwrap().len(), 2);
    assert_eq!(leases[0]["env"], "web");

    t.ptest(["env", "rm", "web"]).assert().success();
    assert!(t.json(["port", "list"]).as_array().unwrap().is_empty());
    let log = t
        .ptest(["events", "--env", "web", "--json"])
        .assert()
        .success();
    let log = String::from_utf8_lossy(&log.get_output().stdout).into_owned();
    for kind in [
        "network_allocating",
        "network_allocated",
        "network_releasing",
        "network_released",
    ] {
        assert!(log.contains(kind), "{kind} missing from {log}");
    }
}

#[test]
fn parallel_allocations_never_share_a_port_and_exhaustion_is_clear() {
    let t = TestHome::new();
    for i in 0..20 {
        t.create(&format!("e{i}"));
    }
    let children: Vec<_> = (0..20)
        .map(|i| {
            Command::new(assert_cmd::cargo::cargo_bin("ptest"))
                .env("PTEST_HOME", t.home())
                .env("PTEST_PORTS_RANGE", "41100-41109")
                .args(["port", "alloc", &format!("e{i}"), "http"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ports = Vec::new();
    let mut refused = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => ports.push(
                String::from_utf8(out.stdout)
                    .unwrap()
                    .trim()
                    .parse::<u16>()
                    .unwrap(),
            ),
            Some(3) => {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(err.contains("no free port in range 41100-41109"), "{err}");
                refused += 1;
            }
            other => panic!("{other:?}: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
    ports.sort();
    ports.dedup();
    // Ports held by other programs on this host are skipped, so fewer than 10 may be free.
    assert_eq!(ports.len() + refused, 20);
    assert!(ports.len() <= 10 && ports.iter().all(|p| (41100..=41109).contains(p)));
    assert_eq!(
        t.json(["port", "list"]).as_array().unwrap().len(),
        ports.len()
    );
}

#[test]
fn a_port_busy_with_another_program_is_skipped() {
    let t = TestHome::new();
    t.create("svc");
    let busy = TcpListener::bind(("127.0.0.1", 41200)).unwrap();
    let port = t
        .ptest([
            "--config",
            "ports.range=41200-41201",
            "port",
            "alloc",
            "svc",
            "a",
        ])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&port.get_output().stdout).trim(),
        "41201"
    );
    t.ptest([
        "--config",
        "ports.range=41200-41201",
        "port",
        "alloc",
        "svc",
        "b",
    ])
    .assert()
    .code(3)
    .stderr(contains(
        "1 held by ptest leases, 1 busy with other programs",
    ));
    drop(busy);
    t.ptest(["port", "release", "svc", "a"])
        .assert()
        .success()
        .stdout(contains("41201"));
    assert!(
        t.json(["port", "list", "svc"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn bad_port_input_is_refused() {
    let t = TestHome::new();
    t.create("p");
    t.ptest(["port", "alloc", "p", "HTTP"])
        .assert()
        .code(2)
        .stderr(contains("invalid port name"));
    t.ptest(["env", "create", "q", "--port", "1x"])
        .assert()
        .code(2);
    t.ptest([
        "--config",
        "ports.range=30000-20000",
        "port",
        "alloc",
        "p",
        "x",
    ])
    .assert()
    .code(2)
    .stderr(contains("the last port is below the first"));
    t.ptest(["port", "alloc", "p", "x"])
        .env("PTEST_PORTS_RANGE", "0-10")
        .assert()
        .code(2)
        .stderr(contains("PTEST_PORTS_RANGE=0-10").and(contains("port 0")));
    t.ptest(["port", "release", "p", "nope"])
        .assert()
        .code(3)
        .stderr(contains("nope"));
    t.ptest(["port", "alloc", "ghost", "x"]).assert().code(3);
    t.ptest(["port", "alloc", "p", "x"]).assert().success();
    t.ptest(["port", "alloc", "p", "x"])
        .assert()
        .code(3)
        .stderr(contains("already has a port named"));
}
