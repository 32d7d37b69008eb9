//! What `ptest run` says about a run: counts that add up, suites and shards named alike at
//! the start and in the summary, English plurals, and output that names files which exist.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;
use predicates::str::contains;

/// Five suites, one in two shards: every status a summary counts.
const MIXED: &str = r#"
[[suite]]
name = "a"
run = "true"

[[suite]]
name = "b"
run = "true"
parallel = 2

[[suite]]
name = "flaky"
run = 'echo "try $PTEST_ATTEMPT"; test "$PTEST_ATTEMPT" = 2'
retries = 1

[[suite]]
name = "bad"
junit = "junit.xml"
run = """
printf '<testsuite name="t"><testcase classname="m" name="test_one"><failure message="no"/></testcase></testsuite>' > junit.xml
echo "- generated xml file: $PWD/junit.xml -"
exit 1
"""

[[suite]]
name = "slow"
run = "sleep 30"
timeout = "1s"
"#;

#[test]
fn a_mixed_run_counts_each_shard_once_and_keeps_what_was_retried() {
    let t = TestHome::new();
    let dir = t.dir.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ptest.toml"), MIXED).unwrap();
    let (junit, html) = (t.dir.path().join("j.xml"), t.dir.path().join("r.html"));
    let out = t
        .ptest(["run", "--project", dir.to_str().unwrap(), "-j", "6"])
        .args(["--junit", junit.to_str().unwrap()])
        .args(["--html", html.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(contains("Starting 5 suites as 6 shards, 6 at a time"))
        .stderr(contains("] 5 suites as 6 shards (run "))
        // 3 + 1 + 1 + 1 = 6 shards: a flaky suite is counted once, as flaky.
        .stderr(contains("): 3 passed, 1 flaky, 1 failed, 1 timed_out\n"))
        .stderr(contains("bad (1 test, 1 failed)"))
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let line = stderr
        .lines()
        .find(|l| l.contains("generated xml file:"))
        .unwrap_or_else(|| panic!("no xml line in {stderr}"));
    let path = line.split("file: ").nth(1).unwrap().trim_end_matches(" -");
    assert!(
        path.starts_with(t.home().join("reports").to_str().unwrap()),
        "{line}"
    );
    let kept = std::fs::read_to_string(path).unwrap();
    assert!(kept.contains("test_one"), "{kept}");
    // The flaky suite's retried failure is in the summary, the JUnit and the HTML.
    let flaky = stderr.split("--- FLAKY flaky ---\n").nth(1).unwrap();
    assert!(
        flaky.starts_with(
            "passed on attempt 2\n  attempt 1 FAIL: run exited with code 1\n    stdout:\n      \
             try 1\n  attempt 2:\n  stdout:\n    try 2\n"
        ),
        "{stderr}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<flakyFailure") && xml.contains("try 1"),
        "{xml}"
    );
    assert!(xml.contains(r#"type="timeout""#), "{xml}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("attempt 1 FAIL: run exited with code 1"));
    assert!(page.contains(r#"id="t-data""#) && page.contains("test_one"));
    assert!(t.names().is_empty());
}
