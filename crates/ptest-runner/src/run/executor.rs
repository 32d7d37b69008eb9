//! What one suite shard does: its environment made, the project overlaid or copied, its
//! attempts (setup, run, teardown), its JUnit file read, the environment disposed of.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use ptest_core::{
    EnvName, Environment, EnvironmentSpec, ExecRequest, Manager, OutputMode, OverlaySpec,
    ProcessResult, ProjectWheel, RemoveOptions,
};
use tokio::sync::watch;

use crate::config::{Command, Disposal, EnvTemplate, ProjectMode, Suite};
use crate::copy::{self, IgnoreRules};
use crate::junit;
use crate::pytest_plugin::Plugin;
use crate::report::{AttemptReport, ErrorClass, SuiteReport, SuiteStatus, TestCaseReport, tail};

use crate::split;
use ptest_core::beneath::{self, Beneath};

use super::services::Services;
use super::{Shared, Stop, TAIL_BYTES, TAIL_LINES, Unit, base_report, error, stopped};

/// One suite shard, start to end, in worker slot `slot`.
pub(super) async fn run_unit(
    shared: Arc<Shared>,
    unit: Unit,
    slot: usize,
    stop: watch::Receiver<Option<Stop>>,
) -> SuiteReport {
    let started_at = Timestamp::now();
    let mut report = run_in_env(&shared, &unit, stop).await;
    report.slot = Some(slot);
    report.started_at = Some(started_at);
    report.ended_at = Some(Timestamp::now());
    report
}

