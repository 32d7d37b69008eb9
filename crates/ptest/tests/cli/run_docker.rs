//! Issue 20, deliverable 3 (its first half): `ptest run` with a container template — `image`
//! or `build` in `[env.NAME]` (implying `level = "docker"`), the project copied into the
//! container's workspace.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;
use predicates::str::contains;

#[test]
fn a_template_with_build_runs_its_suite_in_a_container() {
    let t = TestHome::new();
    let dir = t.dir.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    let Some(context) = ptest_testkit::busybox::context(&dir) else {
        return;
    };
    assert_eq!(context, dir.join("image"));
    std::fs::write(dir.join("kept.txt"), "project file\n").unwrap();
    std::fs::write(
        dir.join("ptest.toml"),
        "[env.box]\nbuild = \"image\"\n\n[[suite]]\nname = \"inbox\"\nenv = \"box\"\n\
         run = \"cat kept.txt && test -x /bin/busybox && test \\\"$PWD\\\" = /workspace\"\n",
    )
    .unwrap();
    let out = t
        .ptest(["run", "--project", dir.to_str().unwrap(), "--json"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let suite = &report["suites"][0];
    assert_eq!(suite["status"], "passed", "{report}");
    assert_eq!(suite["stdout_tail"], "project file\n", "{report}");
    assert!(t.names().is_empty());
}

#[test]
fn image_with_another_level_is_refused_where_it_is_written() {
    let t = TestHome::new();
    let dir = t.dir.path().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ptest.toml"),
        "[env.box]\nlevel = \"basic\"\nimage = \"busybox:1\"\n\n[[suite]]\nname = \"s\"\nenv = \"box\"\nrun = \"true\"\n",
    )
    .unwrap();
    t.ptest(["run", "--project", dir.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(contains("settings of another level"))
        .stderr(contains("ptest.toml:1"));
}
