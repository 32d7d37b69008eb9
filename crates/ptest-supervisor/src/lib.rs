//! Background processes (`ptest proc start`) and their supervisors.
//!
//! A supervisor owns one background process: it copies the command's stdout and stderr
//! through two pipes into `logs/<name>.{stdout,stderr}.log` (size-capped, rotated), spawns the
//! command through the environment's engine, writes `run/<name>.pid`, records each run and its
//! end in the store, and applies the restart policy (`run`). It comes in two forms that run
//! the same code:
//!
//! - [`start`] records the process, then launches `ptest __supervise <id>` re-executed in a
//!   session of its own with stdio on `/dev/null` (like podman's conmon), so it outlives the
//!   `ptest` that started it ([`supervise`]);
//! - [`Service::start`] runs it as a task of the calling program, for callers that live on (a
//!   test harness): no extra process, and the process is stopped when the [`Service`] is
//!   dropped or the program ends.
//!
//! Either way the caller waits for the readiness checks. `stop` asks the process to end
//! (SIGTERM), waits, then kills its whole tree; the supervisor records how it ended and stops.
//! A `ptest proc list`, `stop` or `env rm` in any other process sees and handles both alike.
//!
//! Every process of the tree carries `PTEST_PROC_ID=<record id>`, so what double-forked away
//! is still found and killed ([`ptest_core::services`]). The supervisor's command dies with
//! it (`PR_SET_PDEATHSIG`); a record left by a killed supervisor is repaired at the next look.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::time::Duration;
//! # use ptest_core::*;
//! # use ptest_supervisor::{Service, Signal};
//! # async fn demo(manager: Arc<Manager>, env: Environment) -> Result<(), Box<dyn std::error::Error>> {
//! let spec = ServiceSpec {
//!     name: "web".into(),
//!     argv: vec!["python3".into(), "-m".into(), "http.server".into(), "8000".into()],
//!     env: vec![],
//!     restart: RestartPolicy::OnFailure { max: Some(2) },
//!     ready: Readiness { port: Some("8000".into()), ..Readiness::default() },
//! };
//! // Returns once port 8000 answers inside the environment; `ptest proc list` shows it.
//! let web = Service::start(manager, &env, spec).await?;
//! println!("pid {}", web.info()?.process.pid);
//! // ... the tests ...
//! web.stop(Signal::TERM, Duration::from_secs(5)).await?; // or drop it: SIGKILL of its tree
//! # Ok(()) }
//! ```

mod logs;
mod ready;
mod service;
mod stats;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ptest_core::beneath::Beneath;
use ptest_core::services::{PROC_ID_VAR, kill_marked, kill_supervisor};
use ptest_core::{
    Environment, EnvironmentStatus, Error, ExecRequest, IsolationEvent, Manager, OutputMode,
    ProcessStatus, Result, ServiceInfo, ServiceSpec,
};

pub use logs::{Follower, LOG_CAP, tail, tail_or_refusal};
pub use rustix::process::Signal;
pub use service::Service;
pub use stats::{read as read_stats, read_all as read_all_stats};

/// How many lines of output a failed start shows.
pub const FAILURE_TAIL: usize = 20;