/// Creates the shard's environment, runs its attempts there and disposes of it as its
/// template's cleanup policy (or `--keep`, `--keep-failed`) says.
async fn run_in_env(
    shared: &Shared,
    unit: &Unit,
    mut stop: watch::Receiver<Option<Stop>>,
) -> SuiteReport {
    let project = &shared.project;
    let suite = project.suite(&unit.suite).expect("planned suites exist");
    let template = project.template(suite);
    let mut report = base_report(project, unit);

    let mut name = format!("run-{}-{}", shared.run_id, suite.env_stem());
    if let Some(shard) = unit.shard {
        name.push_str(&format!("-{shard}"));
    }
    let env_name = match EnvName::new(&name) {
        Ok(n) => n,
        Err(e) => return error(report, "naming the environment", &e),
    };
    let labels = unit.labels(&shared.run_id);
    let disposal = template.disposal(shared.options.keep);
    let mut spec = template.spec(env_name, labels);
    // Where pyproject.toml states the project's dependencies, they go with the other
    // packages and the wheel is built while the environment is made (it is installed last);
    // else the wheel comes first, to be read for them.
    let mut wheel_later = None;
    if let (Some(extras), Some(venv)) = (&template.install_project, spec.virtualenv.as_mut()) {
        match ptest_python::project::declared_requires(&project.dir, extras) {
            Some(requires) => {
                venv.packages.extend(requires);
                wheel_later = Some(ProjectLater {
                    python: venv.python.clone(),
                    extras: extras.clone(),
                });
            }
            None => {
                let home = shared.manager.home();
                match shared
                    .wheels
                    .get(home, &project.dir, venv.python.as_deref())
                    .await
                {
                    Ok(wheel) => {
                        venv.project = Some(ProjectWheel {
                            wheel,
                            extras: extras.clone(),
                        });
                    }
                    Err(e) => return error(report, "installing the project", &e),
                }
            }
        }
    }
    match disposal {
        Disposal::Keep(policy) => spec.cleanup = policy,
        // Removed by this run; should this process die first, `ptest gc --shutdown` still
        // collects it. An environment that --keep-failed may keep is born `on_request`,
        // since a policy cannot change after creation: a passing suite's is removed here.
        Disposal::EndOfSuite | Disposal::EndOfRun => {
            spec.cleanup = if shared.options.keep_failed {
                ptest_core::CleanupPolicy::OnRequest
            } else {
                ptest_core::CleanupPolicy::OnShutdown
            };
            spec.ttl = None;
        }
    }
    // Creation is not interrupted: an engine's blocking work (an install) would go on after
    // the future was dropped. The stop is checked right after.
    let mut layer_warnings = Vec::new();
    let made = create(
        shared,
        template,
        spec,
        wheel_later.as_ref(),
        &mut layer_warnings,
    );
    let (env, mode) = match made.await {
        Ok(made) => made,
        Err((what, e)) => {
            report.warnings = layer_warnings;
            return error(report, &format!("creating environment {name}{what}"), &e);
        }
    };
    report.env_name = Some(env.name.to_string());
    // Where the root keeps its path inside (not in a container), pytest suites report each
    // test as it ends.
    let sees_root = shared
        .manager
        .traits(template.level)
        .is_ok_and(|t| t.root_at_host_path);
    let plugin = sees_root
        .then(|| {
            Plugin::install(&env.root)
                .inspect_err(|e| tracing::debug!("no pytest plugin in {}: {e}", env.name))
                .ok()
        })
        .flatten();

    let already = *stop.borrow();
    let interrupted = if let Some(s) = already {
        Some(s)
    } else {
        shared
            .reporter
            .suite_started(&unit.suite, unit.shard, env.name.as_str());
        let started = Instant::now();
        tokio::select! {
            () = attempts(shared, suite, unit, &env, mode, plugin.as_ref(), &mut report) => {
                report.duration = started.elapsed();
                None
            }
            s = stopped(&mut stop) => {
                report.duration = started.elapsed();
                Some(s)
            }
        }
    };
    report.warnings.splice(0..0, layer_warnings);
    if let Some(s) = interrupted {
        let (status, reason) = match s {
            Stop::Cancelled => (SuiteStatus::Cancelled, "the run was cancelled".to_owned()),
            Stop::RunTimeout => (
                SuiteStatus::TimedOut,
                format!(
                    "the run's timeout ({}) passed",
                    humantime::format_duration(shared.options.timeout.unwrap_or_default())
                ),
            ),
        };
        report.status = status;
        report.reason = Some(reason);
        report.exit_code = None;
    }

    // Read before the environment goes: the cgroup's peak memory and CPU time die with it.
    // The stored record carries what the engine noted at creation (its cgroup's name).
    let measured = shared
        .manager
        .get_environment(env.id.as_str())
        .unwrap_or_else(|_| env.clone());
    match shared.manager.resource_usage(&measured).await {
        Ok(usage) => report.resources = Some(usage),
        Err(e) => tracing::debug!("no resource usage of {}: {e}", env.name),
    }
    let failed = !report.status.is_success() && report.status != SuiteStatus::Cancelled;
    let keep = interrupted.is_none()
        && (matches!(disposal, Disposal::Keep(_)) || shared.options.keep_failed && failed);
    // Disposal::EndOfRun goes with the rest when the run ends (see `sweep`).
    report.env_kept = keep;
    if !keep
        && (interrupted.is_some() || disposal != Disposal::EndOfRun)
        && let Err(e) = shared
            .manager
            .cleanup(&env, RemoveOptions { force: true })
            .await
    {
        tracing::warn!("could not remove environment {}: {e}", env.name);
        if report.status.is_success() {
            return error(report, &format!("removing environment {}", env.name), &e);
        }
    }
    report
}

