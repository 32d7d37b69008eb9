//! Background processes through the Rust API, supervised by a task of the test itself: ready
//! when the port answers, recorded so that another process sees them, stopped with their
//! whole tree by `stop`, by dropping the handle and by the death of the program.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::Arc;
use std::time::Duration;

use ptest_core::services::marked_pids;
use ptest_core::*;
use ptest_supervisor::{Service, Signal};

fn manager(home: &std::path::Path) -> Arc<Manager> {
    let mut engines = EngineRegistry::new();
    engines.register(Arc::new(ptest_local::DirectoryEngine::new()));
    Arc::new(Manager::open(Home::at(home), Config::default(), engines).unwrap())
}

/// A fresh home with environment `name` (a port lease `http`) at `security`; the home lives
/// as long as the returned directory.
async fn setup(
    name: &str,
    security: Option<SecurityLevel>,
) -> (tempfile::TempDir, Arc<Manager>, Environment) {
    let tmp = tempfile::tempdir().unwrap();
    let m = manager(tmp.path());
    let mut spec = EnvironmentSpec::new(IsolationLevel::Basic).name(EnvName::new(name).unwrap());
    spec.ports = vec!["http".parse().unwrap()];
    spec.security = security;
    let env = m.create_environment(spec).await.unwrap();
    (tmp, m, env)
}

fn spec(name: &str, argv: &[&str]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        argv: argv.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        restart: RestartPolicy::No,
        ready: Readiness::default(),
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
}