/// Why `start` did not return a ready process.
#[derive(Debug, thiserror::Error)]
pub enum StartFailure {
    /// ptest's own failure (or bad input).
    #[error(transparent)]
    Ptest(#[from] Error),
    /// The process ended, or did not become ready in time; it is stopped.
    #[error("process {name:?} {reason}")]
    NotReady {
        /// The process.
        name: String,
        /// What happened.
        reason: String,
        /// The last lines of its output.
        tail: String,
    },
}

fn output_tail(env: &Environment, s: &ServiceInfo) -> String {
    let mut out = tail_or_refusal(&env.root, &s.stdout_log, Some(FAILURE_TAIL));
    let mut err = tail_or_refusal(&env.root, &s.stderr_log, Some(FAILURE_TAIL));
    if err == out && !err.is_empty() {
        err.clear(); // One refusal for both (their directory), said once.
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&err);
    let lines: Vec<&str> = out.split_inclusive('\n').collect();
    lines[lines.len().saturating_sub(FAILURE_TAIL)..].concat()
}

fn fresh(manager: &Manager, id: i64) -> Result<ServiceInfo> {
    manager
        .store()
        .service_by_id(id)?
        .ok_or_else(|| Error::Usage(format!("process record {id} vanished")))
}

/// Starts again, each under a new supervisor, the background processes of `env` that `env
/// stop` ended (the newest record of each name); returns their names. One that does not
/// become ready again is an error naming it.
pub async fn restart_stopped(
    manager: &Manager,
    env: &Environment,
    exe: &Path,
) -> Result<Vec<String>> {
    let stopped_by_stop = Some(format!("killed: {}", ptest_core::STOPPED_REASON));
    let mut newest: Vec<ServiceInfo> = Vec::new();
    for s in manager.services(Some(env))? {
        match newest.iter_mut().find(|n| n.name == s.name) {
            Some(n) if n.process.id < s.process.id => *n = s,
            Some(_) => {}
            None => newest.push(s),
        }
    }
    let mut started = Vec::new();
    for s in newest {
        if s.process.status.is_live() || s.note != stopped_by_stop {
            continue;
        }
        match start(manager, env, s.spec.clone(), exe).await {
            Ok(_) => started.push(s.name),
            Err(StartFailure::Ptest(e)) => return Err(e),
            Err(StartFailure::NotReady { name, reason, .. }) => {
                return Err(Error::Usage(format!(
                    "{} started, but its process {name:?} {reason}",
                    env.name
                )));
            }
        }
    }
    Ok(started)
}

/// Starts `spec` in `env` under a supervisor (`exe __supervise <id>`), and returns once it
/// is ready (every readiness check passed) or fails with the tail of its output.
pub async fn start(
    manager: &Manager,
    env: &Environment,
    spec: ServiceSpec,
    exe: &Path,
) -> std::result::Result<ServiceInfo, StartFailure> {
    let (checks, id) = record(manager, env, &spec)?;
    if let Err(e) = launch_supervisor(exe, id) {
        manager.finish_service(
            &env.id,
            id,
            ProcessStatus::Error,
            None,
            None,
            Some(&format!("could not start its supervisor: {e}")),
            serde_json::json!({ "name": spec.name }),
        )?;
        return Err(Error::io("starting a supervisor", exe, e).into());
    }
    until_ready(manager, env, spec, id, &checks).await
}

/// Checks that `spec` can start in `env` and records it (status `starting`); returns its
/// parsed readiness checks and record id.
fn record(
    manager: &Manager,
    env: &Environment,
    spec: &ServiceSpec,
) -> std::result::Result<(ready::Checks, i64), StartFailure> {
    if env.status != EnvironmentStatus::Active {
        return Err(Error::WrongState {
            name: env.name.to_string(),
            status: env.status,
            action: "start processes",
            hint: None,
        }
        .into());
    }
    if spec.argv.is_empty() {
        return Err(Error::Usage("no command given".into()).into());
    }
    let checks = ready::Checks::parse(env, &spec.ready)?;
    let service = manager.record_service(env, spec)?;
    Ok((checks, service.process.id))
}

/// The pause between two looks at a record: short at first (most starts and stops take a few
/// milliseconds), doubling up to 50 ms (a long wait costs few store reads).
struct Pause(Duration);

impl Pause {
    fn new() -> Self {
        Self(Duration::from_millis(2))
    }

    async fn sleep(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_millis(50));
    }
}

