//! Every bad input gets a clear error, the documented exit code, and loses nothing.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::fs;

use crate::support::TestHome;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

#[test]
fn invalid_names_are_usage_errors() {
    let t = TestHome::new();
    for (name, why) in [
        ("..", "must start with"),
        ("/etc", "not a path"),
        ("a/../b", "not a path"),
        ("Demo", "uppercase"),
        ("-x", "must start with"),
        ("a b", "character other than"),
    ] {
        t.ptest(["env", "create", "--", name])
            .assert()
            .code(2)
            .stderr(contains(why).and(contains("[a-z0-9][a-z0-9_.-]")));
    }
    let long = "a".repeat(64);
    t.ptest(["env", "create", &long])
        .assert()
        .code(2)
        .stderr(contains("63"));
    assert!(t.names().is_empty());
}

#[test]
fn unknown_environment_is_exit_3() {
    let t = TestHome::new();
    for args in [
        vec!["env", "show", "ghost"],
        vec!["env", "exec", "ghost", "--", "true"],
        vec!["env", "rm", "ghost"],
        vec!["env", "stats", "ghost"],
        vec!["env", "validate", "ghost"],
    ] {
        t.ptest(&args)
            .assert()
            .code(3)
            .stderr(contains("no environment named \"ghost\""));
    }
}

#[test]
fn duplicate_name_is_refused_and_the_first_is_kept() {
    let t = TestHome::new();
    let first = t.create("dup");
    t.ptest(["env", "create", "dup"])
        .assert()
        .code(3)
        .stderr(contains("already exists"));
    let envs = t.json(["env", "list"]);
    assert_eq!(envs.as_array().unwrap().len(), 1);
    assert_eq!(envs[0]["id"], first["id"]);
}

