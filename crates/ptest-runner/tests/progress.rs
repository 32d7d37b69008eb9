//! Per-test progress of a real pytest suite (pytest from PyPI), from the plugin ptest puts on
//! its path without shadowing anything the suite imports or breaking one that sets its own
//! path.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use ptest_runner::{RunOptions, SuiteStatus};
use support::{Harness, suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pytest_suite_reports_each_test_as_it_ends() {
    let h = Harness::new();
    h.file(
        "test_slow.py",
        "import importlib.util, sys, time\n\
         import pytest\n\
         @pytest.mark.parametrize('n', range(8))\n\
         def test_slow(n):\n    time.sleep(0.3)\n\
         def test_nothing_shadowed():\n    \
             assert importlib.util.find_spec('ptest') is None\n    \
             assert '/extra-path' in sys.path\n",
    );
    let project = h.project(
        r#"
[env.py]
packages = ["pytest"]

[[suite]]
name = "unit"
env = "py"
run = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_slow.py"]
env_vars = { PYTHONPATH = "/extra-path" }

# A command that sets its own PYTHONPATH runs without the plugin, not with an import error.
[[suite]]
name = "own-path"
env = "py"
run = "PYTHONPATH=/elsewhere python -m pytest -q -p no:cacheprovider test_ok.py"
"#,
    );
    h.file("test_ok.py", "def test_ok():\n    pass\n");
    let (report, recorder) = h.run(project, RunOptions::default()).await;
    let own = suite(&report, "own-path");
    assert_eq!(own.status, SuiteStatus::Passed, "{}", own.stdout_tail);
    let unit = suite(&report, "unit");
    assert_eq!(unit.status, SuiteStatus::Passed, "{}", unit.stdout_tail);
    let seen: Vec<(u64, u64)> = recorder
        .events()
        .iter()
        .filter_map(|e| e.strip_prefix("progress unit "))
        .map(|p| {
            let (done, total) = p.split_once('/').unwrap();
            (done.parse().unwrap(), total.parse().unwrap())
        })
        .collect();
    assert!(seen.len() >= 2, "{:?}", recorder.events());
    assert!(
        seen.iter().all(|&(done, total)| total == 9 && done <= 9),
        "{seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
}
