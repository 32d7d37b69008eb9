//! `ptest run [SUITE...] -- ARGS`: arguments for the test command, appended to a selected
//! suite's `run` or filling its `{posargs}`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;
use predicates::str::contains;

/// Writes `ptest.toml` with `text` into a new project directory; returns the directory.
fn project(t: &TestHome, text: &str) -> String {
    let dir = t.dir.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ptest.toml"), text).unwrap();
    dir.display().to_string()
}

/// The stdout tail of each suite in a `--json` run report, by name.
fn outputs(report: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    report["suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let out = s["stdout_tail"].as_str().unwrap().to_owned();
            (s["name"].as_str().unwrap().to_owned(), out)
        })
        .collect()
}

const SUITES: &str = r#"
[[suite]]
name = "prep"
run = "echo prep {posargs:default}"

[[suite]]
name = "argv"
run = ["sh", "-c", 'for a; do echo "<$a>"; done', "sh"]
depends_on = ["prep"]

[[suite]]
name = "shell"
run = "echo shell: {posargs:none} end"
"#;

#[test]
fn args_after_dashes_are_appended_or_fill_posargs_of_selected_suites_only() {
    let t = TestHome::new();
    let dir = project(&t, SUITES);
    let report = t.json([
        "run",
        "--project",
        &dir,
        "argv",
        "shell",
        "--",
        "-k",
        "foo bar",
        "it's",
    ]);
    let out = outputs(&report);
    // Appended as separate words, quotes and spaces intact.
    assert_eq!(out["argv"], "<-k>\n<foo bar>\n<it's>\n");
    assert_eq!(out["shell"], "shell: -k foo bar it's end\n");
    // prep runs only because argv depends on it: its default, not the arguments.
    assert_eq!(out["prep"], "prep default\n");

    let report = t.json(["run", "--project", &dir]);
    let out = outputs(&report);
    assert_eq!(out["argv"], "");
    assert_eq!(out["shell"], "shell: none end\n");
}

#[test]
fn list_shows_the_commands_with_their_args() {
    let t = TestHome::new();
    let dir = project(&t, SUITES);
    let plan = t.json(["run", "--list", "--project", &dir, "shell", "--", "-x"]);
    assert_eq!(plan[0]["run"], "echo shell: -x end");
    // Without `--`, an argument that is not a suite is still refused as one.
    t.ptest(["run", "--project", &dir, "shell", "-k"])
        .assert()
        .code(2);
    t.ptest(["run", "--help"])
        .assert()
        .success()
        .stdout(contains("{posargs}"));
}

/// The issue's "done when": `ptest run unit -- -k foo` runs only foo, with real pytest
/// from PyPI.
#[test]
fn pytest_k_after_dashes_runs_only_the_matching_test() {
    let t = TestHome::new();
    let dir = project(
        &t,
        r#"
[env.py]
packages = ["pytest"]

[[suite]]
name = "unit"
env = "py"
run = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", "junit.xml"]
junit = "junit.xml"
"#,
    );
    std::fs::write(
        format!("{dir}/test_it.py"),
        "def test_foo():\n    pass\n\ndef test_bar():\n    assert False\n",
    )
    .unwrap();
    let report = t.json(["run", "--project", &dir, "unit", "--", "-k", "foo"]);
    let cases = report["suites"][0]["test_cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["test_foo"], "{report}");
    assert_eq!(report["suites"][0]["status"], "passed");
}