/// Waits until record `id` runs and passes `checks`; stops it at the readiness timeout.
async fn until_ready(
    manager: &Manager,
    env: &Environment,
    spec: ServiceSpec,
    id: i64,
    checks: &ready::Checks,
) -> std::result::Result<ServiceInfo, StartFailure> {
    let deadline = Instant::now() + spec.ready.timeout;
    let mut pause = Pause::new();
    loop {
        let s = fresh(manager, id)?;
        match s.process.status {
            ProcessStatus::Running if s.process.pid != 0 => {
                match checks.pass(manager, env, &s).await {
                    Ok(true) => return Ok(s),
                    Ok(false) => {}
                    // A check ptest refuses to make (its log replaced by a link) fails the start
                    // now; the process does not outlive it.
                    Err(e) => {
                        stop_unready(manager, env, &spec.name).await?;
                        return Err(e.into());
                    }
                }
            }
            ProcessStatus::Starting | ProcessStatus::Running => {}
            status => {
                let reason = match (&s.note, s.process.exit_code, s.process.signal) {
                    (Some(note), _, _) => format!("failed: {note}"),
                    (None, Some(c), _) => format!("exited with code {c} before it was ready"),
                    (None, None, Some(sig)) => {
                        format!("was killed by signal {sig} before it was ready")
                    }
                    _ => format!("is {status} before it was ready"),
                };
                return Err(StartFailure::NotReady {
                    name: spec.name,
                    reason,
                    tail: output_tail(env, &s),
                });
            }
        }
        if Instant::now() >= deadline {
            let s = stop_unready(manager, env, &spec.name).await?;
            return Err(StartFailure::NotReady {
                name: spec.name,
                reason: format!(
                    "was not ready after {} (it was stopped)",
                    humantime::format_duration(spec.ready.timeout)
                ),
                tail: output_tail(env, &s),
            });
        }
        pause.sleep().await;
    }
}

/// Stops process `name` that did not become ready: SIGTERM, SIGKILL 5 s later.
async fn stop_unready(manager: &Manager, env: &Environment, name: &str) -> Result<ServiceInfo> {
    stop(manager, env, name, Signal::TERM, Duration::from_secs(5)).await
}

