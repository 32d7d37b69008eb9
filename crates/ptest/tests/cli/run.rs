//! `ptest run` through the CLI, on the bundled example project.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;
use predicates::str::contains;

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
fn live_lines_count_suites_and_their_shards() {
    let t = TestHome::new();
    // The example has four suites, one of them in two shards; its path has a `..`, which must
    // not stop the overlay (a warning would say the project was copied instead).
    t.ptest(["run", "--project", &example()])
        .assert()
        .success()
        .stderr(predicates::str::contains("Starting 4 suites as 5 shards, "))
        .stderr(predicates::str::contains("] 4 suites as 5 shards (run "))
        .stderr(predicates::str::contains("warning").not());
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

fn examples(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Writes `ptest.toml` with `text` into a new project directory under the test's temp dir.
fn project(t: &TestHome, text: &str) -> std::path::PathBuf {
    let dir = t.dir.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ptest.toml"), text).unwrap();
    dir
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ts(v: &serde_json::Value) -> jiff::Timestamp {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn twelve_suites_at_j4_never_run_more_than_four_at_once() {
    let t = TestHome::new();
    let mut text = String::new();
    for i in 0..12 {
        text.push_str(&format!(
            "[[suite]]\nname = \"s{i:02}\"\nrun = \"sleep 0.2\"\n\n"
        ));
    }
    let dir = project(&t, &text);
    let json = t.dir.path().join("out/report.json");
    t.ptest([
        "run",
        "--project",
        dir.to_str().unwrap(),
        "-j",
        "4",
        &format!("--json={}", json.display()),
    ])
    .assert()
    .success();
    let report = read_json(&json);
    assert_eq!(report["jobs"], 4);
    let suites = report["suites"].as_array().unwrap();
    assert_eq!(suites.len(), 12);
    // From the recorded start and end of every suite: at no start were more than 4 running.
    let spans: Vec<(jiff::Timestamp, jiff::Timestamp)> = suites
        .iter()
        .map(|s| (ts(&s["started_at"]), ts(&s["ended_at"])))
        .collect();
    for (start, _) in &spans {
        let at_once = spans
            .iter()
            .filter(|(a, b)| a <= start && start < b)
            .count();
        assert!(at_once <= 4, "{at_once} suites ran at once: {spans:?}");
    }
    // Four worker slots, all used (the first four start together).
    let slots: std::collections::BTreeSet<u64> =
        suites.iter().map(|s| s["slot"].as_u64().unwrap()).collect();
    assert_eq!(slots.into_iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
    // The same report is in $PTEST_HOME/reports/<run id>/, with JUnit and HTML beside it,
    // and nothing was written to the project.
    let run_dir = t
        .home()
        .join("reports")
        .join(report["run_id"].as_str().unwrap());
    assert_eq!(read_json(&run_dir.join("report.json")), report);
    assert!(run_dir.join("junit.xml").is_file() && run_dir.join("report.html").is_file());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    assert!(t.names().is_empty());
}

#[test]
fn ctrl_c_leaves_no_environment_behind_under_immediate() {
    let t = TestHome::new();
    let out = t.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut text = String::from("[env.basic]\nsecurity = \"low\"\ncleanup = \"immediate\"\n\n");
    for name in ["a", "b", "c"] {
        text.push_str(&format!(
            "[[suite]]\nname = \"{name}\"\nrun = \"sleep 300 & echo $! > {}/{name}.pid; wait\"\n\n",
            out.display()
        ));
    }
    let dir = project(&t, &text);
    let child = t
        .std_command(["run", "-j", "3", "--project", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pids: Vec<u32> = ["a", "b", "c"]
        .iter()
        .map(|n| crate::support::read_pid(&out.join(format!("{n}.pid"))))
        .collect();
    assert_eq!(t.names().len(), 3);
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert!(t.names().is_empty(), "left behind: {:?}", t.names());
    for pid in pids {
        assert!(
            crate::support::wait_gone(pid),
            "sleep {pid} survived the run"
        );
    }
}

/// What `pytest --junitxml` writes (pytest 8): a `<testsuites>` root holding one
/// `<testsuite name="pytest">` with `timestamp` and `hostname`, cases named by module path.
const PYTEST_JUNIT: &str = r#"#!/bin/sh
mkdir -p reports
cat > reports/junit.xml <<'XML'
<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="0" skipped="1" tests="3" time="0.042" timestamp="2025-01-01T00:00:00.000000+00:00" hostname="ci"><testcase classname="tests.test_calc" name="test_add" time="0.001" /><testcase classname="tests.test_calc" name="test_divide[2-1]" time="0.002" /><testcase classname="tests.test_calc" name="test_later" time="0.000"><skipped type="pytest.skip" message="not yet">tests/test_calc.py:12: not yet</skipped></testcase></testsuite></testsuites>
XML
echo "2 passed, 1 skipped"
"#;

#[test]
fn pytest_junitxml_cases_appear_in_ptest_junit_output() {
    let t = TestHome::new();
    let dir = project(
        &t,
        "[[suite]]\nname = \"py\"\nrun = \"sh fake_pytest.sh\"\njunit = \"reports/junit.xml\"\n",
    );
    std::fs::write(dir.join("fake_pytest.sh"), PYTEST_JUNIT).unwrap();
    let junit = t.dir.path().join("ptest-junit.xml");
    t.ptest([
        "run",
        "--project",
        dir.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ])
    .assert()
    .success()
    .stderr(contains("3 tests, 0 failed"));
    let xml = std::fs::read_to_string(&junit).unwrap();
    for needle in [
        r#"<testsuite name="py""#,
        r#"name="test_add""#,
        r#"name="test_divide[2-1]""#,
        r#"classname="tests.test_calc""#,
        r#"<skipped message="not yet""#,
    ] {
        assert!(xml.contains(needle), "no {needle} in {xml}");
    }
}

#[test]
fn a_missing_or_malformed_junit_file_is_a_warning_and_the_result_stands() {
    let t = TestHome::new();
    let dir = project(
        &t,
        "[[suite]]\nname = \"missing\"\nrun = \"true\"\njunit = \"nowhere.xml\"\n\n\
         [[suite]]\nname = \"garbled\"\nrun = \"echo '<testsuite><testcase' > j.xml\"\njunit = \"j.xml\"\n",
    );
    let out = t
        .ptest(["run", "--project", dir.to_str().unwrap(), "--json"])
        .assert()
        .success()
        .stderr(
            contains("warning: missing: JUnit file nowhere.xml was not written")
                .and(contains("warning: garbled: JUnit file j.xml is malformed")),
        );
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    for s in report["suites"].as_array().unwrap() {
        assert_eq!(s["status"], "passed", "{s}");
        assert_eq!(s["warnings"].as_array().unwrap().len(), 1, "{s}");
    }
}

#[test]
fn keep_failed_prints_how_to_enter_the_environment() {
    let t = TestHome::new();
    let dir = project(
        &t,
        "[[suite]]\nname = \"ok\"\nrun = \"true\"\n\n[[suite]]\nname = \"bad\"\nrun = \"exit 1\"\n",
    );
    let out = t
        .ptest(["run", "--project", dir.to_str().unwrap(), "--keep-failed"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let names = t.names();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with("-bad"), "{names:?}");
    assert!(
        stderr.contains(&format!("ptest env exec {} -- sh", names[0])),
        "{stderr}"
    );
}

#[test]
fn the_conflicts_example_gives_each_suite_its_own_package_version() {
    let t = TestHome::new();
    let json = t.dir.path().join("report.json");
    t.ptest([
        "run",
        "--project",
        &examples("conflicts"),
        &format!("--json={}", json.display()),
    ])
    .assert()
    .success();
    let report = read_json(&json);
    let suites = report["suites"].as_array().unwrap();
    assert_eq!(suites.len(), 2, "{report}");
    for s in suites {
        assert_eq!(s["status"], "passed", "{s}");
        let cases = s["test_cases"].as_array().unwrap();
        assert_eq!(cases.len(), 2, "{s}");
        assert!(cases.iter().all(|c| c["status"] == "passed"), "{s}");
    }
    assert!(t.names().is_empty());
}

#[test]
fn the_many_example_runs_ten_suites_at_once_with_one_flaky() {
    let t = TestHome::new();
    let (json, html) = (t.dir.path().join("r.json"), t.dir.path().join("r.html"));
    t.ptest([
        "run",
        "--project",
        &examples("many"),
        "-j",
        "10",
        &format!("--json={}", json.display()),
        "--html",
        html.to_str().unwrap(),
    ])
    .assert()
    .success()
    .stderr(contains(": 9 passed, 1 flaky\n"));
    let report = read_json(&json);
    let suites = report["suites"].as_array().unwrap();
    assert_eq!(suites.len(), 10);
    let count = |status: &str| suites.iter().filter(|s| s["status"] == status).count();
    assert_eq!((count("passed"), count("flaky")), (9, 1), "{report}");
    let flaky = suites.iter().find(|s| s["status"] == "flaky").unwrap();
    assert_eq!(flaky["name"], "network");
    assert_eq!(flaky["attempts"], 2);
    // The lowest free slot is taken: slot 9 in use means ten suites held slots at once.
    let slots: std::collections::BTreeSet<u64> =
        suites.iter().map(|s| s["slot"].as_u64().unwrap()).collect();
    assert_eq!(slots.len(), 10);
    let cases: usize = suites
        .iter()
        .map(|s| s["test_cases"].as_array().unwrap().len())
        .sum();
    assert_eq!(cases, 30);
    // The HTML report stands alone: inline SVG charts, nothing fetched.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("worker 9"), "{page}");
    assert!(!page.contains("src=") && !page.contains("<link"), "{page}");
    assert!(t.names().is_empty());
}

#[test]
fn init_writes_a_starter_and_refuses_to_overwrite_it() {
    let t = TestHome::new();
    std::fs::write(t.cwd().join("pyproject.toml"), "[project]\nname = \"x\"\n").unwrap();
    t.ptest(["init"]).assert().success();
    let text = std::fs::read_to_string(t.cwd().join("ptest.toml")).unwrap();
    assert!(
        text.contains("[env.py]") && text.contains("\"-e .\""),
        "{text}"
    );
    t.ptest(["run", "--list"])
        .assert()
        .success()
        .stdout(contains("tests"));
    t.ptest(["init"])
        .assert()
        .code(2)
        .stderr(contains("already exists").and(contains("--force")));
    std::fs::remove_file(t.cwd().join("pyproject.toml")).unwrap();
    t.ptest(["init", "--force"]).assert().success();
    let text = std::fs::read_to_string(t.cwd().join("ptest.toml")).unwrap();
    assert!(!text.contains("[env.py]"), "{text}");
}

#[test]
fn services_start_before_the_suite_on_leased_ports() {
    let t = TestHome::new();
    let project = format!("{}/../../examples/service", env!("CARGO_MANIFEST_DIR"));
    let out = t
        .ptest(["run", "--project", &project, "--json"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let suites = report["suites"].as_array().unwrap();
    assert_eq!(suites.len(), 2, "{report}");
    assert!(suites.iter().all(|s| s["status"] == "passed"), "{report}");
    // Each suite saw its own server on its own port.
    let ports: Vec<String> = suites
        .iter()
        .map(|s| {
            s["stdout_tail"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .nth(5)
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_ne!(ports[0], ports[1], "{ports:?}");
    assert!(t.names().is_empty());
}

#[test]
fn a_service_that_never_gets_ready_fails_its_suite_with_its_output() {
    let t = TestHome::new();
    let project = t.dir.path().join("svc");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("ptest.toml"),
        "[[suite]]\nname = \"s\"\nrun = \"true\"\n\n[[suite.services]]\nname = \"lazy\"\n\
         run = \"echo warming up; sleep 30\"\nready_log = \"^ready$\"\nready_timeout = \"1s\"\n",
    )
    .unwrap();
    let out = t
        .ptest(["run", "--project", project.to_str().unwrap(), "--json"])
        .assert()
        .code(1);
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let suite = &report["suites"][0];
    assert_eq!(suite["status"], "error", "{report}");
    let reason = suite["reason"].as_str().unwrap();
    assert!(
        reason.contains("lazy") && reason.contains("warming up"),
        "{reason}"
    );
    assert!(t.names().is_empty());
}

#[test]
fn without_namespaces_the_project_is_copied_and_an_asked_for_overlay_is_an_error() {
    let t = TestHome::new();
    let dir = project(
        &t,
        "[env.layered]\nproject = \"overlay\"\n\n\
         [[suite]]\nname = \"default\"\nrun = \"test -f ptest.toml && echo x > written\"\n\n\
         [[suite]]\nname = \"asked\"\nenv = \"layered\"\nrun = \"true\"\n",
    );
    let out = t
        .ptest(["run", "--project", dir.to_str().unwrap(), "--json"])
        .env("PTEST_SANDBOX_DISABLE", "namespaces")
        .assert()
        .code(2) // a suite the configuration asks the impossible of: a usage error
        .stderr(contains("warning: default: the project was copied"));
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let by_name = |name: &str| {
        report["suites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    let default = by_name("default");
    assert_eq!(default["status"], "passed", "{default}");
    let warning = default["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("not overlaid") && warning.contains("namespaces"),
        "{warning}"
    );
    let asked = by_name("asked");
    assert_eq!(asked["status"], "error", "{asked}");
    let reason = asked["reason"].as_str().unwrap();
    assert!(
        reason.contains("project = \"overlay\"")
            && reason.contains("namespaces")
            && reason.contains("use project = \"copy\""),
        "{reason}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "the project changed"
    );
    assert!(t.names().is_empty());
}

/// Issue 15, item 6: 1 GB of a suite's output never passes through ptest's memory: it goes
/// to a file of the run's report directory, and the report keeps its tail.
#[test]
fn a_gigabyte_of_suite_output_goes_to_a_file_not_to_memory() {
    let t = TestHome::new();
    std::fs::write(
        t.cwd().join("ptest.toml"),
        "[[suite]]\nname = \"loud\"\nrun = \"yes | head -c 1G; echo the-end\"\n",
    )
    .unwrap();
    let measure = "import subprocess, resource, sys\n\
                   r = subprocess.run(sys.argv[1:], capture_output=True)\n\
                   print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(measure)
        .arg(assert_cmd::cargo::cargo_bin("ptest"))
        .args(["run", "--json=report.json"])
        .env("PTEST_HOME", t.home())
        .env("HOME", t.dir.path())
        .current_dir(t.cwd())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let (code, rss_kib) = said.trim().split_once(' ').unwrap();
    assert_eq!(code, "0", "{said}");
    assert!(
        rss_kib.parse::<u64>().unwrap() < 64 << 10,
        "peak RSS {rss_kib} KiB"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.cwd().join("report.json")).unwrap()).unwrap();
    let suite = &report["suites"][0];
    assert!(
        suite["stdout_tail"]
            .as_str()
            .unwrap()
            .ends_with("the-end\n")
    );
    let file = suite["output_files"][0].as_str().unwrap();
    assert!(file.ends_with("loud.1.stdout.log"), "{file}");
    assert_eq!(
        std::fs::metadata(file).unwrap().len(),
        (1 << 30) + "the-end\n".len() as u64
    );
}
