//! Issue 23, item 2: what an environment's command plants in its own root (symlinks to host
//! files and directories, FIFOs, huge sparse files, a workspace swapped for a link) is never
//! followed, read, written or waited on by ptest, which runs as root on the host.
//!
//! Each test plants from inside (`ptest env exec E -- sh -c '...'`, the root at its host path
//! inside), then has ptest do the operation of the table's row, at every security level this
//! host runs; it checks that the test's own canary file under its temp dir is untouched, that
//! nothing hangs (a timeout on each ptest command), that the error names what was refused,
//! and that the environment can still be removed.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::TestHome;

/// No ptest command of these tests may take longer: a hang is a failure.
const LIMIT: Duration = Duration::from_secs(60);

const SECRET: &str = "host secret: do not read\n";

/// The security levels this host runs: `low` always, `medium` with namespaces and cgroups,
/// `strict` with Landlock and seccomp too. A missing one is reported (and fails under
/// `PTEST_REQUIRE_ALL=1`).
fn levels(t: &TestHome) -> Vec<&'static str> {
    let mut out = vec!["low"];
    let missing = crate::support::missing_features(t, &["namespaces", "cgroups", "strict"]);
    let sandbox = !missing
        .iter()
        .any(|m| m.starts_with("namespaces") || m.starts_with("cgroups"));
    if sandbox {
        out.push("medium");
    }
    if missing.is_empty() {
        out.push("strict");
    }
    if !crate::support::runnable(
        (!missing.is_empty())
            .then(|| format!("planted tests at medium and strict need: {missing:?}")),
    ) {
        eprintln!("running at {out:?} only");
    }
    out
}

/// A canary directory outside ptest's home holding a secret file, for one environment.
struct Canary {
    dir: PathBuf,
}