/// Creates a shard's environment from `spec` and says how its suite sees the project: the
/// template's `project`, or by default an overlay where the environment is sandboxed and a
/// copy elsewhere. A default overlay that cannot be had (no namespaces here, or a mount
/// overlayfs refuses) falls back to a copy, with a warning in `warnings` saying why; an
/// asked-for one is an error (what was being made, and why). With `wheel_later`, the
/// project's wheel is installed once the engine made the rest.
async fn create(
    shared: &Shared,
    template: &EnvTemplate,
    spec: EnvironmentSpec,
    wheel_later: Option<&ProjectLater>,
    warnings: &mut Vec<String>,
) -> Result<(Environment, ProjectMode), (String, ptest_core::Error)> {
    let manager = &shared.manager;
    let plain = |spec, mode| async move {
        match make(shared, spec, wheel_later).await {
            Ok(env) => Ok((env, mode)),
            Err(e) => Err((String::new(), e)),
        }
    };
    let asked = template.project;
    // Where the engine never overlays (a container, security low), a copy without a word.
    let never = manager.overlay_refusal(&spec).is_some_and(|r| r.by_design);
    let mode = asked.unwrap_or(if never {
        ProjectMode::Copy
    } else {
        ProjectMode::Overlay
    });
    if mode != ProjectMode::Overlay {
        return plain(spec, mode).await;
    }
    let copied = |why: &dyn std::fmt::Display| {
        format!("the project was copied into the environment, not overlaid: {why}")
    };
    let overlaid = EnvironmentSpec {
        overlay: Some(OverlaySpec {
            lower: shared.project.dir.clone(),
            hide: hidden(shared)
                .await
                .map_err(|e| (" (finding what the project's overlay hides)".into(), e))?,
        }),
        ..spec.clone()
    };
    if let Some(why) = manager.overlay_refusal(&overlaid).map(|r| r.reason) {
        if asked.is_some() {
            return Err((
                String::new(),
                ptest_core::Error::Usage(format!(
                    "project = \"overlay\" needs the environment's own mount namespace, and \
                     {why}; use project = \"copy\""
                )),
            ));
        }
        warnings.push(copied(&why));
        return plain(spec, ProjectMode::Copy).await;
    }
    match make(shared, overlaid, wheel_later).await {
        Ok(env) => Ok((env, ProjectMode::Overlay)),
        Err(e @ ptest_core::Error::Overlay { .. }) if asked.is_none() => {
            warnings.push(copied(&e));
            plain(spec, ProjectMode::Copy).await
        }
        Err(e @ ptest_core::Error::Overlay { .. }) => Err((
            " with the project overlaid (project = \"copy\" copies it instead)".into(),
            e,
        )),
        Err(e) => Err((String::new(), e)),
    }
}

/// The project's wheel for an environment whose spec already names its dependencies: for
/// which interpreter (the template's) and with which extras.
struct ProjectLater {
    python: Option<String>,
    extras: Vec<String>,
}

/// Makes the environment of `spec`; with `wheel_later`, the run's wheel of the project is
/// built (or taken from the cache) while the engine works and installed after.
async fn make(
    shared: &Shared,
    spec: EnvironmentSpec,
    wheel_later: Option<&ProjectLater>,
) -> Result<Environment, ptest_core::Error> {
    let manager = &shared.manager;
    let Some(later) = wheel_later else {
        return manager.create_environment(spec).await;
    };
    let wheel = || {
        let python = later.python.as_deref();
        shared
            .wheels
            .get(manager.home(), &shared.project.dir, python)
    };
    let project = async {
        Ok(ProjectWheel {
            wheel: wheel().await?,
            extras: later.extras.clone(),
        })
    };
    // The build starts now, beside the engine's work, not when the engine asks for the
    // wheel: a run builds its wheel once, so that ask waits for this build.
    let (_, made) = tokio::join!(wheel(), manager.create_environment_then(spec, project));
    made
}

/// What an overlaid project hides: the paths a copy leaves out, found once per run.
async fn hidden(shared: &Shared) -> Result<Vec<PathBuf>, ptest_core::Error> {
    let dir = shared.project.dir.clone();
    let found = shared
        .hidden
        .get_or_init(|| {
            let dir = dir.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let rules = IgnoreRules::for_project(&dir)?;
                    copy::ignored_paths(&dir, &rules)
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|found| found)
                .map_err(Arc::new)
            }
        })
        .await;
    found.clone().map_err(|e| {
        ptest_core::Error::io("reading", dir, std::io::Error::new(e.kind(), e.to_string()))
    })
}

/// The outcome of one attempt.
struct Attempt {
    status: SuiteStatus,
    reason: Option<String>,
    error_class: Option<ErrorClass>,
    result: Option<ProcessResult>,
    cases: Vec<crate::report::TestCaseReport>,
    warnings: Vec<String>,
}

