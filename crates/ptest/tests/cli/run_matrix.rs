//! Templates for real Python projects: `env_vars` (tox's `setenv`) and a `python = [...]`
//! matrix that runs each of its suites once per interpreter, as `unit[py3.11]`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;

/// `X.Y` of the host's `python3`, which every matrix test can use for real.
fn host_python() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_matrix_runs_each_interpreter_and_a_missing_one_is_a_clear_error() {
    let t = TestHome::new();
    let host = host_python();
    let dir = t.dir.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ptest.toml"),
        format!(
            r#"
[env.py]
python = ["{host}", "3.99"]
env_vars = {{ MODE = "template", WHO = "template" }}

[[suite]]
name = "unit"
env = "py"
run = 'python -c "import sys; print(sys.version_info[:2])"; echo "$MODE $WHO $PTEST_SUITE"'
env_vars = {{ WHO = "suite" }}
"#
        ),
    )
    .unwrap();
    let dir = dir.to_str().unwrap();
    let plan = t.json(["run", "--list", "--project", dir]);
    let names: Vec<&str> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [format!("unit[py{host}]"), "unit[py3.99]".into()]);

    let out = t
        .ptest(["run", "--project", dir, "--json"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let suites = report["suites"].as_array().unwrap();
    let (major, minor) = host.split_once('.').unwrap();
    assert_eq!(suites[0]["status"], "passed", "{report}");
    assert_eq!(
        suites[0]["stdout_tail"],
        format!("({major}, {minor})\ntemplate suite unit[py{host}]\n")
    );
    assert_eq!(suites[1]["status"], "error", "{report}");
    let reason = suites[1]["reason"].as_str().unwrap();
    assert!(
        reason.contains("no Python interpreter matches `3.99`"),
        "{reason}"
    );

    // One entry by its full name.
    let report = t.json(["run", "--project", dir, &format!("unit[py{host}]")]);
    assert_eq!(report["suites"].as_array().unwrap().len(), 1);
    assert!(t.names().is_empty());
}