#[test]
fn foreign_non_empty_path_is_refused_and_untouched() {
    let t = TestHome::new();
    let dir = t.dir.path().join("someone-elses");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("thesis.tex"), "years of work").unwrap();
    t.ptest(["env", "create", "x", "--path", dir.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(contains("non-empty directory not made by ptest"));
    assert_eq!(
        fs::read_to_string(dir.join("thesis.tex")).unwrap(),
        "years of work"
    );
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    assert!(t.names().is_empty());

    let link = t.dir.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    t.ptest(["env", "create", "y", "--path", link.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(contains("symlink"));
}

#[test]
fn unknown_level_and_values_are_usage_errors() {
    let t = TestHome::new();
    t.ptest(["env", "create", "x", "--level", "pod"])
        .assert()
        .code(2)
        .stderr(contains("basic, virtualenv, docker, kubernetes"));
    t.ptest(["env", "create", "x", "--cleanup", "sometimes"])
        .assert()
        .code(2);
    t.ptest(["env", "create", "x", "--ttl", "soon"])
        .assert()
        .code(2)
        .stderr(contains("invalid duration"));
    t.ptest(["env", "create", "x", "--label", "novalue"])
        .assert()
        .code(2)
        .stderr(contains("KEY=VALUE"));
    // The kubernetes level says what it needs: an image, then a cluster (where it looked).
    t.ptest(["env", "create", "x", "--level", "kubernetes"])
        .assert()
        .code(2)
        .stderr(contains("needs an image"));
    t.ptest([
        "env",
        "create",
        "x",
        "--namespace",
        "ci",
        "--image",
        "busybox:1.36",
    ])
    .assert()
    .code(2)
    .stderr(contains("no kubeconfig").and(contains(".kube/config")));
    t.ptest([
        "env",
        "create",
        "x",
        "--level",
        "docker",
        "--namespace",
        "ci",
    ])
    .assert()
    .code(2)
    .stderr(contains("settings of the kubernetes level"));
    // A level whose engine shows nothing beforehand says so.
    t.ptest(["env", "create", "x", "--image", "busybox:1.36", "--dry-run"])
        .assert()
        .code(2)
        .stderr(contains("--dry-run: the docker engine has nothing to show"));
    assert!(t.names().is_empty());
}

#[test]
fn a_kubernetes_dry_run_prints_the_manifests_and_records_nothing() {
    let t = TestHome::new();
    let out = t
        .ptest([
            "env",
            "create",
            "web",
            "--level",
            "kubernetes",
            "--image",
            "busybox:1.36",
            "--namespace",
            "ci",
            "--memory",
            "64M",
            "--network",
            "loopback",
            "--dry-run",
            "-o",
            "yaml",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let yaml = String::from_utf8(out).unwrap();
    assert!(yaml.starts_with("apiVersion: v1\nkind: Pod\n"), "{yaml}");
    assert!(yaml.contains("  name: ptest-web-"), "{yaml}");
    assert!(yaml.contains("  namespace: ci\n"), "{yaml}");
    assert!(yaml.contains("memory: \"67108864\""), "{yaml}");
    assert!(yaml.contains("kind: NetworkPolicy"), "{yaml}");
    assert!(t.names().is_empty());
    // Only yaml, and only with --dry-run.
    t.ptest([
        "env",
        "create",
        "web",
        "--level",
        "kubernetes",
        "-o",
        "json",
        "--dry-run",
    ])
    .assert()
    .code(2);
    t.ptest([
        "env",
        "create",
        "web",
        "--level",
        "kubernetes",
        "-o",
        "yaml",
    ])
    .assert()
    .code(2);
}

#[test]
fn command_not_found_is_a_clear_error() {
    let t = TestHome::new();
    t.create("nf");
    t.ptest(["env", "exec", "nf", "--", "no-such-program-xyz"])
        .assert()
        .code(2)
        .stderr(contains("no-such-program-xyz").and(contains("command not found")));
}

#[test]
fn out_of_range_limits_are_refused_at_parse_time_with_the_range() {
    let t = TestHome::new();
    for (flag, value, says) in [
        ("--cpus", "NaN", "greater than 0 and at most 1024"),
        ("--cpus", "inf", "greater than 0 and at most 1024"),
        ("--cpus", "0", "greater than 0"),
        ("--cpus", "-1", "greater than 0"),
        ("--pids", "0", "from 1 to 4194304"),
        ("--pids", "99999999", "from 1 to 4194304"),
        ("--memory", "1", "at least 4M"),
        ("--memory", "0", "at least 4M"),
        ("--disk", "0", "at least 1M"),
        ("--disk", "100K", "at least 1M"),
        ("--nofile", "0", "from 16 to 1048576"),
        ("--files", "0", "at least 1"),
    ] {
        t.ptest(["env", "create", "x", &format!("{flag}={value}")])
            .assert()
            .code(2)
            .stderr(contains(says).and(contains(flag)));
    }
    assert!(t.names().is_empty(), "nothing was made");
    for image in ["Redis:7", "redis:", "re dis", "host:99999/app"] {
        t.ptest(["env", "create", "x", "--image", image])
            .assert()
            .code(2)
            .stderr(contains("invalid image reference"));
    }
    // The same ranges in ptest.toml, with file, line and column.
    std::fs::write(
        t.cwd().join("ptest.toml"),
        "[env.box]\nlimits = { memory = \"64M\", pids = 0 }\n\n[[suite]]\nname = \"s\"\nenv = \"box\"\nrun = \"true\"\n",
    )
    .unwrap();
    t.ptest(["run", "--list"])
        .assert()
        .code(2)
        .stderr(contains("ptest.toml:2:").and(contains("from 1 to 4194304")));
    std::fs::write(
        t.cwd().join("ptest.toml"),
        "[env.box]\nlimits = { cpus = nan }\n\n[[suite]]\nname = \"s\"\nenv = \"box\"\nrun = \"true\"\n",
    )
    .unwrap();
    t.ptest(["config", "validate"])
        .assert()
        .code(2)
        .stderr(contains("ptest.toml:2:").and(contains("greater than 0")));
}

/// A `ptest run` template at a level whose workspace is not on this host (a pod) loads: the
/// project is copied in, and a suite's `junit` report copied out. What shares that workspace
/// on this host (services, `project = "bind"`) is refused where the template is written,
/// before anything is made.
#[test]
fn a_run_template_whose_workspace_is_elsewhere_loads_and_refuses_what_needs_it_here() {
    let t = TestHome::new();
    let dir = t.dir.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ptest.toml");
    let template = "[env.pods]\nlevel = \"kubernetes\"\nimage = \"busybox:1.36\"\n";
    let suite = "\n[[suite]]\nname = \"s\"\nenv = \"pods\"\nrun = \"true\"\n";
    std::fs::write(&file, format!("{template}{suite}")).unwrap();
    t.ptest(["config", "validate", file.to_str().unwrap()])
        .assert()
        .success();
    // The report is copied out of the pod after the suite's command.
    std::fs::write(&file, format!("{template}{suite}junit = \"report.xml\"\n")).unwrap();
    t.ptest(["config", "validate", file.to_str().unwrap()])
        .assert()
        .success();
    let refused = [
        (
            format!("{template}{suite}[[suite.services]]\nname = \"db\"\nrun = \"sleep 60\"\n"),
            "suite \"s\" has services",
        ),
        (
            format!("{template}project = \"bind\"\n{suite}"),
            "project = \"bind\"",
        ),
    ];
    for (text, why) in refused {
        std::fs::write(&file, text).unwrap();
        t.ptest(["run", "--project", dir.to_str().unwrap()])
            .assert()
            .code(2)
            .stderr(contains(why))
            .stderr(contains("workspace is not on this host"))
            .stderr(contains("ptest.toml:1"));
    }
    assert!(t.names().is_empty());
}
