//! Shared set-up for the integration tests: skipping rules, fixtures, running a command and
//! capturing its output.

#![allow(dead_code)]

use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ptest_sandbox::{Cgroup, CommandSpec, ExitStatus, Limits, Pod, PodSpec, Stdio};

/// Parent cgroup of every group the tests create.
pub const CGROUP_PARENT: &str = "ptest-sandbox-tests";

/// A PATH that finds the host's tools.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Returns `true` when the test may go on; otherwise skips by the workspace's rule
/// ([`ptest_testkit::runnable`]: prints why, or panics under `PTEST_REQUIRE_ALL=1`).
pub fn require(ok: bool, reason: &str) -> bool {
    ptest_testkit::runnable((!ok).then_some(reason))
}

/// Whether we can create pods here (root: namespaces and cgroups).
pub fn can_sandbox() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    require(root, "pod tests need root (namespaces, mounts, cgroups)")
        && require(
            ptest_sandbox::cgroup::probe().version.is_ok(),
            "no cgroup hierarchy",
        )
}

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pod over a temporary root, destroyed on drop.
pub struct Fixture {
    pub root: tempfile::TempDir,
    pub pod: Option<Pod>,
    pub cgroup_name: Option<String>,
}

impl Fixture {
    /// A pod with loopback network and `limits` (a cgroup is created when `limits` is given).
    pub fn new(limits: Option<Limits>) -> Fixture {
        Fixture::with(limits, |_| {})
    }

    /// As [`Fixture::new`], with the spec adjusted by `edit` before creation.
    pub fn with(limits: Option<Limits>, edit: impl FnOnce(&mut PodSpec)) -> Fixture {
        let root = tempfile::Builder::new()
            .prefix("ptest-sandbox-")
            .tempdir()
            .expect("temp root");
        let name = unique("pod");
        let mut spec = PodSpec::new(root.path(), &name);
        let mut cgroup_name = None;
        if let Some(limits) = limits {
            spec.cgroup =
                Some(Cgroup::create(CGROUP_PARENT, &name, &limits).expect("create cgroup"));
            cgroup_name = Some(name);
        }
        edit(&mut spec);
        let pod = Pod::create(&spec).expect("create pod");
        Fixture {
            root,
            pod: Some(pod),
            cgroup_name,
        }
    }

    pub fn pod(&self) -> &Pod {
        self.pod.as_ref().expect("pod present until drop")
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(pod) = self.pod.take() {
            let _ = pod.destroy();
        }
    }
}

/// What a finished command produced.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn capture_file(dir: &Path, name: &str) -> (PathBuf, OwnedFd) {
    let path = dir.join(name);
    let f = File::create(&path).expect("capture file");
    (path, f.into())
}

/// Runs `sh -c script` (or `argv` when the script is `None`) with `spawn` and captures output.
pub fn run_with(
    spawn: impl FnOnce(CommandSpec) -> ptest_sandbox::Result<ptest_sandbox::SpawnedChild>,
    argv: &[&str],
) -> Output {
    let dir = tempfile::tempdir().expect("capture dir");
    let (out_path, out) = capture_file(dir.path(), "out");
    let (err_path, err) = capture_file(dir.path(), "err");
    let mut cmd = CommandSpec::new(argv.iter().copied()).env("PATH", PATH);
    cmd.stdout = Stdio::Fd(out);
    cmd.stderr = Stdio::Fd(err);
    cmd.stdin = Stdio::null().expect("/dev/null");
    let child = spawn(cmd).expect("spawn");
    let status = child.wait().expect("wait");
    Output {
        status,
        stdout: fs::read_to_string(out_path).expect("read stdout"),
        stderr: fs::read_to_string(err_path).expect("read stderr"),
    }
}

/// Runs `sh -c script` inside `pod`.
pub fn sh(pod: &Pod, script: &str) -> Output {
    run_with(|cmd| pod.spawn(&cmd), &["sh", "-c", script])
}

/// Polls `cond` for up to 10 s.
pub fn eventually(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        ptest_testkit::wait_until(Duration::from_secs(10), cond),
        "timed out waiting for: {what}"
    );
}

/// Whether a process with this pid exists (zombies count as gone).
pub fn process_exists(pid: i32) -> bool {
    ptest_testkit::alive(pid as u32)
}

/// The real path of a python3 interpreter (resolving pyenv shims), if there is one.
pub fn python3() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && path.is_absolute()).then_some(path)
}

/// Removes a cgroup (killing what is in it) when dropped, so a failing test leaks nothing.
pub struct CgroupGuard(pub Option<Cgroup>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(cg) = self.0.take()
        {
            let _ = cg.remove();
        }
    }
}
