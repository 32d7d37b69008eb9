//! `ptest run` through the CLI, on the bundled example project.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use predicates::str::contains;
use support::TestHome;

fn example() -> String {
    format!("{}/../../examples/project", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_example_project_passes_and_reports_json_and_junit() {
    let t = TestHome::new();
    let junit = t.dir.path().join("junit.xml");
    let out = t
        .ptest([
            "run",
            "--project",
            &example(),
            "--json",
            "--junit",
            junit.to_str().unwrap(),
        ])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let suites = report["suites"].as_array().unwrap();
    assert_eq!(suites.len(), 5, "{report}");
    assert!(suites.iter().all(|s| s["status"] == "passed"), "{report}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuites") && xml.contains("state-a"),
        "{xml}"
    );
    // Every environment of the run is gone.
    assert!(t.names().is_empty());
}

#[test]
fn list_and_selection() {
    let t = TestHome::new();
    t.ptest(["run", "--project", &example(), "--list"])
        .assert()
        .success()
        .stdout(contains("unit").and(contains("state-b")));
    let out = t
        .ptest(["run", "--project", &example(), "--tag", "state", "--json"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let names: Vec<&str> = report["suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("state-")));
    t.ptest(["run", "--project", &example(), "nope"])
        .assert()
        .code(2)
        .stderr(contains("no suite named \"nope\""));
}

use predicates::prelude::PredicateBooleanExt;

#[test]
fn a_failing_suite_fails_the_run_and_a_bad_file_points_at_the_line() {
    let t = TestHome::new();
    let project = t.dir.path().join("proj");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("ptest.toml"),
        "[[suite]]\nname = \"ok\"\nrun = \"true\"\n\n[[suite]]\nname = \"bad\"\nrun = \"exit 3\"\n",
    )
    .unwrap();
    t.ptest(["run", "--project", project.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(contains("FAIL").and(contains("bad")));
    std::fs::write(
        project.join("ptest.toml"),
        "[[suite]]\nname = \"x\"\nrun = \"true\"\nretires = 2\n",
    )
    .unwrap();
    t.ptest(["run", "--project", project.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(contains("ptest.toml:4:1").and(contains("retires")));
}
