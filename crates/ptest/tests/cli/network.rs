//! `--network bridge` and `--allow`: environments on their home's bridge reach each other and
//! the host only where their rules say, leased ports are forwarded into them, and removal
//! leaves no link, namespace, table or lease behind. Real veth pairs, namespaces and
//! nftables; servers and clients are busybox's `httpd`, `wget` and `nc`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::io::Write;
use std::process::Command;

use crate::support::TestHome;
use predicates::str::contains;

const BUSYBOX: &str = "/bin/busybox";

/// Whether this host can make bridge environments (root, namespaces, cgroups, `ip`, `nft`,
/// busybox); prints why not and skips, or fails under PTEST_REQUIRE_ALL=1.
fn bridge_available(t: &TestHome) -> bool {
    let missing = crate::support::missing_features(t, &["namespaces", "cgroups", "bridge"]);
    crate::support::runnable(if !missing.is_empty() {
        Some(format!("bridge tests need: {}", missing.join(", ")))
    } else if !std::path::Path::new(BUSYBOX).exists() {
        Some(format!("{BUSYBOX} missing (busybox-static)"))
    } else {
        None
    })
}

/// A test home, if this host can make bridge environments (see [`bridge_available`]).
fn bridge_home() -> Option<TestHome> {
    let t = TestHome::new();
    bridge_available(&t).then_some(t)
}

/// The `network` details of environment `name`.
fn network(t: &TestHome, name: &str) -> serde_json::Value {
    t.json(["env", "show", name])["environment"]["details"]["network"].clone()
}

/// Runs `argv` in `env`; (exit code, stdout and stderr).
fn run_in(t: &TestHome, env: &str, argv: &[&str]) -> (i64, String) {
    let result = t.exec_json(env, argv);
    (
        result["exit_code"].as_i64().unwrap_or(-1),
        format!(
            "{}{}",
            result["stdout"].as_str().unwrap_or(""),
            result["stderr"].as_str().unwrap_or("")
        ),
    )
}

/// Fetches `/hello` from `address:port` inside `env` with busybox's `nc` (its `wget` is not
/// reliable everywhere); (exit code, response and errors).
fn fetch(t: &TestHome, env: &str, address: &str, port: &str, wait: u32) -> (i64, String) {
    let script = format!(
        "printf 'GET /hello HTTP/1.0\\r\\n\\r\\n' | {BUSYBOX} nc -w {wait} {address} {port}"
    );
    run_in(t, env, &["sh", "-c", &script])
}

/// Starts busybox's httpd in `env` on `port`, serving a file `hello` that says `text`, and
/// waits until it listens.
fn serve(t: &TestHome, env: &str, port: &str, text: &str) {
    let script = format!(
        "mkdir -p www && echo {text} > www/hello && {BUSYBOX} httpd -p 0.0.0.0:{port} -h www && \
         for i in $({BUSYBOX} seq 100); do \
           {BUSYBOX} netstat -ltn | grep -q ':{port} ' && exit 0; {BUSYBOX} sleep 0.05; \
         done; exit 1"
    );
    t.ptest(["env", "exec", env, "--", "sh", "-c", &script])
        .assert()
        .success();
}

/// The hash ptest names a home's bridge after: the uplink of a test home whose environments
/// are gone is looked for by it.
fn home_hash(t: &TestHome) -> String {
    ptest_core::Home::at(t.home()).hash()
}

fn host_listing(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bridge_environments_talk_where_allowed_and_nowhere_else() {
    let Some(t) = bridge_home() else {
        return;
    };
    t.ptest(["env", "create", "api", "--network", "bridge"])
        .assert()
        .success();
    serve(&t, "api", "8080", "from-api");
    let api = network(&t, "api");
    assert_eq!(api["status"], "connected", "{api}");
    let address = api["address"].as_str().unwrap().to_owned();

    t.ptest([
        "env",
        "create",
        "client",
        "--network",
        "bridge",
        "--allow",
        "api:8080",
    ])
    .assert()
    .success();
    t.ptest(["env", "create", "other", "--network", "bridge"])
        .assert()
        .success();
    let client = network(&t, "client");
    assert_ne!(client["address"], api["address"]);
    assert_eq!(client["allow"][0]["networks"][0], format!("{address}/32"));

    let (code, out) = fetch(&t, "client", &address, "8080", 5);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("200 OK") && out.contains("from-api"), "{out}");

    // Refused at once (admin-prohibited), not left to time out.
    let started = std::time::Instant::now();
    let (code, out) = fetch(&t, "other", &address, "8080", 20);
    assert_ne!(code, 0, "an environment without --allow reached api: {out}");
    assert!(out.contains("Connection refused"), "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the refusal waited for the timeout: {out}"
    );
    // The allowed port only: another port of api is refused to client as well.
    let (code, _) = run_in(&t, "client", &[BUSYBOX, "nc", "-w", "3", &address, "8081"]);
    assert_ne!(code, 0);

    t.ptest(["env", "show", "client"])
        .assert()
        .success()
        .stdout(contains("allow"))
        .stdout(contains("api:8080 = "))
        .stdout(contains("bridge connected"));
    t.ptest(["env", "validate", "api"])
        .assert()
        .success()
        .stdout(contains("connected"));
}

