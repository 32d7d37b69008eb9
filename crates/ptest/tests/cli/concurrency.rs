//! Many `ptest` processes at once against one home.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::process::{Command, Stdio};

use crate::support::TestHome;

#[test]
fn parallel_creates_respect_max_environments() {
    let t = TestHome::new();
    let children: Vec<_> = (0..20)
        .map(|i| {
            Command::new(assert_cmd::cargo::cargo_bin("ptest"))
                .env("PTEST_HOME", t.home())
                .env("PTEST_MAX_ENVIRONMENTS", "10")
                .env("NO_COLOR", "1")
                .args(["env", "create", &format!("p{i:02}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for child in children {
        let out = child.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => ok += 1,
            Some(3) => {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains("limit reached") && err.contains("max_environments is 10"),
                    "{err}"
                );
                refused += 1;
            }
            other => panic!(
                "unexpected exit {other:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
    assert_eq!((ok, refused), (10, 10));
    assert_eq!(t.names().len(), 10);
    let roots = std::fs::read_dir(t.home().join("envs")).unwrap().count();
    assert_eq!(roots, 10, "every refused create left no root behind");
}

#[test]
fn parallel_exec_and_rm_in_many_environments() {
    let t = TestHome::new();
    for i in 0..8 {
        t.create(&format!("w{i}"));
    }
    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new(assert_cmd::cargo::cargo_bin("ptest"))
                .env("PTEST_HOME", t.home())
                .args([
                    "env",
                    "exec",
                    &format!("w{i}"),
                    "--",
                    "sh",
                    "-c",
                    "echo $PTEST_ENV_NAME > mine",
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    for env in t.json(["env", "list"]).as_array().unwrap() {
        let root = env["root"].as_str().unwrap();
        let mine = std::fs::read_to_string(format!("{root}/workspace/mine")).unwrap();
        assert_eq!(mine.trim(), env["name"].as_str().unwrap());
    }
    t.ptest(["env", "rm", "--all"]).assert().success();
    assert!(t.names().is_empty());
}