/// Starts `exe __supervise <id>` in a new session, stdio on /dev/null, reaped by a thread.
fn launch_supervisor(exe: &Path, id: i64) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("__supervise")
        .arg(id.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Asks background process `name` of `env` to stop with `signal`, waits up to `timeout`, then
/// kills its whole tree. Returns its final record.
pub async fn stop(
    manager: &Manager,
    env: &Environment,
    name: &str,
    signal: Signal,
    timeout: Duration,
) -> Result<ServiceInfo> {
    let s = manager.service(env, name)?;
    stop_record(manager, env, s, signal, timeout).await
}

/// [`stop`] of the record `s`.
async fn stop_record(
    manager: &Manager,
    env: &Environment,
    s: ServiceInfo,
    signal: Signal,
    timeout: Duration,
) -> Result<ServiceInfo> {
    if !s.process.status.is_live() {
        return Ok(s);
    }
    let (id, name) = (s.process.id, s.name.as_str());
    manager.service_stopping(id)?;
    manager.record_event(
        env,
        IsolationEvent::ProcessStopping,
        serde_json::json!({
            "name": name, "pid": s.process.pid, "signal": signal.as_raw(),
            "timeout": timeout.as_secs_f64(),
        }),
    )?;
    let s = fresh(manager, id)?;
    if s.process.pid != 0 && ptest_core::liveness::is_alive(s.process.pid, s.process.start_ticks) {
        // The command leads its process group (a `low` relay passes the signal on).
        ptest_core::liveness::signal_group(s.process.pid, signal);
    }
    if let Some(done) = wait_end(manager, id, timeout).await? {
        return Ok(done);
    }
    // Past the timeout: the whole tree goes.
    let engine = manager.engine_for(env.level)?;
    let s = fresh(manager, id)?;
    if s.process.pid != 0 {
        engine.kill(env, &s.process).await?;
    }
    let env_id = env.id.clone();
    tokio::task::spawn_blocking(move || kill_marked(&env_id, id))
        .await
        .map_err(|e| Error::Usage(e.to_string()))?;
    if let Some(done) = wait_end(manager, id, Duration::from_secs(5)).await? {
        return Ok(done);
    }
    // The supervisor did not record the end: it is gone or stuck; end it and record here.
    kill_supervisor(&s);
    manager.finish_service(
        &env.id,
        id,
        ProcessStatus::Stopped,
        None,
        Some(9),
        Some("killed; its supervisor did not record the end"),
        serde_json::json!({ "name": name }),
    )?;
    fresh(manager, id)
}

/// Waits until record `id` is no longer live; `None` at the timeout.
pub async fn wait_end(
    manager: &Manager,
    id: i64,
    timeout: Duration,
) -> Result<Option<ServiceInfo>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Pause::new();
    loop {
        let s = fresh(manager, id)?;
        if !s.process.status.is_live() {
            return Ok(Some(s));
        }
        // A dead supervisor records nothing: repair the record instead of waiting forever.
        if manager
            .services(None)?
            .iter()
            .any(|r| r.process.id == id && !r.process.status.is_live())
        {
            continue;
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        pause.sleep().await;
    }
}

/// The supervisor's work (`ptest __supervise <id>`): runs record `id` until it ends for good.
pub async fn supervise(manager: &Manager, id: i64) -> Result<()> {
    manager.set_supervisor(id, false)?;
    let service = fresh(manager, id)?;
    let env = manager.get_environment(service.process.env_id.as_str())?;
    run(manager, &env, &service).await
}

/// `run/<name>.pid`, relative to the environment's root.
fn pid_file(name: &str) -> std::path::PathBuf {
    Path::new("run").join(format!("{name}.pid"))
}

/// The environment's `run/`, held open beneath its root (a `run/` the command replaced by a
/// link is refused, never followed).
fn open_run_dir(env: &Environment) -> Result<Beneath> {
    Ok(Beneath::open(&env.root)?.dir(Path::new("run"))?)
}

/// Writes `pid` to `<name>.pid` of `run`: a new file renamed over the name (a pid file the
/// command replaced by a link is replaced in turn).
fn write_pid_file(run: &Beneath, name: &str, pid: u32) -> Result<()> {
    let file = format!("{name}.pid");
    run.replace(Path::new(&file), format!("{pid}\n").as_bytes(), 0o644)?;
    Ok(())
}

/// Removes `run/<name>.pid` of `env` (the name only, whatever it is), beneath the root.
fn remove_pid_file(env: &Environment, name: &str) {
    let removed = Beneath::open(&env.root).and_then(|root| root.remove_file(&pid_file(name)));
    if let Err(e) = removed {
        tracing::warn!("not removing the pid file of {name}: {e}");
    }
}

/// What both supervisors do: runs `service` until it ends for good, its output copied into its
/// log files, and records an error that ends it early.
async fn run(manager: &Manager, env: &Environment, service: &ServiceInfo) -> Result<()> {
    let done = Arc::new(AtomicBool::new(false));
    // What it writes in the root is opened first: a refusal fails the start, with its reason.
    let opened = open_run_dir(env).and_then(|run| {
        let out = log_pipe(&env.root, &service.stdout_log, &done)?;
        let err = log_pipe(&env.root, &service.stderr_log, &done)?;
        Ok((run, out, err))
    });
    let (run_dir, (stdout, out_pump), (stderr, err_pump)) = match opened {
        Ok(pipes) => pipes,
        Err(e) => {
            record_error(manager, env, service, &e)?;
            return Err(e);
        }
    };
    let output = OutputMode::Fds {
        stdout: Arc::new(stdout),
        stderr: Arc::new(stderr),
    };
    let outcome = run_loop(manager, env, service, output, &run_dir).await;
    if let Err(e) = &outcome {
        record_error(manager, env, service, e)?;
    }
    if let Err(e) = run_dir.remove_file(Path::new(&format!("{}.pid", service.name))) {
        tracing::warn!("not removing the pid file of {}: {e}", service.name);
    }
    // The tree is gone and our write ends with it: the copiers drain what is left and end.
    done.store(true, Ordering::Release);
    for pump in [out_pump, err_pump] {
        let _ = tokio::task::spawn_blocking(move || pump.join()).await;
    }
    outcome
}

/// Records that `service` ended with ptest's error `e`.
fn record_error(
    manager: &Manager,
    env: &Environment,
    service: &ServiceInfo,
    e: &Error,
) -> Result<()> {
    manager.finish_service(
        &env.id,
        service.process.id,
        ProcessStatus::Error,
        None,
        None,
        Some(&e.to_string()),
        serde_json::json!({ "name": service.name }),
    )
}

/// A pipe whose read end a thread copies into the log at `path` beneath `root` (see
/// [`logs::pump`]); returns the write end for the command.
fn log_pipe(
    root: &Path,
    path: &Path,
    done: &Arc<AtomicBool>,
) -> Result<(OwnedFd, std::thread::JoinHandle<()>)> {
    // Opened here, so a log the command replaced by a link fails the start with the refusal.
    let log = logs::RotatingLog::open(root, path)?;
    let (r, w): (OwnedFd, OwnedFd) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Error::io("making a pipe for", path, std::io::Error::from(e)))?;
    let (path, done) = (path.to_owned(), done.clone());
    let pump = std::thread::spawn(move || logs::pump(std::fs::File::from(r), log, path, done));
    Ok((w, pump))
}

