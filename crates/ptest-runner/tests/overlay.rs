//! `project = "overlay"` (the default in sandboxed environments) on the real kernel: each
//! suite writes into the project through its own copy-on-write layer, concurrent suites never
//! see each other's writes, the project tree stays byte-for-byte as it was, a retry starts
//! from an empty layer, and JUnit files are read from what the attempt wrote.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use ptest_runner::{CaseStatus, SuiteStatus};
use support::{Harness, can_overlay, jobs, suite, tree_state, written};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlaid_suites_write_into_the_project_see_only_their_own_writes_and_leave_it_unchanged() {
    if !can_overlay() {
        return;
    }
    let h = Harness::new();
    h.file("data/input.txt", "shared input\n");
    h.file("data/gone.txt", "deleted by every suite\n");
    h.file(".git/HEAD", "ref: refs/heads/main\n");
    h.file("build/out.o", "hidden by .ptestignore\n");
    h.file(".ptestignore", "/build/\n");
    // Each suite changes, adds and deletes files of the project, waits while the others do
    // the same, then checks it still sees exactly its own writes. What a copy leaves out is
    // hidden here too.
    h.file(
        "check.sh",
        "#!/bin/sh\nset -e\n\
        test \"$(pwd)\" = \"$PTEST_ENV_ROOT/workspace\"\n\
        test \"$(cat data/input.txt)\" = 'shared input'\n\
        test ! -e .git && test ! -e build\n\
        if ls written-by-* >/dev/null 2>&1; then echo \"saw $(ls written-by-*)\"; exit 1; fi\n\
        echo \"$PTEST_SUITE\" > \"written-by-$PTEST_SUITE\"\n\
        echo \"changed by $PTEST_SUITE\" > data/input.txt\n\
        rm data/gone.txt\n\
        mkdir -p new/dir && echo deep > new/dir/file\n\
        sleep 0.5\n\
        test \"$(ls written-by-*)\" = \"written-by-$PTEST_SUITE\"\n\
        test \"$(cat data/input.txt)\" = \"changed by $PTEST_SUITE\"\n\
        test ! -e data/gone.txt\n",
    );
    let toml: String = (1..=4)
        .map(|i| format!("[[suite]]\nname = \"s{i}\"\nenv = \"kept\"\nrun = \"./check.sh\"\n\n"))
        .collect();
    let project = h.project(&format!("[env.kept]\nkeep = true\n\n{toml}"));
    let before = tree_state(&h.project_dir());

    let (report, _) = h.run(project, jobs(4)).await;

    for s in &report.suites {
        assert_eq!(s.status, SuiteStatus::Passed, "{s:#?}");
        assert!(s.warnings.is_empty(), "{s:#?}");
    }
    assert_eq!(
        tree_state(&h.project_dir()),
        before,
        "the project tree changed"
    );
    // The writes are in each environment's upper layer, and nothing was copied.
    for s in &report.suites {
        let env = h
            .manager
            .get_environment(s.env_name.as_deref().unwrap())
            .unwrap();
        assert_eq!(
            env.spec.overlay.as_ref().unwrap().lower,
            h.project_dir(),
            "{env:#?}"
        );
        let upper = written(&env);
        assert_eq!(
            std::fs::read_to_string(upper.join(format!("written-by-{}", s.name))).unwrap(),
            format!("{}\n", s.name)
        );
        assert_eq!(
            std::fs::read_to_string(upper.join("new/dir/file")).unwrap(),
            "deep\n"
        );
        assert_eq!(std::fs::read_dir(env.workspace()).unwrap().count(), 0);
        h.manager
            .cleanup(&env, ptest_core::RemoveOptions::default())
            .await
            .unwrap();
    }
    assert!(h.env_names().is_empty(), "left behind: {:?}", h.env_names());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_starts_from_an_empty_layer() {
    if !can_overlay() {
        return;
    }
    let h = Harness::new();
    h.file("state.txt", "pristine\n");
    // The first attempt dirties the project and fails; the second must see it pristine.
    let project = h.project(
        r#"
[env.layered]
project = "overlay"

[[suite]]
name = "flaky"
env = "layered"
retries = 2
run = """
test "$(cat state.txt)" = pristine || { echo "saw: $(cat state.txt) $(ls)"; exit 3; }
test ! -e attempt-1
echo "dirty from $PTEST_ATTEMPT" > state.txt
touch "attempt-$PTEST_ATTEMPT"
test "$PTEST_ATTEMPT" -ge 2
"""
"#,
    );
    let before = tree_state(&h.project_dir());

    let (report, recorder) = h.run(project, jobs(1)).await;

    let s = suite(&report, "flaky");
    assert_eq!(s.status, SuiteStatus::Flaky, "{s:#?}");
    assert_eq!(s.attempts, 2, "{s:#?}");
    assert!(recorder.events().contains(&"retry flaky 1".to_owned()));
    assert_eq!(tree_state(&h.project_dir()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junit_is_read_from_what_the_attempt_wrote_not_from_the_project() {
    if !can_overlay() {
        return;
    }
    let h = Harness::new();
    // A stale report in the project: it fails a case, and must count for nobody.
    h.file(
        "reports/junit.xml",
        r#"<testsuite><testcase classname="old" name="stale"><failure message="old"/></testcase></testsuite>"#,
    );
    let project = h.project(
        r#"
[[suite]]
name = "writes"
junit = "reports/junit.xml"
run = "echo '<testsuite><testcase classname=\"new\" name=\"fresh\"/></testsuite>' > reports/junit.xml"

[[suite]]
name = "deletes"
junit = "reports/junit.xml"
run = "rm reports/junit.xml"

[[suite]]
name = "forgets"
junit = "reports/junit.xml"
run = "true"
"#,
    );

    let (report, _) = h.run(project, jobs(3)).await;

    let writes = suite(&report, "writes");
    assert_eq!(writes.status, SuiteStatus::Passed, "{writes:#?}");
    assert_eq!(writes.test_cases.len(), 1, "{writes:#?}");
    assert_eq!(writes.test_cases[0].name, "fresh");
    assert_eq!(writes.test_cases[0].status, CaseStatus::Passed);
    for name in ["deletes", "forgets"] {
        let s = suite(&report, name);
        assert_eq!(s.status, SuiteStatus::Passed, "{s:#?}");
        assert!(s.test_cases.is_empty(), "{s:#?}");
        assert_eq!(s.warnings.len(), 1, "{s:#?}");
        assert!(s.warnings[0].contains("was not written"), "{s:#?}");
    }
}
