//! Shared set-up for the runner's tests: a real Manager (directory and virtualenv engines) in
//! a temporary PTEST_HOME, projects written from text, a reporter that records, and a hash of
//! a directory tree.

#![allow(clippy::unwrap_used, dead_code)] // tests fail loudly on purpose; files use parts

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ptest_core::{Config, EngineRegistry, EnvFilter, Home, Manager};
use ptest_runner::{Project, Reporter, Run, RunOptions, RunReport, Selection, SuiteReport};

/// A temporary home with a manager, a project directory and a scratch directory `out/`
/// that suites can write to (by absolute path) to tell the test what they saw.
pub struct Harness {
    pub tmp: tempfile::TempDir,
    pub manager: Arc<Manager>,
}

impl Harness {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        for sub in ["project", "out"] {
            std::fs::create_dir_all(tmp.path().join(sub)).unwrap();
        }
        let home = Home::at(tmp.path().join("home"));
        let mut engines = EngineRegistry::new();
        engines.register(Arc::new(ptest_local::DirectoryEngine::new()));
        engines.register(Arc::new(ptest_local::VirtualenvEngine::new(&home)));
        let manager = Arc::new(Manager::open(home, Config::default(), engines).unwrap());
        Self { tmp, manager }
    }

    pub fn project_dir(&self) -> PathBuf {
        self.tmp.path().join("project")
    }

    pub fn out(&self) -> PathBuf {
        self.tmp.path().join("out")
    }

    /// Writes `ptest.toml` (with `@OUT@` replaced by the scratch directory) and loads it.
    pub fn project(&self, toml: &str) -> Project {
        let text = toml.replace("@OUT@", &self.out().display().to_string());
        let file = self.project_dir().join("ptest.toml");
        std::fs::write(&file, text).unwrap();
        Project::load(&file).unwrap()
    }

    /// As [`Harness::project`], with suites that name no template at security level `low`
    /// (host namespaces), so they can write to `@OUT@` on the host: at the default `medium`
    /// the host filesystem is read-only to them.
    pub fn project_low(&self, toml: &str) -> Project {
        self.project(&format!("[env.basic]\nsecurity = \"low\"\n\n{toml}"))
    }

    /// Writes a file of the project (executable when it starts with `#!`).
    pub fn file(&self, rel: &str, text: &str) {
        let path = self.project_dir().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        if text.starts_with("#!") {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    /// Runs every suite of `project` with `options` and returns the report and what the
    /// reporter saw.
    pub async fn run(&self, project: Project, options: RunOptions) -> (RunReport, Arc<Recorder>) {
        self.run_selected(project, &Selection::default(), options)
            .await
    }

    pub async fn run_selected(
        &self,
        project: Project,
        selection: &Selection,
        options: RunOptions,
    ) -> (RunReport, Arc<Recorder>) {
        let run = Run::new(project, selection).unwrap();
        let recorder = Arc::new(Recorder::default());
        let report = run
            .execute(
                self.manager.clone(),
                options,
                recorder.clone(),
                std::future::pending(),
            )
            .await;
        (report, recorder)
    }

    /// Names of the environments that exist in the home.
    pub fn env_names(&self) -> Vec<String> {
        self.manager
            .list_environments(&EnvFilter::default())
            .unwrap()
            .into_iter()
            .map(|e| e.name.to_string())
            .collect()
    }
}

/// A reporter that remembers the order of events.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<String>>,
}

impl Reporter for Recorder {
    fn suite_started(&self, suite: &str, shard: Option<u32>, _env: &str) {
        self.events.lock().unwrap().push(format!(
            "start {suite}{}",
            shard.map(|s| format!("[{s}]")).unwrap_or_default()
        ));
    }
    fn suite_retrying(&self, suite: &str, _shard: Option<u32>, attempt: u32, _code: Option<i32>) {
        self.events
            .lock()
            .unwrap()
            .push(format!("retry {suite} {attempt}"));
    }
    fn suite_progress(&self, suite: &str, _shard: Option<u32>, done: u64, total: u64) {
        self.events
            .lock()
            .unwrap()
            .push(format!("progress {suite} {done}/{total}"));
    }
    fn suite_finished(&self, report: &SuiteReport) {
        self.events.lock().unwrap().push(format!(
            "end {} {}",
            report.display_name(),
            report.status
        ));
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    pub fn position(&self, event: &str) -> usize {
        let events = self.events();
        events
            .iter()
            .position(|e| e == event)
            .unwrap_or_else(|| panic!("no {event:?} in {events:?}"))
    }
}

/// Options running `n` suite shards at once.
pub fn jobs(n: usize) -> RunOptions {
    RunOptions {
        jobs: n,
        ..RunOptions::default()
    }
}

/// The report of the suite shard `name`.
pub fn suite<'a>(report: &'a RunReport, name: &str) -> &'a SuiteReport {
    report
        .suites
        .iter()
        .find(|s| s.display_name() == name)
        .unwrap_or_else(|| panic!("no suite {name} in {report:#?}"))
}

/// Every file, directory and symlink under `dir` with its mode and content (or target).
pub fn tree_state(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = entry.path().symlink_metadata().unwrap();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let content = if meta.is_dir() {
                stack.push(path.clone());
                Vec::new()
            } else if meta.is_symlink() {
                std::fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                std::fs::read(&path).unwrap()
            };
            out.insert(rel, (meta.permissions().mode(), content));
        }
    }
    out
}

/// Where a suite's writes to its working directory are seen from the host: the upper layer
/// of an overlaid project (the overlay itself is mounted inside the sandbox only), else the
/// copy in `workspace/`.
pub fn written(env: &ptest_core::Environment) -> PathBuf {
    match env.spec.overlay {
        Some(_) => env.overlay_upper(),
        None => env.workspace(),
    }
}

/// Returns `true` when the test may go on: the host makes the namespaces an overlaid project
/// needs. Otherwise prints why and returns `false`, or panics under `PTEST_REQUIRE_ALL=1`.
pub fn can_overlay() -> bool {
    let disabled = std::env::var("PTEST_SANDBOX_DISABLE")
        .is_ok_and(|v| v.split(',').any(|f| f.trim() == "namespaces"));
    let why = if !rustix::process::geteuid().is_root() {
        "overlaid projects need pods, which this build makes as root only"
    } else if !Path::new("/proc/self/ns/mnt").exists() {
        "the kernel has no mount namespaces"
    } else if disabled {
        "PTEST_SANDBOX_DISABLE names namespaces"
    } else {
        return true;
    };
    ptest_testkit::runnable(Some(why))
}