#[test]
fn the_host_is_reachable_only_when_allowed() {
    let Some(t) = bridge_home() else {
        return;
    };
    // A host listener on every address, and one on loopback only.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let loopback_port = loopback.local_addr().unwrap().port().to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"from-host\n");
        }
    });
    t.ptest(["env", "create", "closed", "--network", "bridge"])
        .assert()
        .success();
    let allow = format!("host:{port}");
    t.ptest([
        "env",
        "create",
        "open",
        "--network",
        "bridge",
        "--allow",
        &allow,
    ])
    .assert()
    .success();
    let gateway = network(&t, "open")["gateway"].as_str().unwrap().to_owned();

    let (code, out) = run_in(&t, "open", &[BUSYBOX, "nc", "-w", "5", &gateway, &port]);
    assert_eq!((code, out.trim()), (0, "from-host"), "{out}");
    let (code, out) = run_in(&t, "closed", &[BUSYBOX, "nc", "-w", "5", &gateway, &port]);
    assert!(code != 0 || !out.contains("from-host"), "{out}");
    // The host's loopback is not the environment's: 127.0.0.1 is its own.
    let (code, _) = run_in(
        &t,
        "open",
        &[BUSYBOX, "nc", "-w", "3", "127.0.0.1", &loopback_port],
    );
    assert_ne!(code, 0);
    drop(loopback);
}

#[test]
fn leased_ports_are_forwarded_into_the_environment() {
    let Some(t) = bridge_home() else {
        return;
    };
    let env = t.json([
        "env",
        "create",
        "web",
        "--network",
        "bridge",
        "--port",
        "http",
    ]);
    let port = env["ports"]["http"].as_u64().unwrap().to_string();
    serve(&t, "web", &port, "forwarded");
    t.ptest(["env", "show", "web"])
        .assert()
        .success()
        .stdout(contains(format!("host port {port} -> ")));
    // From the host, through its loopback: the port leads into the environment.
    assert!(fetch_hello(&port).contains("forwarded"));

    // A port leased later is forwarded too: a fault proxy's own port, and `port alloc`.
    let proxy = t.json(["net", "fault", "web", "http", "--latency", "1ms"])["proxy_port"]
        .as_u64()
        .unwrap()
        .to_string();
    let through = fetch_hello(&proxy);
    assert!(
        through.contains("forwarded"),
        "through the proxy: {through:?}"
    );
    let late = t.json(["port", "alloc", "web", "late"])["port"]
        .as_u64()
        .unwrap()
        .to_string();
    serve(&t, "web", &late, "late");
    assert!(fetch_hello(&late).contains("late"));
    t.ptest(["port", "release", "web", "late"])
        .assert()
        .success();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", late.parse::<u16>().unwrap())).is_err(),
        "a released port is no longer forwarded"
    );
}

/// `GET /hello` on the host's 127.0.0.1:`port`.
fn fetch_hello(port: &str) -> String {
    let mut body = String::new();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()))
        .unwrap_or_else(|e| panic!("port {port} is not forwarded: {e}"));
    conn.write_all(b"GET /hello HTTP/1.0\r\n\r\n").unwrap();
    std::io::Read::read_to_string(&mut conn, &mut body).unwrap();
    body
}