/// Waits up to 5 s for every one of `pids` to be gone.
fn all_gone(pids: &[u32]) -> bool {
    for _ in 0..500 {
        if !pids.iter().any(|p| alive(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A shell that ignores SIGTERM, with a child in its process group and a `setsid` daemon
/// that ignores it too; touches `started` once all three run.
const STUBBORN: &str = "trap '' TERM; setsid sh -c 'trap \"\" TERM; exec sleep 600' & \
    sleep 600 & sleep 0.2; touch started; wait";

/// Starts [`STUBBORN`] as service `d` of `env`; returns it and the pids of its three
/// processes once they all run.
async fn start_stubborn(m: &Arc<Manager>, env: &Environment) -> (Service, Vec<u32>) {
    let s = Service::start(m.clone(), env, spec("d", &["sh", "-c", STUBBORN]))
        .await
        .unwrap();
    let flag = env.workspace().join("started");
    for _ in 0..500 {
        if flag.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pids = marked_pids(&env.id, s.info().unwrap().process.id);
    assert!(pids.len() >= 3, "{pids:?}");
    (s, pids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_when_the_port_answers_and_other_processes_see_it() {
    let (tmp, m, env) = setup("web", None).await;
    let port = env.ports.values().next().copied().unwrap();
    let mut s = spec(
        "http",
        &["sh", "-c", "exec python3 -m http.server $PTEST_PORT_HTTP"],
    );
    s.ready.port = Some("http".into());
    s.env = vec![("GREETING".into(), "hello".into())];
    let web = Service::start(m.clone(), &env, s).await.unwrap();
    // Ready means the port answers now.
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let info = web.info().unwrap();
    assert_eq!(info.process.status, ProcessStatus::Running);
    assert!(info.stats.as_ref().unwrap().rss_bytes > 0);
    let environ = std::fs::read(format!("/proc/{}/environ", info.process.pid)).unwrap();
    assert!(environ.split(|b| *b == 0).any(|v| v == b"GREETING=hello"));
    // In the environment's pod (root has one at the default level): the value
    // `create_environment` returned says how it is sandboxed, and the service was started
    // accordingly.
    if rustix::process::geteuid().is_root() {
        assert_eq!(env.details["isolation"]["pod"], true);
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
        assert_ne!(ns(&info.process.pid.to_string()), ns("self"));
    }
    // Another program opening the same home (as `ptest proc list` does) sees it running,
    // supervised by this one, with its pid file written.
    let other = manager(tmp.path());
    let seen = other.service(&env, "http").unwrap();
    assert_eq!(seen.process.status, ProcessStatus::Running);
    assert_eq!(seen.process.pid, info.process.pid);
    assert_eq!(seen.supervisor_pid, Some(std::process::id()));
    assert!(seen.supervisor_embedded);
    let pid_file = env.run_dir().join("http.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        info.process.pid.to_string()
    );
    // The request's log line reaches the environment's logs/.
    std::io::Write::write_all(
        &mut std::net::TcpStream::connect(("127.0.0.1", port)).unwrap(),
        b"GET /nothing-here HTTP/1.0\r\n\r\n",
    )
    .unwrap();
    let mut logged = false;
    for _ in 0..100 {
        logged = web.logs(None).unwrap().1.contains("GET /nothing-here");
        if logged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(logged, "{:?}", web.logs(None).unwrap());
    assert!(
        env.logs().join("http.stderr.log").exists(),
        "{:?}",
        env.logs()
    );
    let end = web
        .stop(Signal::TERM, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(end.process.status, ProcessStatus::Stopped);
    assert!(!alive(info.process.pid));
    assert!(!pid_file.exists());
    m.cleanup(&env, RemoveOptions::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_a_tree_that_ignores_sigterm() {
    let (_tmp, m, env) = setup("deaf", None).await;
    let (s, pids) = start_stubborn(&m, &env).await;
    let end = s.stop(Signal::TERM, Duration::from_secs(1)).await.unwrap();
    assert_eq!(end.process.status, ProcessStatus::Stopped);
    assert!(all_gone(&pids), "{pids:?}");
    m.cleanup(&env, RemoveOptions::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_kills_the_whole_tree() {
    let (_tmp, m, env) = setup("dropped", None).await;
    let (s, pids) = start_stubborn(&m, &env).await;
    drop(s);
    assert!(all_gone(&pids), "{pids:?}");
    let end = m.service(&env, "d").unwrap();
    assert_eq!(end.process.status, ProcessStatus::Stopped);
    // Recorded by the drop, or by the supervisor task seeing it die first.
    assert_eq!(end.process.signal, Some(9), "{end:?}");
    m.cleanup(&env, RemoveOptions::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_2_runs_three_times_then_ends_with_the_code() {
    let (_tmp, m, env) = setup("flaky", None).await;
    let mut s = spec("f", &["sh", "-c", "echo run; exit 3"]);
    s.restart = RestartPolicy::OnFailure { max: Some(2) };
    let f = Service::start(m.clone(), &env, s).await.unwrap();
    let end = f.wait(Duration::from_secs(30)).await.unwrap().unwrap();
    assert_eq!(end.process.status, ProcessStatus::Stopped);
    assert_eq!(end.process.exit_code, Some(3));
    assert_eq!(end.restarts, 2);
    let f = f.stop(Signal::TERM, Duration::from_secs(1)).await.unwrap();
    assert_eq!(f.restarts, 2);
    assert_eq!(
        std::fs::read_to_string(env.logs().join("f.stdout.log")).unwrap(),
        "run\nrun\nrun\n"
    );
    m.cleanup(&env, RemoveOptions::default()).await.unwrap();
}

/// The program that runs a service is SIGKILLed: nothing can run in it any more, yet its
/// command's process group dies with it, and the next look at the records repairs the rest.
async fn caller_killed(security: Option<SecurityLevel>, name: &str) {
    if !sandboxed() {
        return;
    }
    let (tmp, m, env) = setup(name, security).await;
    let mut caller = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "caller_that_gets_killed",
            "--ignored",
            "--nocapture",
        ])
        .env("PTEST_TEST_CALLER_HOME", tmp.path())
        .env("PTEST_TEST_CALLER_ENV", name)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let flag = env.workspace().join("started");
    for _ in 0..1000 {
        if flag.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let id = m.service(&env, "kept").unwrap().process.id;
    let pids = marked_pids(&env.id, id);
    assert!(pids.len() >= 2, "{pids:?}");
    caller.kill().unwrap();
    caller.wait().unwrap();
    assert!(all_gone(&pids), "outlived their caller: {pids:?}");
    let repaired = m.service(&env, "kept").unwrap();
    assert_eq!(repaired.process.status, ProcessStatus::Error);
    assert!(repaired.note.unwrap().contains("supervisor"));
    m.cleanup(&env, RemoveOptions::default()).await.unwrap();
}

/// Whether this host gives environments namespaces and cgroups; says why not and skips
/// (fails under `PTEST_REQUIRE_ALL=1`) otherwise: a plain directory environment's command dies
/// with its caller, but what it forked lives until `env rm`.
fn sandboxed() -> bool {
    let features = ptest_local::DirectoryEngine::new().features();
    let has = |name: &str| features.iter().any(|f| f.check == name && f.ok);
    if has("namespaces") && has("cgroups") {
        return true;
    }
    ptest_testkit::runnable(Some(format!("needs namespaces and cgroups: {features:?}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_death_ends_its_services() {
    caller_killed(None, "mortal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_death_ends_its_services_at_security_low() {
    caller_killed(Some(SecurityLevel::Low), "mortal-low").await;
}

/// Run by `caller_killed` in a process of its own: starts a service and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a helper process of the_callers_death_ends_its_services"]
async fn caller_that_gets_killed() {
    let (Some(home), Some(name)) = (
        std::env::var_os("PTEST_TEST_CALLER_HOME"),
        std::env::var("PTEST_TEST_CALLER_ENV").ok(),
    ) else {
        return;
    };
    let m = manager(std::path::Path::new(&home));
    let env = m.get_environment(&name).unwrap();
    let _kept = Service::start(
        m.clone(),
        &env,
        spec("kept", &["sh", "-c", "sleep 600 & touch started; wait"]),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
}