impl Canary {
    fn new(t: &TestHome, name: &str) -> Canary {
        let dir = t.dir.path().join(format!("canary-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), SECRET).unwrap();
        Canary { dir }
    }

    fn secret(&self) -> PathBuf {
        self.dir.join("secret")
    }

    /// Nothing was written in the directory and the secret is as it was.
    fn untouched(&self, at: &str) {
        assert_eq!(
            std::fs::read_to_string(self.secret()).unwrap(),
            SECRET,
            "at {at}: the canary file was written"
        );
        let names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["secret".to_owned()],
            "at {at}: written beside the canary"
        );
    }
}

/// Creates environment `name` at `security`; returns its root.
/// Creates environment `name` at `security` with `extra` options; returns its root.
fn create_with(t: &TestHome, name: &str, security: &str, extra: &[&str]) -> PathBuf {
    eprintln!("environment {name} at security {security} {extra:?}");
    let mut args = vec!["env", "create", name, "--security", security];
    args.extend(extra);
    let env = t.json(args);
    PathBuf::from(env["root"].as_str().unwrap())
}

/// Runs `script` inside `env` (the root at `$PTEST_ENV_ROOT`, the canary at `$CANARY`).
fn plant(t: &TestHome, env: &str, canary: &Canary, script: &str) {
    let (code, err) = try_plant(t, env, canary, script);
    assert_eq!(code, Some(0), "planting in {env}: {err}");
}

/// Plants `script` in `env`, or checks that the sandbox refused it: from `medium` up, and in
/// containers, ptest's own files (the marker, `logs/`, `run/`) are shown read-only to the
/// command, so replacing them fails with EROFS or EBUSY (`label` names the target, `low`
/// being the one where the plant must work). Returns whether it was planted.
fn plant_unless_read_only(
    t: &TestHome,
    env: &str,
    canary: &Canary,
    script: &str,
    label: &str,
) -> bool {
    let (code, why) = try_plant(t, env, canary, script);
    if code == Some(0) {
        return true;
    }
    assert!(
        label != "low" && refused_to_command(&why),
        "at {label}: planting failed: {why}"
    );
    eprintln!("at {label}: the sandbox refused the plant itself: {why}");
    false
}

/// Whether a command's error says its sandbox shows the file read-only (or as a mount point).
fn refused_to_command(text: &str) -> bool {
    text.contains("Read-only file system") || text.contains("resource busy")
}

/// [`plant`], which may fail; returns its exit code and stderr.
fn try_plant(t: &TestHome, env: &str, canary: &Canary, script: &str) -> (Option<i32>, String) {
    let script = format!("CANARY={}; {script}", canary.dir.display());
    let (code, _, err) = run(t, &["env", "exec", env, "--", "sh", "-c", &script]);
    (code, err)
}

/// Runs ptest with the time limit; returns (exit code, stdout, stderr).
fn run(t: &TestHome, args: &[&str]) -> (Option<i32>, String, String) {
    let out = t.ptest(args).timeout(LIMIT).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The environment goes, and takes nothing of the host with it.
fn removed(t: &TestHome, env: &str, root: &Path) {
    let (code, _, err) = run(t, &["env", "rm", "--force", env]);
    assert_eq!(code, Some(0), "env rm {env}: {err}");
    assert!(!root.exists(), "{} is left", root.display());
}

/// Runs ptest `args`, which must fail without showing the secret, saying `refusal`.
fn fails_refusing(t: &TestHome, args: &[&str], refusal: &str, security: &str) {
    let (code, out, err) = run(t, args);
    assert_ne!(code, Some(0), "at {security}: {out}{err}");
    assert!(
        !out.contains("host secret") && !err.contains("host secret"),
        "at {security}: {out}{err}"
    );
    assert!(err.contains(refusal), "at {security}: {err}");
}

/// Where a row is tried: a directory environment at every security level this host runs,
/// then a container of the busybox test image at `medium` and `strict`, whose root is
/// bind-mounted from the host (a skip without Docker, a failure under
/// `PTEST_REQUIRE_ALL=1`). Each is (the environment's name suffix, its security level, extra
/// `env create` flags).
fn targets(t: &TestHome) -> Vec<(String, &'static str, Vec<String>)> {
    let mut out: Vec<_> = levels(t)
        .into_iter()
        .map(|s| (s.to_owned(), s, Vec::new()))
        .collect();
    if let Some(context) = ptest_testkit::busybox::context(t.dir.path()) {
        for s in ["medium", "strict"] {
            let build = vec!["--build".to_owned(), context.display().to_string()];
            out.push((format!("docker-{s}"), s, build));
        }
    }
    out
}

/// The shape of most rows: at each target, `script` plants something in a new environment,
/// then ptest `op` (`ENV` standing for the environment) must fail saying `refusal`, the canary
/// stays untouched and the environment can be removed. Where the sandbox shows ptest's own
/// files read-only, the plant itself is refused, which the row then checks instead.
fn refused(t: &TestHome, prefix: &str, script: &str, op: &[&str], refusal: &str) {
    for (suffix, security, extra) in targets(t) {
        let env = format!("{prefix}-{suffix}");
        let canary = Canary::new(t, &env);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let root = create_with(t, &env, security, &extra);
        if !plant_unless_read_only(t, &env, &canary, script, &suffix) {
            canary.untouched(&suffix);
            removed(t, &env, &root);
            continue;
        }
        let op: Vec<&str> = op
            .iter()
            .map(|a| if *a == "ENV" { env.as_str() } else { a })
            .collect();
        let (code, out, err) = run(t, &op);
        assert_ne!(code, Some(0), "at {suffix}: {out}{err}");
        assert!(
            !out.contains("host secret") && !err.contains("host secret"),
            "{out}{err}"
        );
        assert!(err.contains(refusal), "at {suffix}: {err}");
        canary.untouched(&suffix);
        removed(t, &env, &root);
        canary.untouched(&suffix);
    }
}

#[test]
fn a_logs_symlink_to_a_host_dir_is_not_followed_by_proc_start() {
    refused(
        &TestHome::new(),
        "logs",
        r#"rm -r "$PTEST_ENV_ROOT/logs" && ln -s "$CANARY" "$PTEST_ENV_ROOT/logs""#,
        &[
            "proc",
            "start",
            "ENV",
            "--name",
            "pwn",
            "--",
            "sh",
            "-c",
            "echo hello",
        ],
        "refused: logs is a symlink planted in the environment",
    );
}

#[test]
fn a_log_file_symlink_to_a_host_file_is_not_appended_to_by_proc_start() {
    refused(
        &TestHome::new(),
        "logf",
        r#"ln -s "$CANARY/secret" "$PTEST_ENV_ROOT/logs/x.stdout.log""#,
        &[
            "proc",
            "start",
            "ENV",
            "--name",
            "x",
            "--",
            "sh",
            "-c",
            "echo hello",
        ],
        "refused: logs/x.stdout.log is a symlink planted in the environment",
    );
}

#[test]
fn a_run_dir_symlink_to_a_host_dir_is_not_written_in_by_proc_start() {
    refused(
        &TestHome::new(),
        "pidd",
        r#"rm -r "$PTEST_ENV_ROOT/run" && ln -s "$CANARY" "$PTEST_ENV_ROOT/run""#,
        &["proc", "start", "ENV", "--name", "p", "--", "sleep", "30"],
        "refused: run is a symlink planted in the environment",
    );
}

#[test]
fn a_pid_file_symlink_to_a_host_file_is_replaced_not_written_through_by_proc_start() {
    let t = TestHome::new();
    for (suffix, security, extra) in targets(&t) {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        // run/p.pid → a host file: the link is replaced, the host file untouched.
        let env = format!("pidf-{suffix}");
        let canary = Canary::new(&t, &env);
        let root = create_with(&t, &env, security, &extra);
        let script = r#"ln -s "$CANARY/secret" "$PTEST_ENV_ROOT/run/p.pid""#;
        if !plant_unless_read_only(&t, &env, &canary, script, &suffix) {
            removed(&t, &env, &root);
            continue;
        }
        let (code, out, err) = run(
            &t,
            &["proc", "start", &env, "--name", "p", "--", "sleep", "30"],
        );
        assert_eq!(code, Some(0), "at {suffix}: {out}{err}");
        // The supervisor writes the pid file (a new file renamed over the link) on its own
        // time: wait for it to be a regular file, never reading through the link.
        let pid_file = root.join("run/p.pid");
        let mut pid = String::new();
        for _ in 0..500 {
            if std::fs::symlink_metadata(&pid_file).is_ok_and(|m| m.file_type().is_file()) {
                pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
                if pid.trim().parse::<u32>().is_ok() {
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(pid.trim().parse::<u32>().is_ok(), "at {suffix}: {pid:?}");
        run(&t, &["proc", "stop", &env, "p"]);
        canary.untouched(&suffix);
        removed(&t, &env, &root);
    }
}

#[test]
fn a_log_symlink_to_a_host_secret_is_not_read_by_proc_logs_or_readiness() {
    let t = TestHome::new();
    for (suffix, security, extra) in targets(&t) {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let env = format!("read-{suffix}");
        let canary = Canary::new(&t, &env);
        let root = create_with(&t, &env, security, &extra);
        // A process whose logs the command then swaps for links to the secret.
        let (code, _, err) = run(
            &t,
            &["proc", "start", &env, "--name", "w", "--", "sleep", "30"],
        );
        assert_eq!(code, Some(0), "at {suffix}: {err}");
        let script = r#"cd "$PTEST_ENV_ROOT/logs" && rm w.stdout.log && ln -s "$CANARY/secret" w.stdout.log"#;
        if !plant_unless_read_only(&t, &env, &canary, script, &suffix) {
            run(&t, &["proc", "stop", &env, "w"]);
            canary.untouched(&suffix);
            removed(&t, &env, &root);
            continue;
        }
        fails_refusing(
            &t,
            &["proc", "logs", &env, "w"],
            "refused: logs/w.stdout.log is a symlink planted in the environment",
            &suffix,
        );
        run(&t, &["proc", "stop", &env, "w"]);

        // A readiness failure prints the tail; --ready-log matches the log: neither reads
        // the secret. The command swaps its own log for a link to it, then fails or waits.
        for (name, log, ready, then) in [
            ("r", "r.stderr.log", ["--ready-cmd", "false"], "exit 3"),
            (
                "q",
                "q.stdout.log",
                ["--ready-log", "host secret"],
                "sleep 30",
            ),
        ] {
            let swap = format!(
                r#"cd "$PTEST_ENV_ROOT/logs" && rm {log} && ln -s "{}" {log}; {then}"#,
                canary.secret().display()
            );
            let mut args = vec![
                "proc",
                "start",
                &env,
                "--name",
                name,
                "--ready-timeout",
                "20s",
            ];
            args.extend(ready);
            args.extend(["--", "sh", "-c", &swap]);
            fails_refusing(
                &t,
                &args,
                &format!("refused: logs/{log} is a symlink planted in the environment"),
                &suffix,
            );
        }
        canary.untouched(&suffix);
        removed(&t, &env, &root);
    }
}

/// What `ptest run` of a one-suite project did.
struct SuiteRun {
    canary: Canary,
    code: Option<i32>,
    /// Its stdout and stderr, the run's JSON report and its JUnit report.
    texts: [String; 4],
}

/// Runs a project whose one suite runs `script` (with `$CANARY` set) in an environment at
/// `security` with `template` lines in its template and `extra` lines in the suite; checks
/// that nothing shows the secret, the canary is untouched and no environment is left.
fn run_suite(
    t: &TestHome,
    name: &str,
    security: &str,
    template: &str,
    script: &str,
    extra: &str,
) -> SuiteRun {
    let name = format!("{name}-{security}");
    let canary = Canary::new(t, &name);
    let dir = t.dir.path().join(format!("project-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kept.txt"), "project file\n").unwrap();
    let text = format!(
        "[env.e]\nsecurity = \"{security}\"\n{template}\n[[suite]]\nname = \"s\"\nenv = \"e\"\n\
         run = {script:?}\nenv_vars = {{ CANARY = {canary:?} }}\n{extra}\n",
        canary = canary.dir.display().to_string(),
    );
    std::fs::write(dir.join("ptest.toml"), text).unwrap();
    let (json, junit) = (dir.join("report.json"), dir.join("junit.xml"));
    let (code, out, err) = run(
        t,
        &[
            "run",
            "--project",
            dir.to_str().unwrap(),
            &format!("--json={}", json.display()),
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    let texts = [
        out,
        err,
        std::fs::read_to_string(&json).unwrap_or_default(),
        std::fs::read_to_string(&junit).unwrap_or_default(),
    ];
    for text in &texts {
        assert!(!text.contains("host secret"), "at {security}: {text}");
    }
    canary.untouched(security);
    assert!(t.names().is_empty(), "at {security}: environments left");
    SuiteRun {
        canary,
        code,
        texts,
    }
}

#[test]
fn a_workspace_swapped_for_a_host_dir_link_is_not_emptied_by_the_retry_reset() {
    let t = TestHome::new();
    retried_after_a_swap(
        &t,
        &levels(&t),
        "ws",
        "project = \"copy\"",
        r#"cd / && rm -rf "$PTEST_ENV_ROOT/workspace" && ln -s "$CANARY" "$PTEST_ENV_ROOT/workspace"; exit 1"#,
    );
}

/// The retry of an overlaid suite renews its layers: `overlay/` swapped for a link to a host
/// directory is removed as a name, through the root's descriptor, and made anew; nothing is
/// deleted or made in the host directory.
#[test]
fn an_overlay_dir_swapped_for_a_host_dir_link_is_not_emptied_by_the_retry_renewal() {
    let t = TestHome::new();
    let sandboxed: Vec<&str> = levels(&t).into_iter().filter(|l| *l != "low").collect();
    retried_after_a_swap(
        &t,
        &sandboxed,
        "layers",
        "project = \"overlay\"",
        r#"cd "$PTEST_ENV_ROOT" && mv overlay overlay.old && ln -s "$CANARY" overlay; exit 1"#,
    );
}

/// At each of `levels`, a suite of `template` runs `swap` and fails; its retry (the second
/// attempt) must leave the canary untouched.
fn retried_after_a_swap(t: &TestHome, levels: &[&str], name: &str, template: &str, swap: &str) {
    for &security in levels {
        let r = run_suite(t, name, security, template, swap, "retries = 1");
        assert_eq!(r.code, Some(1), "at {security}: {:?}", r.texts);
        let report: serde_json::Value = serde_json::from_str(&r.texts[2]).unwrap();
        assert_eq!(
            report["suites"][0]["attempts"], 2,
            "at {security}: {report}"
        );
        r.canary.untouched(security);
    }
}

#[test]
fn a_junit_file_linked_to_a_host_file_is_not_read_into_the_reports() {
    let t = TestHome::new();
    for security in levels(&t) {
        let r = run_suite(
            &t,
            "junit",
            security,
            "",
            r#"mkdir -p reports && ln -s "$CANARY/secret" reports/junit.xml"#,
            "junit = \"reports/junit.xml\"",
        );
        assert_eq!(r.code, Some(0), "at {security}: {:?}", r.texts);
        assert!(
            r.texts[2]
                .contains("refused: reports/junit.xml is a symlink planted in the environment"),
            "at {security}: {}",
            r.texts[2]
        );
    }
}

#[test]
fn a_marker_or_pyvenv_cfg_replaced_by_a_fifo_or_a_sparse_file_hangs_nothing() {
    let t = TestHome::new();
    for security in levels(&t) {
        for (kind, make) in [("fifo", "mkfifo"), ("sparse", "truncate -s 10G")] {
            for (file, refusal) in [(".ptest-env", "marker"), ("venv/pyvenv.cfg", "refused: ")] {
                let env = format!("{kind}-{}-{security}", file.len());
                let canary = Canary::new(&t, &env);
                let root = create_with(&t, &env, security, &["--level", "virtualenv"]);
                let script = format!(r#"cd "$PTEST_ENV_ROOT" && rm {file} && {make} {file}"#);
                if !plant_unless_read_only(&t, &env, &canary, &script, security) {
                    removed(&t, &env, &root);
                    continue;
                }
                // validate reports it, without hanging or reading gigabytes.
                let (code, out, err) = run(&t, &["env", "validate", &env]);
                assert_eq!(code, Some(1), "at {security}, {file} {kind}: {out}{err}");
                let failed = out
                    .lines()
                    .filter(|l| l.starts_with("FAIL"))
                    .collect::<Vec<_>>();
                assert!(
                    failed.iter().any(|l| l.contains(refusal)),
                    "at {security}, {file} {kind}: {out}"
                );
                let kind_said = if kind == "fifo" {
                    "is a FIFO"
                } else {
                    "more than the"
                };
                assert!(out.contains(kind_said), "at {security}: {out}");
                if file.ends_with("pyvenv.cfg") {
                    fails_refusing(
                        &t,
                        &["pkg", "list", &env],
                        &format!("refused: {}", root.join(file).display()),
                        security,
                    );
                }
                canary.untouched(security);
                removed(&t, &env, &root);
            }
        }
    }
}

#[test]
fn a_run_net_symlink_to_a_host_dir_gets_no_control_file_and_no_binary_from_net_fault() {
    let t = TestHome::new();
    for security in levels(&t) {
        let env = format!("net-{security}");
        let canary = Canary::new(&t, &env);
        // Faults need a network to proxy: `strict` defaults to none.
        let network: &[&str] = if security == "low" {
            &[]
        } else {
            &["--network", "loopback"]
        };
        let root = create_with(&t, &env, security, network);
        t.ptest(["port", "alloc", &env, "http"])
            .timeout(LIMIT)
            .assert()
            .success();
        let script =
            r#"rm -r "$PTEST_ENV_ROOT/run/net" && ln -s "$CANARY" "$PTEST_ENV_ROOT/run/net""#;
        if !plant_unless_read_only(&t, &env, &canary, script, security) {
            canary.untouched(security);
            removed(&t, &env, &root);
            continue;
        }
        fails_refusing(
            &t,
            &["net", "fault", &env, "http", "--latency", "10ms"],
            "refused: run/net is a symlink planted in the environment",
            security,
        );
        fails_refusing(
            &t,
            &["net", "list", &env],
            "refused: run/net is a symlink planted in the environment",
            security,
        );
        canary.untouched(security);
        removed(&t, &env, &root);
        canary.untouched(security);
    }
}

#[test]
fn a_marker_or_pyvenv_cfg_replaced_by_a_fifo_or_a_sparse_file_in_a_suite_hangs_nothing_in_ptest_run()
 {
    let t = TestHome::new();
    for security in levels(&t) {
        for (kind, make) in [("fifo", "mkfifo"), ("sparse", "truncate -s 10G")] {
            for file in [".ptest-env", "venv/pyvenv.cfg"] {
                let r = run_suite(
                    &t,
                    &format!("{kind}-{}", file.len()),
                    security,
                    "level = \"virtualenv\"",
                    &format!(r#"cd "$PTEST_ENV_ROOT" && rm {file} && {make} {file}"#),
                    "",
                );
                // From `medium` up the marker is read-only inside: the suite's `rm` fails.
                let marker_kept = security != "low" && file == ".ptest-env";
                assert_eq!(
                    r.code,
                    Some(if marker_kept { 1 } else { 0 }),
                    "at {security}, {file} {kind}: {:?}",
                    r.texts
                );
                assert!(
                    !marker_kept || refused_to_command(&r.texts[2]),
                    "at {security}: {:?}",
                    r.texts
                );
                r.canary.untouched(security);
            }
        }
    }
}

/// `ptest pkg ARGS` for `env`, installing from the demo wheelhouse (no network).
fn pkg(t: &TestHome, sub: &str, env: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let house = ptest_testkit::wheels::wheelhouse().display().to_string();
    let mut all = vec!["pkg", sub, env];
    if sub == "install" {
        all.extend(["--no-index", "--find-links", &house]);
    }
    all.extend(args);
    run(t, &all)
}

/// A canary, and a virtualenv environment `env` at `security` with `ptdemo-a` installed;
/// returns them with the environment's root.
fn venv_with_demo(t: &TestHome, env: &str, security: &str) -> (Canary, PathBuf) {
    let canary = Canary::new(t, env);
    let house = ptest_testkit::wheels::wheelhouse().display().to_string();
    let args = [
        "--level",
        "virtualenv",
        "--no-index",
        "--find-links",
        &house,
    ];
    let root = create_with(
        t,
        env,
        security,
        &[&args[..], &["-p", "ptdemo-a==1.0"]].concat(),
    );
    (canary, root)
}

/// Row 1 of issue 23: the environment's interpreter replaced by a script, `pyvenv.cfg`
/// naming a script as its `executable`, a `.pth` file in `site-packages` — each writes to the
/// canary when run. `pkg install`, `pkg tree` and `pkg check` must run none of it on the host:
/// the install runs inside the environment (where the canary's directory is not even there)
/// and the probes ask the interpreter ptest recorded, not the venv's. At `low` the command
/// itself runs with the host's privileges, so there is nothing to take: the row starts at
/// `medium`.
#[test]
fn a_replaced_venv_python_a_pyvenv_executable_or_a_pth_file_never_runs_on_the_host() {
    let t = TestHome::new();
    for security in levels(&t).into_iter().filter(|l| *l != "low") {
        let env = format!("py-{security}");
        let (canary, root) = venv_with_demo(&t, &env, security);
        plant(
            &t,
            &env,
            &canary,
            r#"cd "$PTEST_ENV_ROOT/venv" && mv bin/python bin/python.real &&
printf '#!/bin/sh\necho python > %s/pwned-python 2>/dev/null\nexec "$(dirname "$0")/python.real" "$@"\n' "$CANARY" > bin/python &&
chmod +x bin/python && : > bin/pip && chmod +x bin/pip &&
printf '#!/bin/sh\necho exe > %s/pwned-exe\n' "$CANARY" > ../evil && chmod +x ../evil &&
echo "executable = $PTEST_ENV_ROOT/evil" >> pyvenv.cfg &&
site=$(echo lib/python3*/site-packages) &&
echo "import os; os.makedirs('$CANARY/pwned-pth', exist_ok=True)" > $site/zz-evil.pth"#,
        );
        let (code, out, err) = pkg(&t, "install", &env, &["ptdemo-c==1.0"]);
        assert_eq!(code, Some(0), "at {security}: {out}{err}");
        canary.untouched(&format!("{security}, pkg install"));
        for sub in ["tree", "check", "list"] {
            let (code, out, err) = pkg(&t, sub, &env, &[]);
            assert_eq!(code, Some(0), "at {security}, pkg {sub}: {out}{err}");
            canary.untouched(&format!("{security}, pkg {sub}"));
        }
        assert!(
            run(&t, &["pkg", "freeze", &env])
                .1
                .contains("ptdemo-c==1.0"),
            "at {security}: the install did not happen"
        );
        let (code, out, err) = run(&t, &["pkg", "uninstall", &env, "ptdemo-c"]);
        assert_eq!(code, Some(0), "at {security}, pkg uninstall: {out}{err}");
        canary.untouched(&format!("{security}, pkg uninstall"));
        removed(&t, &env, &root);
        canary.untouched(security);
    }
}

/// Row 4 of issue 23: while `pkg install` saves the venv before installing (`.venv-saved-*`), a loop in the
/// environment swaps `venv` for a link to a host directory; the install fails half-way and is
/// rolled back. The save and the roll-back happen inside the environment, so the host
/// directory keeps its contents and gets no venv written into it.
#[test]
fn a_venv_swapped_for_a_host_dir_link_during_pkg_install_is_not_emptied_or_written() {
    let t = TestHome::new();
    for security in levels(&t).into_iter().filter(|l| *l != "low") {
        let env = format!("swap-{security}");
        let (canary, root) = venv_with_demo(&t, &env, security);
        // A file where ptdemo-clash wants a directory makes the install fail half-way.
        plant(
            &t,
            &env,
            &canary,
            r#"cd "$PTEST_ENV_ROOT/venv" && echo in the way > $(echo lib/python3*/site-packages)/ptdemo_clash"#,
        );
        let swap = format!(
            r#"cd "$PTEST_ENV_ROOT"; while :; do for d in .venv-saved-*; do if [ -e "$d" ]; then mv venv venv.real; ln -s {} venv; exit 0; fi; done; done"#,
            canary.dir.display()
        );
        let (code, out, err) = run(
            &t,
            &[
                "proc", "start", &env, "--name", "swap", "--", "sh", "-c", &swap,
            ],
        );
        assert_eq!(code, Some(0), "at {security}: {out}{err}");
        let (code, out, err) = pkg(
            &t,
            "install",
            &env,
            &["--no-deps", "ptdemo-b==1.0", "ptdemo-clash==1.0"],
        );
        assert_ne!(code, Some(0), "at {security}: {out}{err}");
        canary.untouched(&format!("{security}, pkg install"));
        let _ = run(&t, &["proc", "stop", &env, "swap"]);
        removed(&t, &env, &root);
        canary.untouched(security);
    }
}

/// Issue 23, item 4: ptest's own files in a root (the marker, `logs/`, `run/`) are read-only
/// to the command in every sandbox, so nothing can be planted there at all; `run/net/`, where
/// the fault proxy writes, stays writable.
#[test]
fn ptests_own_files_in_the_root_are_read_only_to_the_command() {
    let t = TestHome::new();
    for (suffix, security, extra) in targets(&t).into_iter().filter(|(s, ..)| s != "low") {
        let env = format!("own-{suffix}");
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let root = create_with(&t, &env, security, &extra);
        for attempt in [
            "echo x > logs/x.stdout.log",
            "echo 1 > run/p.pid",
            "rm .ptest-env",
            "echo other > .ptest-env",
            "mv logs logs.old",
            "rm -r run",
        ] {
            let script = format!(r#"cd "$PTEST_ENV_ROOT" && {attempt}"#);
            let result = t.exec_json(&env, &["sh", "-c", &script]);
            assert_ne!(result["exit_code"], 0, "at {suffix}: `{attempt}` worked");
            let err = result["stderr"].as_str().unwrap_or_default();
            assert!(refused_to_command(err), "at {suffix}: `{attempt}`: {err}");
        }
        let result = t.exec_json(
            &env,
            &[
                "sh",
                "-c",
                r#"echo 1 > "$PTEST_ENV_ROOT/run/net/x.applied""#,
            ],
        );
        assert_eq!(result["exit_code"], 0, "at {suffix}: {result}");
        removed(&t, &env, &root);
    }
}

/// The last row of issue 23: the command moves or replaces the holder's control socket. It
/// lives in a read-only tmpfs of its own (`/dev/.ptest/`), so the move is refused and later
/// commands still reach the holder.
#[test]
fn the_control_socket_cannot_be_moved_or_replaced_and_exec_keeps_working() {
    let t = TestHome::new();
    for security in levels(&t).into_iter().filter(|l| *l != "low") {
        let env = format!("sock-{security}");
        let root = create_with(&t, &env, security, &[]);
        for attempt in [
            "mv /dev/.ptest/exec.sock /dev/.old",
            "rm /dev/.ptest/exec.sock",
            "mv /dev/.ptest /dev/.old",
            "touch /dev/.ptest/exec.sock2",
        ] {
            let result = t.exec_json(&env, &["sh", "-c", attempt]);
            assert_ne!(result["exit_code"], 0, "at {security}: `{attempt}` worked");
        }
        let result = t.exec_json(&env, &["echo", "still here"]);
        assert_eq!(result["stdout"], "still here\n", "at {security}: {result}");
        removed(&t, &env, &root);
    }
}

/// One host-side operation of item 2 and the file it touches: ptest args (`ENV` for the
/// environment), the path beneath the root, and whether ptest writes it (`false`: reads it).
struct Touched {
    op: &'static [&'static str],
    path: &'static str,
    writes: bool,
}

/// What ptest touches in a root, one row per kind of operation: appending a log, replacing a
/// pid file, reading a log's tail, reading the marker, a net-fault control file, and a venv's
/// metadata.
const TOUCHED: [Touched; 6] = [
    Touched {
        op: &[
            "proc", "start", "ENV", "--name", "w", "--", "sh", "-c", "echo out",
        ],
        path: "logs/w.stdout.log",
        writes: true,
    },
    Touched {
        op: &["proc", "start", "ENV", "--name", "p", "--", "sleep", "1"],
        path: "run/p.pid",
        writes: true,
    },
    Touched {
        op: &["proc", "logs", "ENV", "r"],
        path: "logs/r.stdout.log",
        writes: false,
    },
    Touched {
        op: &["env", "validate", "ENV"],
        path: ".ptest-env",
        writes: false,
    },
    Touched {
        op: &["net", "list", "ENV"],
        path: "run/net/http.json",
        writes: false,
    },
    Touched {
        op: &["pkg", "list", "ENV"],
        path: "venv/lib/PY/site-packages/x-1.0.dist-info/METADATA",
        writes: false,
    },
];

/// Issue 23, item 5: for each operation, the file it touches planted as a link to a host
/// canary file, a link to a host canary directory, a FIFO, a 10 GB sparse file, and swapped in
/// a tight loop between a link and a file while the operation runs (ten times). At `low`,
/// where the command can plant in ptest's own files (a sandbox shows them read-only, see
/// `ptests_own_files_in_the_root_are_read_only_to_the_command`). Each: no hang, no byte of
/// the canary read or written, the environment removable.
#[test]
fn every_operation_meets_links_fifos_sparse_files_and_swaps_without_harm() {
    let t = TestHome::new();
    let plants = [
        ("file-link", r#"ln -s "$CANARY/secret" "$F""#),
        ("dir-link", r#"ln -s "$CANARY" "$F""#),
        ("fifo", r#"mkfifo "$F""#),
        ("sparse", r#"truncate -s 10G "$F""#),
    ];
    for (i, touched) in TOUCHED.iter().enumerate() {
        for (kind, plant_it) in plants {
            let env = format!("m{i}-{kind}");
            let canary = Canary::new(&t, &env);
            let root = create_with(&t, &env, "low", &["--level", "virtualenv"]);
            prepare(&t, &env, touched);
            let path = python_path(&root, touched.path);
            plant(
                &t,
                &env,
                &canary,
                &format!(
                    r#"F="{}"; mkdir -p "$(dirname "$F")"; rm -rf "$F"; {plant_it}"#,
                    path.display()
                ),
            );
            let (_, out, err) = run(&t, &op_for(touched, &env));
            assert!(
                !out.contains("host secret") && !err.contains("host secret"),
                "{env}: {out}{err}"
            );
            canary.untouched(&env);
            let _ = run(&t, &["proc", "stop", &env, "--all"]);
            removed(&t, &env, &root);
            canary.untouched(&env);
        }
        // A loop in the environment swaps the file for a link and back while ptest works.
        let env = format!("m{i}-swap");
        let canary = Canary::new(&t, &env);
        let root = create_with(&t, &env, "low", &["--level", "virtualenv"]);
        prepare(&t, &env, touched);
        let path = python_path(&root, touched.path);
        let swap = format!(
            r#"F="{}"; mkdir -p "$(dirname "$F")"; while :; do rm -f "$F"; ln -s "{}" "$F"; rm -f "$F"; : > "$F"; done"#,
            path.display(),
            canary.secret().display()
        );
        let (code, _, err) = run(
            &t,
            &[
                "proc", "start", &env, "--name", "swap", "--", "sh", "-c", &swap,
            ],
        );
        assert_eq!(code, Some(0), "{env}: {err}");
        for _ in 0..10 {
            let (_, out, err) = run(&t, &op_for(touched, &env));
            assert!(
                !out.contains("host secret") && !err.contains("host secret"),
                "{env}: {out}{err}"
            );
            if touched.writes {
                let _ = run(&t, &["proc", "stop", &env, touched.op[3]]);
            }
        }
        canary.untouched(&env);
        let _ = run(&t, &["proc", "stop", &env, "--all"]);
        removed(&t, &env, &root);
        canary.untouched(&env);
    }
}

/// What must exist before `touched`'s operation can run: the process whose logs are read, the
/// port whose faults are listed.
fn prepare(t: &TestHome, env: &str, touched: &Touched) {
    let setup: &[&str] = match touched.op {
        ["proc", "logs", ..] => &[
            "proc",
            "start",
            env,
            "--name",
            "r",
            "--",
            "sh",
            "-c",
            "echo r; sleep 30",
        ],
        ["net", ..] => &["port", "alloc", env, "http"],
        _ => return,
    };
    let (code, _, err) = run(t, setup);
    assert_eq!(code, Some(0), "{env}: {err}");
}

/// `touched`'s operation for `env`.
fn op_for<'a>(touched: &Touched, env: &'a str) -> Vec<&'a str> {
    touched
        .op
        .iter()
        .map(|a| if *a == "ENV" { env } else { a })
        .collect()
}

/// `rel` in `root`, with `PY` standing for the venv's `pythonX.Y` directory.
fn python_path(root: &Path, rel: &str) -> PathBuf {
    let lib = root.join("venv/lib");
    let py = std::fs::read_dir(&lib)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_default();
    root.join(rel.replace("PY", &py))
}
