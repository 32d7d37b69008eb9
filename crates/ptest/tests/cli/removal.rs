//! Issue 15, item 1: removal never crosses into another filesystem, and a root is never
//! placed where removing another would delete it.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;
use predicates::str::contains;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

#[test]
fn rm_detaches_a_bind_mount_in_the_root_and_never_empties_its_source() {
    let t = TestHome::new();
    if !crate::support::runnable((!is_root()).then(|| "bind mounts need root".to_owned())) {
        return;
    }
    let data = t.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("precious"), "years of work").unwrap();
    for security in ["low", "medium"] {
        let env = t.json(["env", "create", "e", "--security", security]);
        let target = format!("{}/workspace/d", env["root"].as_str().unwrap());
        std::fs::create_dir(&target).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["--bind", data.to_str().unwrap(), &target])
            .status()
            .unwrap();
        assert!(mounted.success());
        t.ptest(["env", "rm", "e"]).assert().success();
        assert_eq!(
            std::fs::read_to_string(data.join("precious")).unwrap(),
            "years of work",
            "at {security}"
        );
        assert!(t.names().is_empty());
        assert!(!std::path::Path::new(&target).exists());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&target), "the bind mount stayed");
    }
}

#[test]
fn a_root_inside_another_root_or_ptests_home_is_refused() {
    let t = TestHome::new();
    let outer = t.json(["env", "create", "outer", "--security", "low"]);
    let inner = format!("{}/workspace/inner", outer["root"].as_str().unwrap());
    t.ptest(["env", "create", "inner", "--path", &inner])
        .assert()
        .code(2)
        .stderr(contains("inside the root of environment outer"));
    let in_home = t.home().join("cache/mine");
    t.ptest(["env", "create", "h", "--path", in_home.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(contains("inside ptest's home"));
    assert_eq!(t.names(), vec!["outer".to_owned()]);
    assert!(!std::path::Path::new(&inner).exists());
}

/// Issue 23 (row "the marker replaced by a FIFO or a sparse file"): nothing hangs or reads
/// gigabytes; validate says the marker is wrong, and the environment can still be removed.
/// At `low`, the only level whose command can replace the marker (a sandbox shows it
/// read-only: `planted.rs` tries that).
#[test]
fn a_marker_replaced_by_a_fifo_or_a_sparse_file_hangs_nothing() {
    let t = TestHome::new();
    let security = "low";
    for (name, plant) in [
        (
            "fifo",
            "rm $PTEST_ENV_ROOT/.ptest-env && mkfifo $PTEST_ENV_ROOT/.ptest-env",
        ),
        (
            "sparse",
            "rm $PTEST_ENV_ROOT/.ptest-env && truncate -s 10G $PTEST_ENV_ROOT/.ptest-env",
        ),
    ] {
        t.ptest(["env", "create", name, "--security", security])
            .assert()
            .success();
        t.ptest(["env", "exec", name, "--", "sh", "-c", plant])
            .assert()
            .success();
        let out = t
            .ptest(["env", "validate", "--json", name])
            .timeout(std::time::Duration::from_secs(30))
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["ok"], false, "{report}");
        assert!(
            report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["check"] == "marker" && f["ok"] == false),
            "{report}"
        );
        t.ptest(["env", "rm", name])
            .timeout(std::time::Duration::from_secs(30))
            .assert()
            .success();
    }
    assert!(t.names().is_empty());
}
