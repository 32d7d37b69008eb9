//! Issue 20, deliverable 1: the project under test in `ptest run`, installed the way tox
//! does. `packages = ["-e .[test]"]` (or `.`, or `install_project = true`) builds the project
//! into a wheel once per run; each suite's environment gets the project's dependencies (and
//! its extra's) with its other packages, reused by hash from run to run, and the wheel itself:
//! tests import the environment's copy of the project, never the user's tree, with uv or pip,
//! from a project under `/tmp` (where the tests' homes are). The demo project is built by a
//! backend of its own (`fixtures/inner_backend`), so no network is needed.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};

use crate::support::TestHome;

/// `ptproj`'s dependencies as its `pyproject.toml` declares them (what the backend writes).
const DECLARED: &str = "dependencies = [\"ptdemo-a==1.0\"]\n\
                        optional-dependencies = { test = [\"ptdemo-c==1.0\"] }\n";

/// `ptproj`'s dependencies left to the backend: only the wheel says them.
const DYNAMIC: &str = "dynamic = [\"dependencies\", \"optional-dependencies\"]\n";

/// The demo project `ptproj` (needs `ptdemo-a`, its `test` extra `ptdemo-c`; `deps` says so
/// in its `pyproject.toml` or not) in `dir`, whose template installs it as `packages` says;
/// its suite prints where `ptproj` was imported from.
fn project(dir: &Path, deps: &str, template: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("src/ptproj")).unwrap();
    std::fs::create_dir_all(dir.join("_build")).unwrap();
    std::fs::write(dir.join("src/ptproj/__init__.py"), "VALUE = 'ptproj'\n").unwrap();
    let backend =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inner_backend/backend.py");
    std::fs::copy(backend, dir.join("_build/backend.py")).unwrap();
    std::fs::write(
        dir.join("pyproject.toml"),
        format!(
            "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\"_build\"]\n\n\
         [project]\nname = \"ptproj\"\nversion = \"0.1\"\n{deps}"
        ),
    )
    .unwrap();
    let house = ptest_testkit::wheels::wheelhouse().display().to_string();
    std::fs::write(
        dir.join("ptest.toml"),
        format!(
            "[env.t]\n{template}\nno_index = true\nfind_links = [{house:?}]\n\n\
             [[suite]]\nname = \"unit\"\nenv = \"t\"\n\
             run = \"python -c 'import ptproj, ptdemo_a, ptdemo_c; print(ptproj.__file__)'\"\n"
        ),
    )
    .unwrap();
    dir.to_owned()
}

/// Runs the project with `PATH` as given; returns the report.
fn run(t: &TestHome, dir: &Path, path: &str) -> serde_json::Value {
    run_with(t, dir, &[("PATH", path)])
}

