//! Shared set-up for CLI tests: a temporary PTEST_HOME and a `ptest` command bound to it.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose
#![allow(dead_code)] // each test file uses a different part of the support module

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A temporary home, config dir and working directory for one test.
pub struct TestHome {
    pub dir: tempfile::TempDir,
}

impl TestHome {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["home", "xdg-config", "cwd"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Self { dir }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn cwd(&self) -> PathBuf {
        self.dir.path().join("cwd")
    }

    /// `ptest ARGS...` with this home, no user config, and `cwd/` as working directory.
    pub fn ptest<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Command::from_std(self.std_command(args))
    }

    /// [`TestHome::ptest`] as a `std::process::Command`, which (unlike assert_cmd's) can be
    /// started in the background and killed.
    pub fn std_command<I, S>(&self, args: I) -> std::process::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("ptest"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // Certificates and proxies, so tests that reach PyPI work where a proxy is in the way.
            .envs(std::env::vars_os().filter(|(k, _)| {
                let k = k.to_string_lossy().to_ascii_uppercase();
                k.ends_with("_PROXY")
                    || k.starts_with("SSL_CERT")
                    || k == "PIP_CERT"
                    || k == "REQUESTS_CA_BUNDLE"
            }))
            .env("PTEST_HOME", self.home())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg-config"))
            .env("NO_COLOR", "1")
            .current_dir(self.cwd())
            .args(args);
        cmd
    }

    /// Runs `ptest ARGS... --json` (successfully; `--json` goes before any `--`) and parses
    /// its output.
    pub fn json<I, S>(&self, args: I) -> serde_json::Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
        args.insert(at, "--json".into());
        let out = self.ptest(args).assert().success();
        serde_json::from_slice(&out.get_output().stdout).expect("valid JSON")
    }

    /// Runs `ptest env exec --json ...` and parses the result whatever the command's exit code.
    pub fn exec_json(&self, env: &str, command: &[&str]) -> serde_json::Value {
        let mut args = vec!["env", "exec", "--json", env, "--"];
        args.extend_from_slice(command);
        let out = self.ptest(args).output().expect("ptest runs");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    }

    /// Creates a basic environment and returns its JSON.
    pub fn create(&self, name: &str) -> serde_json::Value {
        self.json(["env", "create", name])
    }

    /// Environment names in `env list`.
    pub fn names(&self) -> Vec<String> {
        self.json(["env", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for TestHome {
    /// Removes every environment left, so no sandbox (holder process, cgroup) outlives the
    /// test's temporary home, then collects what engines keep per home (the home's docker
    /// network), which would otherwise use up Docker's address pools over many test homes.
    fn drop(&mut self) {
        let _ = self.ptest(["env", "rm", "--all", "--force"]).output();
        let _ = self.ptest(["gc"]).output();
    }
}

/// The `ptest doctor` features of the basic level this host lacks, of `names`.
pub fn missing_features(t: &TestHome, names: &[&str]) -> Vec<String> {
    let report = t.json(["doctor"]);
    let features = report["levels"][0]["features"].as_array().unwrap().clone();
    names
        .iter()
        .filter(|name| {
            !features
                .iter()
                .any(|f| f["check"] == **name && f["ok"] == true)
        })
        .map(|name| {
            let detail = features.iter().find(|f| f["check"] == **name);
            format!(
                "{name} ({})",
                detail.map_or("not reported".into(), |f| f["detail"].to_string())
            )
        })
        .collect()
}

pub use ptest_testkit::{alive, runnable};

/// `PATH` with the directory of the `ptest` under test first, for scripts that call `ptest`.
pub fn path_with_ptest() -> std::ffi::OsString {
    let bin = assert_cmd::cargo::cargo_bin("ptest");
    let mut dirs = vec![bin.parent().unwrap().to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

/// Waits up to 5 s for `path` to hold a pid, and returns it.
pub fn read_pid(path: &Path) -> u32 {
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no pid appeared in {}", path.display());
}

/// Waits up to 5 s for `pid` to be gone.
pub fn wait_gone(pid: u32) -> bool {
    ptest_testkit::wait_until(std::time::Duration::from_secs(5), || !alive(pid))
}

/// Host pids of every process carrying `PTEST_ENV_ID=<id>`: what runs in an environment,
/// seen from the host whatever pid namespace it is in.
pub fn env_processes(id: &str) -> Vec<u32> {
    let needle = format!("PTEST_ENV_ID={id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        })
        .collect()
}

/// Waits up to 5 s for nothing to run in environment `id`.
pub fn wait_env_empty(id: &str) -> bool {
    for _ in 0..500 {
        if env_processes(id).is_empty() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}