impl Attempt {
    /// An attempt that ended `status` before a command's result was in.
    fn ended(status: SuiteStatus, reason: Option<String>) -> Attempt {
        Attempt {
            status,
            reason,
            error_class: None,
            result: None,
            cases: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// An attempt that could not run its command, for `reason`.
    fn errored(reason: String) -> Attempt {
        Attempt::ended(SuiteStatus::Error, Some(reason))
    }
}

/// The history a split suite's shards are balanced by, read once per run.
async fn history(shared: &Shared, suite: &Suite) -> Arc<split::History> {
    let cell = shared
        .histories
        .lock()
        .expect("no panic while holding the lock")
        .entry(suite.name.clone())
        .or_default()
        .clone();
    cell.get_or_init(|| async {
        let reports = shared.manager.home().path().join("reports");
        let file = shared.project.file.display().to_string();
        let name = suite.name.clone();
        let read = tokio::task::spawn_blocking(move || split::history(&reports, &file, &name));
        Arc::new(read.await.ok().flatten().unwrap_or_default())
    })
    .await
    .clone()
}

/// One attempt: its number, and where its setup and run write their output (two files of
/// the run's report directory, appended to; what comes back into memory is their tails).
struct Attempted {
    number: u32,
    /// ptest's pytest plugin in the environment, when it has one.
    plugin: Option<Plugin>,
    /// `<report dir>/output/<suite>[-<shard>].<attempt>`: its files' common prefix.
    stem: PathBuf,
    stdout: (PathBuf, Arc<std::os::fd::OwnedFd>),
    stderr: (PathBuf, Arc<std::os::fd::OwnedFd>),
}

impl Attempted {
    /// `<PTEST_HOME>/reports/<run id>/output/<suite>[-<shard>].<attempt>.{stdout,stderr}.log`.
    fn open(
        shared: &Shared,
        unit: &Unit,
        attempt: u32,
        plugin: Option<Plugin>,
    ) -> std::io::Result<Attempted> {
        let dir = shared.report_dir().join("output");
        std::fs::create_dir_all(&dir)?;
        let suite = shared.project.suite(&unit.suite);
        let mut stem = suite.map_or_else(|| unit.suite.clone(), Suite::env_stem);
        if let Some(shard) = unit.shard {
            stem.push_str(&format!("-{shard}"));
        }
        let file = |stream: &str| -> std::io::Result<(PathBuf, Arc<std::os::fd::OwnedFd>)> {
            let path = dir.join(format!("{stem}.{attempt}.{stream}.log"));
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            Ok((path, Arc::new(f.into())))
        };
        Ok(Attempted {
            number: attempt,
            plugin,
            stem: dir.join(format!("{stem}.{attempt}")),
            stdout: file("stdout")?,
            stderr: file("stderr")?,
        })
    }

    fn mode(&self) -> OutputMode {
        OutputMode::Fds {
            stdout: self.stdout.1.clone(),
            stderr: self.stderr.1.clone(),
        }
    }

    /// Where the JUnit file the attempt wrote is kept.
    fn junit_copy(&self) -> PathBuf {
        let mut path = self.stem.clone().into_os_string();
        path.push(".junit.xml");
        path.into()
    }

    fn paths(&self) -> [PathBuf; 2] {
        [self.stdout.0.clone(), self.stderr.0.clone()]
    }

    /// `result` with the tails of the files as its output.
    fn with_tails(&self, mut result: ProcessResult) -> ProcessResult {
        result.stdout = file_tail(&self.stdout.0);
        result.stderr = file_tail(&self.stderr.0);
        result
    }
}

/// The last lines of the file at `path`, reading at most its last [`TAIL_BYTES`].
fn file_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let from = len.saturating_sub(TAIL_BYTES as u64);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err()
        || f.take(TAIL_BYTES as u64).read_to_end(&mut buf).is_err()
    {
        return String::new();
    }
    tail(&String::from_utf8_lossy(&buf), TAIL_LINES, TAIL_BYTES)
}

/// Runs attempts until one passes or the retries are used up, filling `report`.
async fn attempts(
    shared: &Shared,
    suite: &Suite,
    unit: &Unit,
    env: &Environment,
    mode: ProjectMode,
    plugin: Option<&Plugin>,
    report: &mut SuiteReport,
) {
    let project = &shared.project;
    let retries = shared.options.retries.unwrap_or(suite.retries);
    let dir = match mode {
        ProjectMode::Bind => project.dir.clone(),
        _ => env.workspace(),
    };
    // Where the workspace is not on this host, the copy made under the root goes in from there.
    let copies_in = shared
        .manager
        .traits(env.level)
        .is_ok_and(|t| !t.host_workspace && t.copies_in);
    for attempt in 1..=retries + 1 {
        report.attempts = attempt;
        let started = Instant::now();
        let prepared = match mode {
            ProjectMode::Copy => fresh_copy(&project.dir, &env.root, attempt > 1)
                .await
                .map_err(|e| format!("copying the project into {}: {e}", dir.display())),
            ProjectMode::Overlay if attempt > 1 => renew_overlay(&shared.manager, env).await,
            _ => Ok(()),
        };
        let prepared = match prepared {
            Ok(()) if copies_in && mode == ProjectMode::Copy => shared
                .manager
                .copy_in(env, &dir, Path::new("workspace"))
                .await
                .map_err(|e| format!("copying the project into the environment: {e}")),
            prepared => prepared,
        };
        // Setup's and run's whole output go to files of the run's report directory; only
        // tails come back into memory.
        let prepared = prepared.and_then(|()| {
            Attempted::open(shared, unit, attempt, plugin.cloned())
                .map_err(|e| format!("opening the suite's output files: {e}"))
        });
        let outcome = match prepared {
            Ok(output) => {
                report.output_files.extend(output.paths());
                let outcome = run_attempt(shared, suite, unit, env, &dir, mode, &output).await;
                report
                    .output_files
                    .extend(Some(output.junit_copy()).filter(|p| p.is_file()));
                outcome
            }
            Err(reason) => Attempt {
                status: SuiteStatus::Error,
                reason: Some(reason),
                error_class: Some(ErrorClass::Internal),
                result: None,
                cases: Vec::new(),
                warnings: Vec::new(),
            },
        };
        report.status = outcome.status;
        report.reason = outcome.reason;
        report.error_class = outcome.error_class;
        report.test_cases = outcome.cases;
        report.warnings = outcome.warnings;
        if let Some(result) = &outcome.result {
            report.exit_code = Some(result.shell_code());
            report.stdout_tail = tail(&result.stdout, TAIL_LINES, TAIL_BYTES);
            report.stderr_tail = tail(&result.stderr, TAIL_LINES, TAIL_BYTES);
        }
        match report.status {
            SuiteStatus::Passed => {
                if attempt > 1 {
                    report.status = SuiteStatus::Flaky;
                    report.reason = Some(format!("passed on attempt {attempt}"));
                }
                return;
            }
            SuiteStatus::Failed | SuiteStatus::TimedOut if attempt <= retries => {
                shared
                    .reporter
                    .suite_retrying(&unit.suite, unit.shard, attempt, report.exit_code);
                report.retried.push(AttemptReport {
                    attempt,
                    status: report.status,
                    reason: report.reason.take(),
                    exit_code: report.exit_code.take(),
                    duration: started.elapsed(),
                    stdout_tail: std::mem::take(&mut report.stdout_tail),
                    stderr_tail: std::mem::take(&mut report.stderr_tail),
                    failed_cases: std::mem::take(&mut report.test_cases)
                        .into_iter()
                        .filter(TestCaseReport::is_failure)
                        .collect(),
                });
            }
            _ => return,
        }
    }
}

/// Gives `env`'s overlaid workspace an empty upper layer, as its stored record says where its
/// sandbox is (the record returned at creation predates what the engine noted).
async fn renew_overlay(manager: &Manager, env: &Environment) -> Result<(), String> {
    manager
        .renew_overlay(env)
        .await
        .map_err(|e| format!("renewing the project's overlay: {e}"))
}

/// Copies the project into the workspace of the environment root `root`. On a retry the
/// workspace is made an empty real directory first, through the root's descriptor: whatever
/// the last attempt left there (a link to a host directory included) is removed as a name,
/// never followed.
async fn fresh_copy(project: &Path, root: &Path, retry: bool) -> std::io::Result<()> {
    let (project, root) = (project.to_owned(), root.to_owned());
    tokio::task::spawn_blocking(move || {
        let root = Beneath::open(&root)?;
        let workspace = Path::new("workspace");
        let dir = if retry {
            root.reset_dir(workspace, 0o755)?
        } else {
            root.dir(workspace)?
        };
        let rules = IgnoreRules::for_project(&project)?;
        copy::copy_tree(&project, &dir, &rules).map(|_| ())
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The argv that runs `command` in `dir`: as is when `dir` is the workspace (the engine's
/// working directory), else through `sh` changing directory first, since `ExecRequest` has
/// no working directory of its own yet.
pub(super) fn argv_in(command: &Command, dir: &Path, in_workspace: bool) -> Vec<String> {
    let argv = command.argv();
    if in_workspace {
        return argv;
    }
    let mut out = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "cd \"$1\" && shift && exec \"$@\"".to_owned(),
        "sh".to_owned(),
        dir.display().to_string(),
    ];
    out.extend(argv);
    out
}

/// setup, run and teardown once, in `dir`, where the project is seen as `mode` says.
async fn run_attempt(
    shared: &Shared,
    suite: &Suite,
    unit: &Unit,
    env: &Environment,
    dir: &Path,
    mode: ProjectMode,
    output: &Attempted,
) -> Attempt {
    let attempt = output.number;
    let in_workspace = mode != ProjectMode::Bind;
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    vars.insert("PTEST_RUN_ID".into(), shared.run_id.clone());
    vars.insert("PTEST_SUITE".into(), suite.name.clone());
    vars.insert("PTEST_SHARD".into(), unit.shard.unwrap_or(0).to_string());
    vars.insert("PTEST_SHARDS".into(), unit.shards.to_string());
    vars.insert("PTEST_ATTEMPT".into(), attempt.to_string());
    vars.insert("PTEST_PROJECT_DIR".into(), dir.display().to_string());
    vars.extend(shared.project.template(suite).env_vars.clone());
    vars.extend(suite.env_vars.clone());
    // A split suite's shard: its pytest keeps its share of the tests (see `pytest_plugin`).
    let splits = split::splits(suite, unit.shards) && output.plugin.is_some();
    if let Some(plugin) = &output.plugin {
        plugin.reset();
        plugin.vars(&mut vars);
        if splits && let Err(e) = plugin.split(&*history(shared, suite).await, &mut vars) {
            return Attempt::errored(format!("writing the durations for split: {e}"));
        }
    }
    // Services first: a container service's ports are in `vars` for every command after.
    let mut services = Services::default();
    let services_started = services
        .start(shared, unit, env, dir, in_workspace, &mut vars)
        .await;
    let request = |command: &Command| ExecRequest {
        argv: argv_in(command, dir, in_workspace),
        env: vars.clone().into_iter().collect(),
        timeout: suite.timeout,
        output: output.mode(),
        ..ExecRequest::default()
    };
    let exec = |command: &Command| {
        let request = request(command);
        async move {
            let manager = &shared.manager;
            ptest_core::monitor::while_watching(manager, env, manager.execute_command(env, request))
                .await
                .map(|r| output.with_tails(r))
        }
    };
    let failed_stage = |stage: &str, r: ProcessResult| Attempt {
        status: if r.timed_out {
            SuiteStatus::TimedOut
        } else {
            SuiteStatus::Failed
        },
        reason: Some(describe(stage, &r, suite)),
        error_class: None,
        result: Some(r),
        cases: Vec::new(),
        warnings: Vec::new(),
    };
    let broken = |stage: &str, e: ptest_core::Error| Attempt {
        status: SuiteStatus::Error,
        reason: Some(format!("{stage}: {e}")),
        error_class: Some(e.kind().into()),
        result: None,
        cases: Vec::new(),
        warnings: Vec::new(),
    };

    // What an overlaid workspace's commands write is in its upper layer, empty at the start
    // of every attempt (the overlay itself is only mounted inside the sandbox).
    // The JUnit file: its directory (which ptest trusts) and its path beneath it (which the
    // suite's commands control).
    let junit_path = suite.junit.as_ref().map(|p| match mode {
        ProjectMode::Overlay => (env.overlay_upper(), p.clone()),
        _ => (dir.to_owned(), p.clone()),
    });
    if let Some((base, rel)) = &junit_path
        && mode != ProjectMode::Overlay
    {
        // A file left by an earlier run (in a bound project) must not pass for this one's;
        // only the name goes, beneath its directory.
        let _ = Beneath::open(base).and_then(|b| b.remove_file(rel));
    }
    let mut outcome = services_started.err().map(Attempt::errored);
    outcome = match (outcome, &suite.setup) {
        (Some(failed), _) => Some(failed),
        (None, None) => None,
        (None, Some(setup)) => match exec(setup).await {
            Ok(r) if r.success() => None,
            Ok(r) => Some(failed_stage("setup", r)),
            Err(e) => Some(broken("setup", e)),
        },
    };
    if outcome.is_none() {
        let run = exec(&suite.run);
        let ran = match &output.plugin {
            Some(plugin) => watch_progress(shared, unit, plugin, run).await,
            None => run.await,
        };
        outcome = Some(match ran {
            Ok(r) if r.success() => Attempt {
                status: SuiteStatus::Passed,
                reason: None,
                error_class: None,
                result: Some(r),
                cases: Vec::new(),
                warnings: Vec::new(),
            },
            Ok(r) => failed_stage("run", r),
            Err(e) => broken("run", e),
        });
    }
    let mut outcome = outcome.expect("set above");
    if splits
        && outcome.result.is_some()
        && let Some(plugin) = &output.plugin
        && plugin.shared().is_none()
    {
        outcome.warnings.push(
            "split = \"pytest\": ptest's pytest plugin did not run (the command does not run \
             pytest, or sets its own PYTHONPATH), so this shard ran every test"
                .to_owned(),
        );
    }
    if let Some((base, rel)) = &junit_path
        && outcome.result.is_some()
    {
        let kept = output.junit_copy();
        let read = match copy_out_junit(shared, env, rel).await {
            Ok(Some((copied, name))) => ingest(&copied, &name, &kept, &mut outcome).await,
            Ok(None) => ingest(base, rel, &kept, &mut outcome).await,
            Err(warning) => {
                outcome.warnings.push(warning);
                false
            }
        };
        if read
            && in_workspace
            && let Some(result) = &mut outcome.result
        {
            // The path the suite printed (pytest's "generated xml file: ...") goes with its
            // environment: the tails name the kept copy instead.
            let (seen, kept) = (
                dir.join(rel).display().to_string(),
                kept.display().to_string(),
            );
            result.stdout = result.stdout.replace(&seen, &kept);
            result.stderr = result.stderr.replace(&seen, &kept);
        }
    }
    if let Some(teardown) = &suite.teardown {
        match exec(teardown).await {
            Ok(r) if r.success() => {}
            Ok(r) if outcome.status == SuiteStatus::Passed => {
                outcome = failed_stage("teardown", r);
            }
            Ok(r) => {
                let extra = describe("teardown", &r, suite);
                outcome.reason = Some(match outcome.reason {
                    Some(reason) => format!("{reason}; {extra}"),
                    None => extra,
                });
            }
            Err(e) if outcome.status == SuiteStatus::Passed => outcome = broken("teardown", e),
            Err(e) => tracing::warn!("teardown of {} failed: {e}", suite.name),
        }
    }
    services.stop(shared, suite, env).await;
    outcome.warnings.append(&mut services.warnings);
    outcome
}

/// Runs `run`, telling the reporter what the progress plugin reports meanwhile.
async fn watch_progress<T>(
    shared: &Shared,
    unit: &Unit,
    plugin: &Plugin,
    run: impl Future<Output = T>,
) -> T {
    let mut run = std::pin::pin!(run);
    let mut last = None;
    loop {
        tokio::select! {
            result = &mut run => return result,
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                let now = plugin.progress();
                if let Some((done, total)) = now.filter(|_| now != last) {
                    shared.reporter.suite_progress(&unit.suite, unit.shard, done, total);
                }
                last = now;
            }
        }
    }
}

/// Most ptest reads of a JUnit file.
const JUNIT_MAX: u64 = 64 << 20;

/// Where `env`'s workspace is not on this host, copies the suite's JUnit file `rel` (relative
/// to the workspace) out of the environment into `run/junit` of its root on this host, emptied
/// first: that directory and the file's name, to be read there (a file the suite did not write
/// is not there). `None` where the workspace is on this host; `Err`, a warning.
async fn copy_out_junit(
    shared: &Shared,
    env: &Environment,
    rel: &Path,
) -> Result<Option<(PathBuf, PathBuf)>, String> {
    let cannot = |e: &dyn std::fmt::Display| {
        format!(
            "JUnit file {} could not be copied out of the environment ({e}); the suite's \
             result stands without per-test results",
            rel.display()
        )
    };
    let traits = shared.manager.traits(env.level).map_err(|e| cannot(&e))?;
    if traits.host_workspace {
        return Ok(None);
    }
    let name = rel.file_name().ok_or_else(|| cannot(&"it names no file"))?;
    let dir = env.root.join("run").join("junit");
    let _ = tokio::fs::remove_dir_all(&dir).await;
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| cannot(&e))?;
    let from = Path::new("workspace").join(rel);
    match shared.manager.copy_out(env, &from, &dir).await {
        Ok(()) | Err(ptest_core::Error::Missing(_)) => Ok(Some((dir, name.into()))),
        Err(e) => Err(cannot(&e)),
    }
}

/// Reads the suite's JUnit file `rel` beneath `base` into the outcome, and keeps a copy of it
/// at `keep` (in the run's report directory, since the environment goes); whether it did. A
/// failed case fails the suite. A file that is missing or not JUnit leaves the command's
/// result standing, with a warning; so does one ptest refuses to read (a symlink, a FIFO,
/// more than [`JUNIT_MAX`]).
async fn ingest(base: &Path, rel: &Path, keep: &Path, outcome: &mut Attempt) -> bool {
    let shown = rel.display().to_string();
    let (base, rel, kept) = (base.to_owned(), rel.to_owned(), keep.to_owned());
    let read = tokio::task::spawn_blocking(move || {
        match Beneath::open(&base).and_then(|b| b.read(&rel, JUNIT_MAX)) {
            Ok(bytes) => {
                if let Err(e) = std::fs::write(&kept, &bytes) {
                    tracing::warn!("could not keep a copy of {}: {e}", kept.display());
                }
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            // In an overlay's upper layer, a file the suite deleted is a whiteout (a device).
            Err(beneath::Error::NotRegular {
                kind: "character device",
                ..
            }) => Err(std::io::ErrorKind::NotFound.into()),
            Err(e) => Err(std::io::Error::from(e)),
        }
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let read_ok = read.is_ok();
    let problem = match read {
        Ok(text) => match junit::read_cases(&text) {
            Ok(cases) => {
                let failed = cases.iter().filter(|c| c.is_failure()).count();
                outcome.cases = cases;
                if failed > 0 && outcome.status == SuiteStatus::Passed {
                    outcome.status = SuiteStatus::Failed;
                    outcome.reason = Some(format!("{failed} test case(s) failed in {shown}"));
                }
                None
            }
            Err(e) => Some(format!(
                "JUnit file {shown} is malformed ({e}); the suite's result stands without \
                 per-test results"
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "JUnit file {shown} was not written; the suite's result stands without per-test \
             results"
        )),
        Err(e) => Some(format!(
            "JUnit file {shown} was not readable ({e}); the suite's result stands without \
             per-test results"
        )),
    };
    outcome.warnings.extend(problem);
    read_ok && keep.is_file()
}

fn describe(stage: &str, r: &ProcessResult, suite: &Suite) -> String {
    if r.timed_out {
        format!(
            "{stage} timed out after {} and its process tree was killed",
            humantime::format_duration(suite.timeout.unwrap_or_default())
        )
    } else if let Some(code) = r.exit_code {
        format!("{stage} exited with code {code}")
    } else {
        format!("{stage} was killed by signal {}", r.signal.unwrap_or(0))
    }
}
