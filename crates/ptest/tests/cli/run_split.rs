//! `split = "pytest"`: real pytest (from PyPI) collects once, each shard runs its share, and
//! the next run balances the shares by the durations the first one recorded.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;

const PROJECT: &str = r#"
[env.py]
packages = ["pytest"]

[[suite]]
name = "unit"
env = "py"
parallel = 2
split = "pytest"
junit = "junit.xml"
run = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", "junit.xml"]
"#;

const TESTS: &str = "import time\n\
import pytest\n\
def test_slow():\n    time.sleep(1.0)\n\
@pytest.mark.parametrize('n', range(9))\n\
def test_quick(n):\n    pass\n";

/// Each shard's test names in a run report.
fn shares(report: &serde_json::Value) -> Vec<Vec<String>> {
    report["suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["status"], "passed", "{s}");
            s["test_cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn shards_run_disjoint_shares_balanced_by_earlier_durations() {
    let t = TestHome::new();
    let dir = t.dir.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ptest.toml"), PROJECT).unwrap();
    std::fs::write(dir.join("test_it.py"), TESTS).unwrap();
    let dir = dir.to_str().unwrap();

    // No history: ten tests, five each, every test once.
    let first = shares(&t.json(["run", "--project", dir]));
    assert_eq!(first.len(), 2);
    assert_eq!((first[0].len(), first[1].len()), (5, 5), "{first:?}");
    let mut all: Vec<String> = first.concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 10, "{first:?}");

    // With the first run's durations the slow test weighs more than a quick one: its shard
    // takes fewer tests (the suite's overhead, spread over every test, sets how many fewer;
    // on a loaded machine it is larger, so no exact count is asserted).
    let second = shares(&t.json(["run", "--project", dir]));
    let (slow, quick): (Vec<_>, Vec<_>) = second
        .iter()
        .partition(|s| s.contains(&"test_slow".to_owned()));
    assert!(slow[0].len() < quick[0].len(), "{second:?}");
    assert_eq!(second.concat().len(), 10, "{second:?}");

    // -k after `--` narrows what is collected, so the shares too.
    let third = shares(&t.json(["run", "--project", dir, "--", "-k", "quick"]));
    assert_eq!(third.concat().len(), 9, "{third:?}");
    assert!(t.names().is_empty());
}

#[test]
fn parallel_auto_and_a_bad_split_are_checked() {
    let t = TestHome::new();
    let dir = t.dir.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ptest.toml"),
        "[[suite]]\nname = \"a\"\nrun = \"true\"\nparallel = \"many\"\n",
    )
    .unwrap();
    let dir = dir.to_str().unwrap();
    t.ptest(["run", "--list", "--project", dir])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("ptest.toml:4:12"))
        .stderr(predicates::str::contains(
            "neither a number of shards nor \"auto\"",
        ));
    std::fs::write(
        format!("{dir}/ptest.toml"),
        "[[suite]]\nname = \"a\"\nrun = \"true\"\nsplit = \"nose\"\n",
    )
    .unwrap();
    t.ptest(["run", "--list", "--project", dir])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("ptest.toml:4:9"));
    // Without history, auto is one shard per core ptest may use (-j).
    std::fs::write(
        format!("{dir}/ptest.toml"),
        "[[suite]]\nname = \"a\"\nrun = \"true\"\nparallel = \"auto\"\n",
    )
    .unwrap();
    let plan = t.json(["run", "--list", "-j", "3", "--project", dir]);
    assert_eq!(plan[0]["shards"], 3);
}