async fn run_loop(
    manager: &Manager,
    env: &Environment,
    service: &ServiceInfo,
    output: OutputMode,
    run_dir: &Beneath,
) -> Result<()> {
    let engine = manager.engine_for(env.level)?;
    let id = service.process.id;
    let spec = &service.spec;
    let mut restarts = 0u32;
    loop {
        let mut request = ExecRequest::new(spec.argv.clone());
        request.env = spec.env.clone();
        request.env.push((PROC_ID_VAR.to_owned(), id.to_string()));
        request.output = output.clone();
        let process = engine.spawn(env, request).await?;
        let (pid, ticks) = process.pid();
        let asked_to_stop = !manager.service_running(env, id, (pid, ticks), restarts)?;
        if asked_to_stop {
            let info = fresh(manager, id)?;
            engine.kill(env, &info.process).await?;
        }
        if let Err(e) = write_pid_file(run_dir, &spec.name, pid) {
            tracing::warn!("not writing the pid file of {}: {e}", spec.name);
        }
        // A supervisor is one of the long-lived processes that watch the thresholds.
        let result = ptest_core::monitor::while_watching(manager, env, process.wait()).await?;
        // Whatever of the tree is left (daemons that left its process group) goes with it.
        let env_id = env.id.clone();
        let _ = tokio::task::spawn_blocking(move || kill_marked(&env_id, id)).await;
        let details = serde_json::json!({
            "name": spec.name, "pid": pid, "exit_code": result.exit_code,
            "signal": result.signal, "duration": result.duration.as_secs_f64(),
            "restarts": restarts,
        });
        let status = fresh(manager, id)?.process.status;
        let env_active = manager
            .get_environment(env.id.as_str())
            .is_ok_and(|e| e.status == EnvironmentStatus::Active);
        // Not when it was asked to stop, or its end was recorded by another (`env rm`).
        if status == ProcessStatus::Running
            && env_active
            && spec.restart.restarts_after(result.success(), restarts)
        {
            let mut details = details;
            details["restarting"] = true.into();
            manager.record_event(env, IsolationEvent::ProcessStopped, details)?;
            let backoff = Duration::from_millis(100 << restarts.min(6));
            tokio::time::sleep(backoff).await;
            restarts += 1;
            continue;
        }
        return manager.finish_service(
            &env.id,
            id,
            ProcessStatus::Stopped,
            result.exit_code,
            result.signal,
            None,
            details,
        );
    }
}
