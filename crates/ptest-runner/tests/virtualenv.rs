//! Virtualenv templates: packages from a local wheelhouse (no network), and two suites that
//! need conflicting versions of the same package both passing.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use ptest_runner::{RunOptions, SuiteStatus};
use support::{Harness, suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suites_with_conflicting_package_versions_both_pass() {
    if !ptest_testkit::runnable(ptest_testkit::python::missing()) {
        return;
    }
    let house = ptest_testkit::wheels::wheelhouse().display().to_string();
    let h = Harness::new();
    h.file(
        "check_b.py",
        "import os, sys, ptdemo_b\n\
         want = os.environ['WANT_B']\n\
         print('ptdemo_b', ptdemo_b.VERSION, 'from', sys.prefix)\n\
         sys.exit(0 if ptdemo_b.VERSION == want else 1)\n",
    );
    let project = h.project(&format!(
        r#"
[env.old-b]
packages = ["ptdemo-b==1.0"]
find_links = ["{house}"]
no_index = true

[env.new-b]
packages = ["ptdemo-a==1.0"]
find_links = ["{house}"]
no_index = true

[[suite]]
name = "old"
env = "old-b"
env_vars = {{ WANT_B = "1.0" }}
run = ["python", "check_b.py"]

[[suite]]
name = "new"
env = "new-b"
env_vars = {{ WANT_B = "2.1" }}
run = "python check_b.py && python -c 'import ptdemo_a'"
"#
    ));
    assert_eq!(
        project.templates["old-b"].level,
        ptest_core::IsolationLevel::Virtualenv
    );
    let (report, _) = h
        .run(
            project,
            RunOptions {
                jobs: 2,
                ..RunOptions::default()
            },
        )
        .await;
    for name in ["old", "new"] {
        let s = suite(&report, name);
        assert_eq!(s.status, SuiteStatus::Passed, "{s:#?}");
        assert!(
            s.stdout_tail
                .contains(&format!("/run-{}-{name}/", report.run_id))
                || s.stdout_tail.contains("venv"),
            "{s:#?}"
        );
    }
    assert!(
        suite(&report, "old")
            .stdout_tail
            .starts_with("ptdemo_b 1.0")
    );
    assert!(
        suite(&report, "new")
            .stdout_tail
            .starts_with("ptdemo_b 2.1")
    );
    assert!(h.env_names().is_empty());
}
