//! Running suites through a real Manager with the directory engine: isolation of the project
//! copy, ordering, retries, timeouts, sharding, JUnit in and out, selection, fail-fast,
//! cancellation and keeping environments.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::time::Duration;

use ptest_runner::{
    CaseStatus, ProjectMode, RUN_LABEL, RunOptions, Selection, SuiteStatus, junit, list_text,
};
use ptest_testkit::alive;
use support::{Harness, jobs, suite, tree_state, written};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_suites_see_only_their_own_writes_and_leave_the_project_unchanged() {
    let h = Harness::new();
    h.file("data/input.txt", "shared input\n");
    h.file(
        "check.sh",
        "#!/bin/sh\nset -e\n\
        test \"$(cat data/input.txt)\" = 'shared input'\n\
        if ls written-by-* >/dev/null 2>&1; then echo \"saw $(ls written-by-*)\"; exit 1; fi\n\
        echo \"$PTEST_SUITE\" > \"written-by-$PTEST_SUITE\"\n\
        echo changed > data/input.txt\n\
        sleep 0.3\n\
        test \"$(ls written-by-*)\" = \"written-by-$PTEST_SUITE\"\n\
        test \"$(pwd)\" = \"$PTEST_ENV_ROOT/workspace\"\n",
    );
    h.file(".git/HEAD", "ref: refs/heads/main\n");
    let toml: String = (1..=12)
        .map(|i| format!("[[suite]]\nname = \"s{i}\"\nrun = \"./check.sh\"\n\n"))
        .collect();
    let project = h.project(&toml);
    let before = tree_state(&h.project_dir());

    let (report, _) = h.run(project, jobs(4)).await;

    for s in &report.suites {
        assert_eq!(s.status, SuiteStatus::Passed, "{s:#?}");
        assert!(
            s.env_name
                .as_deref()
                .unwrap()
                .starts_with(&format!("run-{}-s", report.run_id))
        );
    }
    assert_eq!(report.suites.len(), 12);
    assert_eq!(report.exit_code(), 0);
    assert_eq!(
        tree_state(&h.project_dir()),
        before,
        "the project tree changed"
    );
    assert!(h.env_names().is_empty(), "left behind: {:?}", h.env_names());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_run_first_and_a_failure_skips_dependents() {
    let h = Harness::new();
    let project = h.project_low(
        r#"
[[suite]]
name = "build"
run = "sleep 0.3; touch @OUT@/built"

[[suite]]
name = "test"
depends_on = ["build"]
run = "test -e @OUT@/built"

[[suite]]
name = "broken"
run = "echo oops >&2; exit 3"

[[suite]]
name = "after-broken"
depends_on = ["broken"]
run = "touch @OUT@/must-not-exist"

[[suite]]
name = "after-after"
depends_on = ["after-broken"]
run = "true"
"#,
    );
    let (report, rec) = h.run(project, jobs(4)).await;
    assert_eq!(suite(&report, "build").status, SuiteStatus::Passed);
    assert_eq!(suite(&report, "test").status, SuiteStatus::Passed);
    assert!(rec.position("end build passed") < rec.position("start test"));
    let broken = suite(&report, "broken");
    assert_eq!(broken.status, SuiteStatus::Failed);
    assert_eq!(broken.exit_code, Some(3));
    assert_eq!(broken.stderr_tail, "oops\n");
    let skipped = suite(&report, "after-broken");
    assert_eq!(skipped.status, SuiteStatus::Skipped);
    assert!(
        skipped.reason.as_deref().unwrap().contains("\"broken\""),
        "{skipped:?}"
    );
    assert_eq!(skipped.attempts, 0);
    assert_eq!(suite(&report, "after-after").status, SuiteStatus::Skipped);
    assert!(!h.out().join("must-not-exist").exists());
    assert_eq!(report.exit_code(), 1);
    assert!(
        report.summary().contains("1 failed, 2 skipped"),
        "{}",
        report.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suite_passing_on_retry_is_flaky_and_counts_as_passed() {
    let h = Harness::new();
    let project = h.project_low(
        r#"
[[suite]]
name = "flaky"
retries = 2
# Fails on the first attempt, passes on the second; each attempt sees a fresh copy.
run = "test ! -e leftover || exit 9; touch leftover; echo x >> @OUT@/count; test $(wc -l < @OUT@/count) -ge 2"

[[suite]]
name = "hopeless"
retries = 1
run = "exit 1"
"#,
    );
    let (report, rec) = h.run(project, jobs(2)).await;
    let flaky = suite(&report, "flaky");
    assert_eq!(flaky.status, SuiteStatus::Flaky, "{flaky:#?}");
    assert_eq!(flaky.attempts, 2);
    assert!(rec.events().contains(&"retry flaky 1".to_owned()));
    let hopeless = suite(&report, "hopeless");
    assert_eq!(
        (hopeless.status, hopeless.attempts),
        (SuiteStatus::Failed, 2)
    );
    assert_eq!(report.exit_code(), 1);

    // The same run without the hopeless suite exits 0: flaky counts as passed.
    let project = h.project_low("[[suite]]\nname = \"flaky\"\nretries = 1\nrun = \"echo y >> @OUT@/c2; test $(wc -l < @OUT@/c2) -ge 2\"\n");
    let (report, _) = h.run(project, jobs(1)).await;
    assert_eq!(suite(&report, "flaky").status, SuiteStatus::Flaky);
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_suite_process_tree() {
    let h = Harness::new();
    let project = h.project_low(
        r#"
[[suite]]
name = "slow"
timeout = "1s"
run = "sleep 300 & echo $! > @OUT@/pid; wait"
"#,
    );
    let (report, _) = h.run(project, jobs(1)).await;
    let slow = suite(&report, "slow");
    assert_eq!(slow.status, SuiteStatus::TimedOut, "{slow:#?}");
    assert_eq!(slow.exit_code, Some(124));
    let pid: u32 = std::fs::read_to_string(h.out().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "the backgrounded sleep {pid} survived");
    assert_eq!(report.exit_code(), 1);
    assert!(h.env_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_timeout_ends_running_suites_and_skips_the_rest() {
    let h = Harness::new();
    let project = h.project_low(
        r#"
[[suite]]
name = "long"
run = "sleep 300 & echo $! > @OUT@/pid; wait"

[[suite]]
name = "later"
depends_on = ["long"]
run = "true"
"#,
    );
    let options = RunOptions {
        timeout: Some(Duration::from_secs(1)),
        ..jobs(2)
    };
    let (report, _) = h.run(project, options).await;
    assert!(report.timed_out);
    assert_eq!(suite(&report, "long").status, SuiteStatus::TimedOut);
    assert_eq!(suite(&report, "later").status, SuiteStatus::Skipped);
    let pid: u32 = std::fs::read_to_string(h.out().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "the run's processes survived");
    assert!(h.env_names().is_empty(), "left behind: {:?}", h.env_names());
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_stops_running_suites_and_removes_their_environments() {
    let h = Harness::new();
    let project = h.project_low(
        r#"
[[suite]]
name = "long"
run = "sleep 300 & echo $! > @OUT@/pid; wait"
"#,
    );
    let run = ptest_runner::Run::new(project, &Selection::default()).unwrap();
    let pid_file = h.out().join("pid");
    // The shell creates the file before `echo` writes the pid: cancel once it is whole.
    let cancel = async move {
        while std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let report = run
        .execute(
            h.manager.clone(),
            jobs(1),
            std::sync::Arc::new(ptest_runner::Silent),
            cancel,
        )
        .await;
    assert!(report.cancelled);
    assert_eq!(suite(&report, "long").status, SuiteStatus::Cancelled);
    assert_eq!(report.exit_code(), 130);
    let pid: u32 = std::fs::read_to_string(h.out().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "the cancelled suite's sleep {pid} survived");
    assert!(h.env_names().is_empty(), "left behind: {:?}", h.env_names());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_get_their_index_and_count() {
    let h = Harness::new();
    let project = h.project_low(
        r#"
[[suite]]
name = "sharded"
parallel = 3
run = "touch @OUT@/shard-$PTEST_SHARD-of-$PTEST_SHARDS; touch mine-$PTEST_SHARD; test $(ls mine-* | wc -l) -eq 1"
"#,
    );
    let (report, _) = h.run(project, jobs(3)).await;
    assert_eq!(report.suites.len(), 3);
    for shard in 0..3 {
        let s = suite(&report, &format!("sharded[{shard}]"));
        assert_eq!(s.status, SuiteStatus::Passed, "{s:#?}");
        assert_eq!(s.shard, Some(shard));
        assert!(
            s.env_name
                .as_deref()
                .unwrap()
                .ends_with(&format!("-sharded-{shard}"))
        );
        assert!(h.out().join(format!("shard-{shard}-of-3")).is_file());
    }
}

const JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="demo">
  <testsuite name="demo" tests="4">
    <testcase classname="demo.T" name="test_one" time="0.01"/>
    <testcase classname="demo.T" name="test_two" time="0.02"/>
    <testcase classname="demo.T" name="test_skip"><skipped message="later"/></testcase>
    <testcase classname="demo.T" name="test_three" time="0.03"/>
  </testsuite>
</testsuites>
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junit_files_are_ingested_and_the_run_writes_valid_junit() {
    let h = Harness::new();
    h.file("fixtures/ok.xml", JUNIT);
    h.file(
        "fixtures/bad.xml",
        &JUNIT.replace(
            r#"name="test_two" time="0.02"/>"#,
            r#"name="test_two"><failure message="2 != 3">trace</failure></testcase>"#,
        ),
    );
    let project = h.project(
        r#"
[[suite]]
name = "good"
junit = "reports/junit.xml"
run = "mkdir -p reports && cp fixtures/ok.xml reports/junit.xml"

[[suite]]
name = "red"
junit = "out.xml"
run = "cp fixtures/bad.xml out.xml"

[[suite]]
name = "forgot"
junit = "never-written.xml"
run = "true"

[[suite]]
name = "plain"
run = "echo plain output"
"#,
    );
    let (report, _) = h.run(project, jobs(4)).await;
    let good = suite(&report, "good");
    assert_eq!(good.status, SuiteStatus::Passed, "{good:#?}");
    assert_eq!(good.test_cases.len(), 4);
    assert_eq!(
        good.test_cases
            .iter()
            .filter(|c| c.status == CaseStatus::Skipped)
            .count(),
        1
    );
    let red = suite(&report, "red");
    assert_eq!(red.status, SuiteStatus::Failed);
    assert!(
        red.reason
            .as_deref()
            .unwrap()
            .contains("1 test case(s) failed"),
        "{red:#?}"
    );
    // A JUnit file that was never written is a warning: the command's result stands.
    let forgot = suite(&report, "forgot");
    assert_eq!(forgot.status, SuiteStatus::Passed, "{forgot:#?}");
    assert_eq!(forgot.warnings.len(), 1, "{forgot:#?}");
    assert!(
        forgot.warnings[0].contains("never-written.xml"),
        "{forgot:#?}"
    );
    assert!(report.summary().contains("warning: forgot:"));

    let xml = junit::to_junit(&report);
    let cases = junit::read_cases(&xml).unwrap();
    // 4 + 4 ingested cases, one case each for the suites without JUnit.
    assert_eq!(cases.len(), 10, "{xml}");
    let failing: Vec<_> = cases
        .iter()
        .filter(|c| matches!(c.status, CaseStatus::Failed | CaseStatus::Error))
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failing, ["test_two"], "{xml}");
    assert_eq!(xml.matches("<testsuite ").count(), 4);

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["suites"][0]["status"], "passed");
    assert_eq!(json["suites"][0]["test_cases"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_names_select_suites_and_pull_in_dependencies() {
    let h = Harness::new();
    let project = h.project_low(
        r#"
[[suite]]
name = "prep"
run = "true"

[[suite]]
name = "unit"
tags = ["fast"]
depends_on = ["prep"]
run = "touch @OUT@/unit"

[[suite]]
name = "integration"
tags = ["slow"]
run = "touch @OUT@/integration"

[[suite]]
name = "smoke"
tags = ["fast", "slow"]
run = "touch @OUT@/smoke"
"#,
    );
    let plan = |sel: Selection| {
        ptest_runner::Run::new(project.clone(), &sel)
            .unwrap()
            .plan()
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
    };
    let fast = Selection {
        tags: vec!["fast".into()],
        ..Selection::default()
    };
    assert_eq!(plan(fast.clone()), ["prep", "unit", "smoke"]);
    let fast_not_slow = Selection {
        exclude_tags: vec!["slow".into()],
        ..fast.clone()
    };
    assert_eq!(plan(fast_not_slow.clone()), ["prep", "unit"]);
    assert_eq!(
        plan(Selection {
            names: vec!["integration".into()],
            ..Selection::default()
        }),
        ["integration"]
    );
    let listed = list_text(
        ptest_runner::Run::new(project.clone(), &fast)
            .unwrap()
            .plan(),
    );
    assert!(listed.contains("prep (dependency)"), "{listed}");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("smoke") && l.contains("fast,slow")),
        "{listed}"
    );
    let unknown = ptest_runner::Run::new(
        project.clone(),
        &Selection {
            names: vec!["nope".into()],
            ..Selection::default()
        },
    )
    .unwrap_err();
    assert!(
        unknown.to_string().contains("no suite named \"nope\""),
        "{unknown}"
    );

    let (report, _) = h.run_selected(project, &fast_not_slow, jobs(2)).await;
    assert_eq!(report.suites.len(), 2);
    assert!(h.out().join("unit").exists());
    assert!(!h.out().join("integration").exists() && !h.out().join("smoke").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_starts_nothing_after_a_failure() {
    let h = Harness::new();
    let project = h.project_low(
        r#"
[[suite]]
name = "first"
run = "exit 1"

[[suite]]
name = "second"
run = "touch @OUT@/second"
"#,
    );
    let options = RunOptions {
        fail_fast: true,
        ..jobs(1)
    };
    let (report, _) = h.run(project, options).await;
    assert_eq!(suite(&report, "first").status, SuiteStatus::Failed);
    let second = suite(&report, "second");
    assert_eq!(second.status, SuiteStatus::Skipped);
    assert!(second.reason.as_deref().unwrap().contains("fail-fast"));
    assert!(!h.out().join("second").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_environments_outlive_the_run_and_bind_writes_to_the_real_tree() {
    let h = Harness::new();
    let project = h.project(
        r#"
[env.kept]
keep = true

[env.real]
project = "bind"
security = "low" # the project directory is read-only to sandboxed suites

[[suite]]
name = "keeper"
env = "kept"
run = "echo hi > note"

[[suite]]
name = "binder"
env = "real"
run = "pwd > from-bind"
"#,
    );
    assert_eq!(project.templates["real"].project, Some(ProjectMode::Bind));
    let (report, _) = h.run(project, jobs(2)).await;
    assert!(report.success(), "{report:#?}");
    let keeper = suite(&report, "keeper");
    assert!(keeper.env_kept);
    let name = keeper.env_name.clone().unwrap();
    assert_eq!(h.env_names(), std::slice::from_ref(&name));
    let env = h.manager.get_environment(&name).unwrap();
    assert_eq!(env.spec.labels[RUN_LABEL], report.run_id);
    assert_eq!(
        std::fs::read_to_string(written(&env).join("note")).unwrap(),
        "hi\n"
    );
    assert_eq!(
        std::fs::read_to_string(h.project_dir().join("from-bind"))
            .unwrap()
            .trim(),
        h.project_dir().display().to_string()
    );
    h.manager
        .cleanup(&env, ptest_core::RemoveOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_that_cannot_be_made_is_an_error_with_its_kind() {
    let h = Harness::new();
    let project = h.project(
        r#"
[env.nopython]
python = "/nonexistent/python3"

[[suite]]
name = "needs-python"
env = "nopython"
run = "true"
"#,
    );
    let (report, _) = h.run(project, jobs(1)).await;
    let s = suite(&report, "needs-python");
    assert_eq!(s.status, SuiteStatus::Error, "{s:#?}");
    assert!(
        s.reason
            .as_deref()
            .unwrap()
            .contains("creating environment"),
        "{s:#?}"
    );
    assert_eq!(s.error_class, Some(ptest_runner::ErrorClass::Usage));
    assert_eq!(report.exit_code(), 2);
    assert!(h.env_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_policies_decide_when_each_environment_goes() {
    let h = Harness::new();
    // Each suite records which of the run's environments exist while it runs (at `low`, so
    // it can write to @OUT@ and read the home's state through `ptest`-free means: the roots).
    let project = h.project(&format!(
        r#"
[env.immediate]
security = "low"
cleanup = "immediate"

[env.shutdown]
security = "low"
cleanup = "on_shutdown"

[env.request]
security = "low"
cleanup = "on_request"

[env.later]
security = "low"
cleanup = "scheduled"
ttl = "1h"

[[suite]]
name = "first-immediate"
env = "immediate"
run = "true"

[[suite]]
name = "first-shutdown"
env = "shutdown"
run = "true"

[[suite]]
name = "observer"
env = "immediate"
depends_on = ["first-immediate", "first-shutdown"]
run = "ls {home}/envs > @OUT@/seen"

[[suite]]
name = "kept"
env = "request"
run = "true"

[[suite]]
name = "scheduled"
env = "later"
run = "true"
"#,
        home = h.manager.home().path().display()
    ));
    let (report, _) = h.run(project, jobs(1)).await;
    assert!(report.success(), "{report:#?}");
    // While `observer` ran, the on_shutdown environment was still there and the immediate
    // one was gone: 2 roots (observer's own and first-shutdown's).
    let seen = std::fs::read_to_string(h.out().join("seen")).unwrap();
    assert_eq!(seen.lines().count(), 2, "{seen}");
    // After the run only the kept ones are left, under their policies.
    let mut left = h.env_names();
    left.sort();
    let kept = |n: &str| suite(&report, n).env_name.clone().unwrap();
    assert_eq!(left, [kept("kept"), kept("scheduled")]);
    for (name, policy) in [
        ("kept", ptest_core::CleanupPolicy::OnRequest),
        ("scheduled", ptest_core::CleanupPolicy::Scheduled),
    ] {
        let env = h.manager.get_environment(&kept(name)).unwrap();
        assert_eq!(env.spec.cleanup, policy);
        assert!(suite(&report, name).env_kept);
        h.manager
            .cleanup(&env, ptest_core::RemoveOptions::default())
            .await
            .unwrap();
    }
    for name in ["first-immediate", "first-shutdown", "observer"] {
        assert!(!suite(&report, name).env_kept);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_failed_keeps_only_the_failed_suites_environment() {
    let h = Harness::new();
    let project = h.project(
        r#"
[[suite]]
name = "good"
run = "true"

[[suite]]
name = "bad"
run = "echo evidence > left-here; exit 1"
"#,
    );
    let options = RunOptions {
        keep_failed: true,
        ..jobs(2)
    };
    let (report, _) = h.run(project, options).await;
    let bad = suite(&report, "bad");
    assert_eq!(bad.status, SuiteStatus::Failed);
    assert!(bad.env_kept);
    assert!(!suite(&report, "good").env_kept);
    let name = bad.env_name.clone().unwrap();
    assert_eq!(h.env_names(), std::slice::from_ref(&name));
    assert!(
        report
            .summary()
            .contains(&format!("ptest env exec {name} -- sh")),
        "{}",
        report.summary()
    );
    let env = h.manager.get_environment(&name).unwrap();
    assert_eq!(env.spec.cleanup, ptest_core::CleanupPolicy::OnRequest);
    assert_eq!(
        std::fs::read_to_string(written(&env).join("left-here")).unwrap(),
        "evidence\n"
    );
    h.manager
        .cleanup(&env, ptest_core::RemoveOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_records_its_slot_times_and_resources() {
    let h = Harness::new();
    let project = h.project(
        r#"
[[suite]]
name = "work"
parallel = 3
run = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"
"#,
    );
    let (report, _) = h.run(project, jobs(2)).await;
    assert!(report.success(), "{report:#?}");
    assert_eq!(report.jobs, 2);
    for s in &report.suites {
        assert!(s.slot.unwrap() < 2, "{s:#?}");
        assert!(s.started_at.unwrap() <= s.ended_at.unwrap());
        let usage = s.resources.as_ref().expect("measured");
        assert!(usage.cpu_seconds.is_some(), "{usage:?}");
    }
}
