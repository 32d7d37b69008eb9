//! The virtualenv level through the CLI: venvs, packages, conflicts, reuse by hash. Packages
//! come from a local wheelhouse (no network) through `--no-index --find-links`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;
/// The Python crate's test support: its wheelhouse of demo packages.
#[path = "../../ptest-python/tests/support/mod.rs"]
mod wheels;

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use support::TestHome;

/// `ptest ARGS`, with `--no-index --find-links <wheelhouse>` added to commands that install.
fn ptest(t: &TestHome, args: &[&str]) -> assert_cmd::Command {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if matches!(args.get(1).map(String::as_str), Some("create" | "install")) {
        let house = wheels::wheelhouse().display().to_string();
        args.splice(
            2..2,
            ["--no-index".to_owned(), "--find-links".to_owned(), house],
        );
    }
    t.ptest(args)
}

fn stdout(cmd: &mut assert_cmd::Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

#[test]
fn packages_install_into_the_environment_python() {
    let t = TestHome::new();
    ptest(&t, &["env", "create", "py", "--package", "ptdemo-a==1.0"])
        .assert()
        .success();
    let env = &t.json(["env", "show", "py"])["environment"];
    assert_eq!(env["level"], "virtualenv");
    let root = env["root"].as_str().unwrap();
    let which = stdout(&mut ptest(
        &t,
        &[
            "env",
            "exec",
            "py",
            "--",
            "sh",
            "-c",
            "command -v python; echo $VIRTUAL_ENV",
        ],
    ));
    assert_eq!(which, format!("{root}/venv/bin/python\n{root}/venv\n"));
    let imported = stdout(&mut ptest(
        &t,
        &[
            "env",
            "exec",
            "py",
            "--",
            "python",
            "-c",
            "import ptdemo_a, ptdemo_b; print(ptdemo_a.VERSION, ptdemo_b.VERSION)",
        ],
    ));
    assert_eq!(imported, "1.0 2.1\n");

    let list = t.json(["pkg", "list", "py"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ptdemo-a", "ptdemo-b"]);
    assert_eq!(
        stdout(&mut ptest(&t, &["pkg", "freeze", "py"])),
        "ptdemo-a==1.0\nptdemo-b==2.1\n"
    );
    ptest(&t, &["pkg", "check", "py"]).assert().success();

    // The events say what was installed, with versions.
    let log = stdout(&mut t.ptest(["events", "--env", "py", "--json"]));
    assert!(
        log.contains("\"package_installing\"") && log.contains("\"package_installed\""),
        "{log}"
    );
    assert!(
        log.contains("\"ptdemo-b\"") && log.contains("\"2.1\""),
        "{log}"
    );
}

#[test]
fn check_spells_out_a_conflict_and_exits_1() {
    let t = TestHome::new();
    ptest(&t, &["env", "create", "broken", "-p", "ptdemo-a==1.0"])
        .assert()
        .success();
    ptest(
        &t,
        &["pkg", "install", "broken", "--no-deps", "ptdemo-b==1.0"],
    )
    .assert()
    .success()
    .stdout(contains("ptdemo-b 2.1 -> 1.0"));
    ptest(&t, &["pkg", "check", "broken"])
        .assert()
        .code(1)
        .stdout("ptdemo-a 1.0 has requirement ptdemo-b>=2.0, but you have ptdemo-b 1.0.\n");
    ptest(&t, &["pkg", "uninstall", "broken", "ptdemo-b"])
        .assert()
        .success();
    ptest(&t, &["pkg", "check", "broken"])
        .assert()
        .code(1)
        .stdout(contains("requires ptdemo-b, which is not installed"));
}

#[test]
fn conflicting_versions_live_side_by_side() {
    let t = TestHome::new();
    ptest(&t, &["env", "create", "old", "-p", "ptdemo-b==1.0"])
        .assert()
        .success();
    ptest(&t, &["env", "create", "new", "-p", "ptdemo-b==2.0"])
        .assert()
        .success();
    let version = |env: &str| {
        stdout(&mut ptest(
            &t,
            &[
                "env",
                "exec",
                env,
                "--",
                "python",
                "-c",
                "import ptdemo_b; print(ptdemo_b.VERSION)",
            ],
        ))
    };
    assert_eq!(version("old"), "1.0\n");
    assert_eq!(version("new"), "2.0\n");
}

#[test]
fn same_spec_is_cloned_from_a_template_and_says_why() {
    let t = TestHome::new();
    ptest(&t, &["env", "create", "first", "-p", "ptdemo-a==1.0"])
        .assert()
        .success();
    ptest(&t, &["env", "create", "second", "-p", "ptdemo-a==1.0"])
        .assert()
        .success();
    let second = &t.json(["env", "show", "second"])["environment"];
    assert!(
        second["details"]["reused_template"]["hardlinked"]
            .as_u64()
            .unwrap()
            > 0
    );
    let first = &t.json(["env", "show", "first"])["environment"];
    assert_eq!(
        first["details"]["spec_hash"],
        second["details"]["spec_hash"]
    );
    let shown = stdout(&mut t.ptest(["env", "show", "second"]));
    assert!(
        shown.contains("requirement:ptdemo-a = ptdemo-a==1.0") && shown.contains("reused"),
        "{shown}"
    );
    // The clone is a working venv of its own: changing it leaves the first alone.
    ptest(&t, &["pkg", "uninstall", "second", "ptdemo-b"])
        .assert()
        .success();
    let imported = stdout(&mut ptest(
        &t,
        &[
            "env",
            "exec",
            "first",
            "--",
            "python",
            "-c",
            "import ptdemo_b; print(ptdemo_b.VERSION)",
        ],
    ));
    assert_eq!(imported, "2.1\n");
    // A different spec gets a different hash, and the changed input is visible.
    ptest(
        &t,
        &[
            "env",
            "create",
            "third",
            "-p",
            "ptdemo-a==1.0",
            "-p",
            "ptdemo-b==2.0",
        ],
    )
    .assert()
    .success();
    let third = &t.json(["env", "show", "third"])["environment"];
    assert_ne!(
        third["details"]["spec_hash"]["digest"],
        first["details"]["spec_hash"]["digest"]
    );
    assert!(third["details"]["reused_template"].is_null());
}

#[test]
fn bad_python_inputs_are_clear_errors_and_leave_nothing() {
    let t = TestHome::new();
    ptest(&t, &["env", "create", "bad", "-p", "ptdemo-a>>=1"])
        .assert()
        .code(2)
        .stderr(contains("invalid requirement").and(contains("column 9")));
    ptest(&t, &["env", "create", "bad", "--python", "3.99"])
        .assert()
        .code(2)
        .stderr(contains("no Python interpreter matches `3.99`"));
    ptest(&t, &["env", "create", "bad", "-p", "ptdemo-nonexistent"])
        .assert()
        .code(2)
        .stderr(contains("ptdemo-nonexistent"));
    ptest(&t, &["env", "create", "bad", "-r", "missing.txt"])
        .assert()
        .code(2)
        .stderr(contains("missing.txt").and(contains("does not exist")));
    assert!(t.names().is_empty());
    assert_eq!(std::fs::read_dir(t.home().join("envs")).unwrap().count(), 0);

    t.create("plain");
    t.ptest(["pkg", "list", "plain"])
        .assert()
        .code(2)
        .stderr(contains("packages need --level virtualenv"));
}