#[test]
fn removal_leaves_no_link_namespace_table_or_lease() {
    let Some(t) = bridge_home() else {
        return;
    };
    t.ptest(["env", "create", "a", "--network", "bridge", "--port", "p"])
        .assert()
        .success();
    t.ptest(["env", "create", "b", "--network", "bridge", "--allow", "a"])
        .assert()
        .success();
    let a = network(&t, "a");
    let a_id = t.json(["env", "show", "a"])["environment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (bridge, uplink) = (
        a["bridge"].as_str().unwrap().to_owned(),
        a["uplink"].as_str().unwrap().to_owned(),
    );
    let holder = a["holder"].as_i64().unwrap() as u32;
    let hub_net = format!("--net=/proc/{holder}/ns/net");
    assert!(crate::support::alive(holder));
    assert!(host_listing("ip", &["link", "show"]).contains(&uplink));
    assert!(host_listing("nft", &["list", "tables"]).contains(&bridge));

    // Removing one keeps the bridge for the other; its own link and rules go.
    t.ptest(["env", "rm", "a"]).assert().success();
    let links = host_listing("nsenter", &[&hub_net, "ip", "-o", "link", "show"]);
    assert!(!links.contains(a["link"].as_str().unwrap()), "{links}");
    assert!(
        links.contains(network(&t, "b")["link"].as_str().unwrap()),
        "{links}"
    );
    let rules = host_listing("nsenter", &[&hub_net, "nft", "list", "ruleset"]);
    assert!(rules.contains("chain env-"), "{rules}");
    assert!(!rules.contains(&a_id), "{rules}");

    // The last one takes the hub, its uplink and the host table with it.
    t.ptest(["env", "rm", "b"]).assert().success();
    assert!(crate::support::wait_gone(holder));
    assert!(!host_listing("ip", &["link", "show"]).contains(&uplink));
    assert!(!host_listing("nft", &["list", "tables"]).contains(&bridge));
    // The leases went with the environments (`events --json` prints one event a line).
    let out = t.ptest(["events", "--json"]).assert().success();
    let events = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let released = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "network_released" && e["details"]["address"].is_string())
        .count();
    assert_eq!(released, 2, "{events}");
}

#[test]
fn gc_removes_what_dead_environments_left_on_the_bridge() {
    let Some(t) = bridge_home() else {
        return;
    };
    t.ptest(["env", "create", "a", "--network", "bridge"])
        .assert()
        .success();
    let a = network(&t, "a");
    let hub_net = format!("--net=/proc/{}/ns/net", a["holder"]);
    // What a ptest killed mid-create leaves: a link and a chain of an id no record has.
    let dead = "0123456789ab";
    let link = format!("e{dead}");
    let chain = format!("env-{dead}");
    for argv in [
        vec![
            "ip", "link", "add", &link, "type", "veth", "peer", "name", "x0",
        ],
        vec!["nft", "add", "chain", "ip", "ptest", &chain],
    ] {
        let mut args = vec![hub_net.as_str(), "--"];
        args.extend(argv);
        assert!(
            Command::new("nsenter")
                .args(&args)
                .status()
                .unwrap()
                .success()
        );
    }
    let gc = t.ptest(["gc"]).output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&gc.stdout),
        String::from_utf8_lossy(&gc.stderr)
    );
    assert!(gc.status.success(), "{said}");
    assert!(
        said.contains(&format!("removed {link} (orphaned bridge link")),
        "{said}"
    );
    let links = host_listing("nsenter", &[&hub_net, "ip", "-o", "link", "show"]);
    assert!(!links.contains(&link), "{links}");
    assert!(links.contains(a["link"].as_str().unwrap()), "{links}");
    let rules = host_listing("nsenter", &[&hub_net, "nft", "list", "ruleset"]);
    assert!(!rules.contains(&chain), "{rules}");
    let (code, out) = run_in(&t, "a", &[BUSYBOX, "ip", "addr", "show", "eth0"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn an_allow_name_that_resolves_to_nothing_is_refused_and_undone() {
    let Some(t) = bridge_home() else {
        return;
    };
    t.ptest([
        "env",
        "create",
        "x",
        "--network",
        "bridge",
        "--allow",
        "nothing-here.invalid:80",
    ])
    .assert()
    .code(2)
    .stderr(contains(
        "\"nothing-here.invalid\" is no environment on this home's bridge",
    ));
    assert!(t.names().is_empty());
    // The bridge made for it went with it.
    let uplink = format!("ptbr-{}", &home_hash(&t)[..10]);
    assert!(!host_listing("ip", &["link", "show"]).contains(&uplink));
}

#[test]
fn an_allow_rule_that_does_not_parse_is_refused() {
    let t = TestHome::new();
    t.ptest([
        "env",
        "create",
        "x",
        "--network",
        "bridge",
        "--allow",
        "api:http",
    ])
    .assert()
    .code(2)
    .stderr(contains("invalid --allow rule \"api:http\""))
    .stderr(contains("HOST[:PORT]"));
    t.ptest([
        "env",
        "create",
        "x",
        "--network",
        "loopback",
        "--allow",
        "10.0.0.1",
    ])
    .assert()
    .code(2)
    .stderr(contains("--allow applies to --network bridge only"));
    assert!(t.names().is_empty());
}