/// Runs the project with the variables `vars` set; returns the report.
fn run_with(t: &TestHome, dir: &Path, vars: &[(&str, &str)]) -> serde_json::Value {
    let mut command = t.ptest(["run", "--project", dir.to_str().unwrap(), "--json"]);
    command.envs(vars.iter().copied());
    let out = command.output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        report["suites"][0]["status"],
        "passed",
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

/// Where the suite imported `ptproj` from: the environment's venv, not the project.
fn imported_from_the_environment(report: &serde_json::Value, dir: &Path) {
    let file = report["suites"][0]["stdout_tail"].as_str().unwrap().trim();
    assert!(file.contains("/venv/lib/"), "{file}");
    assert!(!file.starts_with(dir.to_str().unwrap()), "{file}");
}

/// Whether an environment of this home was cloned from a template (its dependencies).
fn from_template(t: &TestHome) -> bool {
    let out = t.ptest(["events", "--json"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|line| {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        e["event"] == "package_installed" && !e["details"]["from_template"].is_null()
    })
}

#[test]
fn an_editable_project_with_an_extra_is_a_wheel_per_run_and_its_dependencies_a_template() {
    let t = TestHome::new();
    let dir = project(
        &t.dir.path().join("proj"),
        DECLARED,
        "packages = [\"-e .[test]\"]",
    );
    let path = std::env::var("PATH").unwrap();
    let first = run(&t, &dir, &path);
    imported_from_the_environment(&first, &dir);
    // The second run reuses the template of the dependencies, and installs this run's wheel.
    std::fs::write(dir.join("src/ptproj/__init__.py"), "VALUE = 'changed'\n").unwrap();
    let second = run(&t, &dir, &path);
    imported_from_the_environment(&second, &dir);
    assert!(
        from_template(&t),
        "the second run did not reuse the template"
    );
    // A wheel is kept per version of the project's files: a run of unchanged files builds
    // nothing and takes the kept one.
    let kept = || {
        std::fs::read_dir(t.home().join("cache/project-wheels"))
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
    };
    assert_eq!(kept(), 2);
    imported_from_the_environment(&run(&t, &dir, &path), &dir);
    assert_eq!(kept(), 2);
    assert!(t.names().is_empty());
}

/// Where `pyproject.toml` declares the dependencies, the environments are made while the
/// wheel builds: this build ends only once a template holds `ptdemo-a`, which a run that
/// waited for the wheel first would never see (the backend then fails after a minute).
#[test]
fn declared_dependencies_are_installed_while_the_wheel_builds() {
    let t = TestHome::new();
    let dir = project(
        &t.dir.path().join("proj"),
        DECLARED,
        "packages = [\".[test]\"]",
    );
    let waits_for = t
        .home()
        .join("cache/templates/*/venv/lib/python*/site-packages/ptdemo_a*");
    let waits_for = waits_for.to_str().unwrap();
    let report = run_with(&t, &dir, &[("PTPROJ_BUILD_WAITS_FOR", waits_for)]);
    imported_from_the_environment(&report, &dir);
    assert!(t.names().is_empty());
}

/// The command lines a run started through ptest-python's tools, from its debug log.
fn tools_run(t: &TestHome, dir: &Path) -> Vec<String> {
    let out = t
        .ptest(["run", "--project", dir.to_str().unwrap()])
        .env("PTEST_LOG", "ptest_python=debug")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    log.lines()
        .filter_map(|l| l.split_once(" running command=").map(|(_, c)| c.to_owned()))
        .collect()
}

/// Whether `command` starts Python with a script of ptest's (`-c`), not a tool (`-m pip`).
fn runs_python_script(command: &str) -> bool {
    let program = command.split(' ').next().unwrap_or_default();
    let python = Path::new(program)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("python"));
    python && command.split(' ').any(|word| word == "-c")
}

/// The project's dependencies come from its wheel's METADATA, which ptest reads from the
/// wheel itself, not with a `python -c` per suite: a run of unchanged files (its wheel kept,
/// its template reused, its interpreters' answers cached) starts Python only to install.
#[test]
fn a_warm_run_starts_no_python_to_read_the_wheels_metadata() {
    let t = TestHome::new();
    let dir = project(
        &t.dir.path().join("proj"),
        DYNAMIC,
        "packages = [\".[test]\"]",
    );
    tools_run(&t, &dir);
    let warm = tools_run(&t, &dir);
    assert!(!warm.is_empty(), "the warm run installed nothing");
    let scripts: Vec<&String> = warm.iter().filter(|c| runs_python_script(c)).collect();
    assert!(scripts.is_empty(), "{scripts:?}");
    assert!(t.names().is_empty());
}

#[test]
fn install_project_works_with_pip_when_uv_is_not_on_path() {
    let t = TestHome::new();
    let dir = project(
        &t.dir.path().join("proj"),
        DECLARED,
        "install_project = true\npackages = [\"ptdemo-c==1.0\"]",
    );
    let path: Vec<String> = std::env::var("PATH")
        .unwrap()
        .split(':')
        .filter(|d| !Path::new(d).join("uv").exists())
        .map(str::to_owned)
        .collect();
    let report = run(&t, &dir, &path.join(":"));
    imported_from_the_environment(&report, &dir);
    assert!(t.names().is_empty());
}

/// `pip = true`: suites that run `python -m pip` find it, in uv-built venvs too.
#[test]
fn pip_true_puts_pip_into_the_venv() {
    let t = TestHome::new();
    let dir = t.dir.path().join("pipproj");
    std::fs::create_dir_all(&dir).unwrap();
    // pip itself comes from PyPI (cached after the first time).
    std::fs::write(
        dir.join("ptest.toml"),
        "[env.t]\npip = true\n\n[[suite]]\nname = \"unit\"\nenv = \"t\"\n\
         run = \"python -m pip --version\"\n",
    )
    .unwrap();
    let report = run(&t, &dir, &std::env::var("PATH").unwrap());
    let out = report["suites"][0]["stdout_tail"].as_str().unwrap();
    assert!(out.starts_with("pip "), "{out}");
}
