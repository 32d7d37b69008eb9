//! The virtualenv level through the CLI: venvs, packages, conflicts, reuse by hash. Packages
//! come from a local wheelhouse (no network) through `--no-index --find-links`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

/// `ptest ARGS`, with `--no-index --find-links <wheelhouse>` added to commands that install.
fn ptest(t: &TestHome, args: &[&str]) -> assert_cmd::Command {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if matches!(args.get(1).map(String::as_str), Some("create" | "install")) {
        let house = ptest_testkit::wheels::wheelhouse().display().to_string();
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
        second["details"]["reused_template"]["copied"]
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
    // Its scripts name its own python, not the template's or the first environment's.
    let script = stdout(&mut t.ptest(["env", "exec", "second", "--", "ptdemo-a"]));
    assert_eq!(script, "ptdemo_a 1.0\n");
    let activated = stdout(&mut t.ptest([
        "env",
        "exec",
        "second",
        "--",
        "sh",
        "-c",
        ". \"$VIRTUAL_ENV/bin/activate\" && echo \"$VIRTUAL_ENV\"",
    ]));
    assert_eq!(
        activated,
        format!("{}/venv\n", second["root"].as_str().unwrap())
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
    // A new spec is installed into a clone of the interpreter's empty venv, which the first
    // environment built with the installer and kept as a template.
    assert!(first["details"]["venv_from_template"].is_null());
    assert!(
        third["details"]["venv_from_template"].is_string(),
        "{third}"
    );
    let imported = stdout(&mut ptest(
        &t,
        &[
            "env",
            "exec",
            "third",
            "--",
            "sh",
            "-c",
            "python -c 'import ptdemo_b; print(ptdemo_b.VERSION)' && ptdemo-a",
        ],
    ));
    assert_eq!(imported, "2.0\nptdemo_a 1.0\n");
}

/// What an interpreter says about itself is kept per binary: after the first environment,
/// creating another with the same Python starts no Python at all (probe cached, venv cloned).
#[test]
fn a_module_poisoned_in_one_environment_reaches_no_other() {
    // Issue 23: a command appending to its own installed module must change neither the
    // template nor the installer's cache, so later environments import the clean one.
    let t = TestHome::new();
    ptest(&t, &["env", "create", "first", "-p", "ptdemo-a==1.0"])
        .assert()
        .success();
    let poison = "import ptdemo_a, pathlib; \
                  f = pathlib.Path(ptdemo_a.__file__); \
                  f.write_text(f.read_text() + 'raise SystemExit(\"poisoned\")\\n')";
    ptest(&t, &["env", "exec", "first", "--", "python", "-c", poison])
        .assert()
        .success();
    ptest(
        &t,
        &[
            "env",
            "exec",
            "first",
            "--",
            "python",
            "-c",
            "import ptdemo_a",
        ],
    )
    .assert()
    .failure();
    let import = ["--", "python", "-c", "import ptdemo_a; print('clean')"];
    // From the template (same spec) and from the installer's cache (a new spec).
    for (name, spec) in [("second", "ptdemo-a==1.0"), ("third", "ptdemo-a>=1.0,<2")] {
        ptest(&t, &["env", "create", name, "-p", spec])
            .assert()
            .success();
        let mut args = vec!["env", "exec", name];
        args.extend(import);
        assert_eq!(stdout(&mut ptest(&t, &args)), "clean\n", "{name}");
    }
}

#[test]
fn removing_an_environment_teaches_its_template_the_bytecode_it_used() {
    // uv compiles nothing at install: what the first environment's command imported is
    // compiled in the template when it is removed, so the next clone imports it compiled.
    let t = TestHome::new();
    ptest(&t, &["env", "create", "first", "-p", "ptdemo-a==1.0"])
        .assert()
        .success();
    ptest(
        &t,
        &[
            "env",
            "exec",
            "first",
            "--",
            "python",
            "-c",
            "import ptdemo_a",
        ],
    )
    .env_remove("PYTHONDONTWRITEBYTECODE")
    .assert()
    .success();
    ptest(&t, &["env", "rm", "first"]).assert().success();
    ptest(&t, &["env", "create", "second", "-p", "ptdemo-a==1.0"])
        .assert()
        .success();
    let verbose = [
        "env",
        "exec",
        "second",
        "--",
        "python",
        "-v",
        "-c",
        "import ptdemo_a",
    ];
    let output = ptest(&t, &verbose)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("# code object from")
                && l.contains("ptdemo_a/__pycache__/__init__.")),
        "ptdemo_a was compiled again, not loaded from the template's bytecode:\n{stderr}"
    );
}

#[test]
fn a_second_environment_starts_no_python_to_find_its_interpreter() {
    let python = match ptest_python::Interpreter::find(&ptest_python::PythonRequest::Default) {
        Ok(python) => python,
        Err(e) => {
            ptest_testkit::skip::<()>(format!("no Python 3 interpreter: {e}"));
            return;
        }
    };
    let t = TestHome::new();
    let log = t.dir.path().join("starts.log");
    let pip = ptest_python::Installer::pip(&t.dir.path().join("pip-cache"));
    let base = ptest_python::Venv::create(&t.dir.path().join("base"), &python, &pip).unwrap();
    ptest_testkit::python::log_starts(base.site_packages(), &log);
    let starts = || ptest_testkit::python::starts(&log);
    let python_arg = base.python().display().to_string();
    let create = |name: &str| {
        let args = [
            "env",
            "create",
            name,
            "--level",
            "virtualenv",
            "--python",
            &python_arg,
        ];
        ptest(&t, &args).assert().success();
    };

    create("one");
    let after_first = starts();
    assert!(
        after_first >= 1,
        "the first environment asks the interpreter"
    );
    create("two");
    assert_eq!(
        starts(),
        after_first,
        "the second environment started Python"
    );
    let two = &t.json(["env", "show", "two"])["environment"];
    assert_eq!(
        two["details"]["python"]["path"],
        python.path.display().to_string()
    );
    assert!(
        two["details"]["reused_template"]["copied"]
            .as_u64()
            .unwrap()
            > 0
    );
    let version = stdout(&mut t.ptest([
        "env",
        "exec",
        "two",
        "--",
        "python",
        "-c",
        "import sys; print(sys.version.split()[0])",
    ]));
    assert_eq!(version.trim(), python.version.to_string());
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

/// The seed's acceptance scenario, against real PyPI: two versions of requests side by side,
/// neither visible to the host's interpreter, and the tree of its dependencies.
#[test]
fn two_requests_versions_from_pypi_side_by_side() {
    let t = TestHome::new();
    t.ptest(["env", "create", "old", "-p", "requests==2.25.0"])
        .assert()
        .success();
    t.ptest(["env", "create", "new", "-p", "requests==2.28.0"])
        .assert()
        .success();
    let version = |env: &str| {
        stdout(&mut t.ptest([
            "env",
            "exec",
            env,
            "--",
            "python",
            "-c",
            "import requests; print(requests.__version__)",
        ]))
    };
    assert_eq!(version("old"), "2.25.0\n");
    assert_eq!(version("new"), "2.28.0\n");
    // The host's interpreter does not see them: it has no requests, or its own elsewhere.
    let host = std::process::Command::new("python3")
        .args(["-c", "import requests; print(requests.__file__)"])
        .output()
        .unwrap();
    let host_file = String::from_utf8_lossy(&host.stdout).into_owned();
    assert!(
        !host_file.contains(t.home().to_str().unwrap()),
        "{host_file}"
    );
    let where_ = stdout(&mut t.ptest([
        "env",
        "exec",
        "old",
        "--",
        "python",
        "-c",
        "import requests; print(requests.__file__)",
    ]));
    let root = t.json(["env", "show", "old"])["environment"]["root"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(where_.starts_with(&format!("{root}/venv/")), "{where_}");

    let tree = stdout(&mut t.ptest(["pkg", "tree", "old", "requests"]));
    for dep in ["urllib3", "idna", "certifi", "chardet"] {
        assert!(tree.contains(dep), "{dep} missing from\n{tree}");
    }
    let tree = stdout(&mut t.ptest(["pkg", "tree", "new", "requests"]));
    assert!(tree.contains("charset-normalizer"), "{tree}");
    let freeze = stdout(&mut t.ptest(["pkg", "freeze", "old"]));
    let urllib3 = freeze.lines().find(|l| l.starts_with("urllib3==")).unwrap();
    assert!(
        tree.contains("urllib3") && freeze.contains("requests==2.25.0"),
        "{freeze}"
    );
    assert!(urllib3.starts_with("urllib3==1."), "{urllib3}");
}

#[test]
fn ten_environments_created_at_once_all_end_active() {
    let t = TestHome::new();
    let house = ptest_testkit::wheels::wheelhouse().display().to_string();
    let children: Vec<_> = (0..10)
        .map(|i| {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("ptest"))
                .env("PTEST_HOME", t.home())
                .args([
                    "env",
                    "create",
                    &format!("v{i}"),
                    "--no-index",
                    "--find-links",
                    &house,
                    "-p",
                    "ptdemo-a==1.0",
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let envs = t.json(["env", "list"]);
    let envs = envs.as_array().unwrap();
    assert_eq!(envs.len(), 10);
    assert!(envs.iter().all(|e| e["status"] == "active"));
    for i in [0, 9] {
        ptest(
            &t,
            &[
                "env",
                "exec",
                &format!("v{i}"),
                "--",
                "python",
                "-c",
                "import ptdemo_a",
            ],
        )
        .assert()
        .success();
    }
}

#[test]
fn pip_is_the_fallback_when_uv_is_not_on_path() {
    let t = TestHome::new();
    // PATH without uv's directory.
    let path: Vec<String> = std::env::var("PATH")
        .unwrap()
        .split(':')
        .filter(|d| !std::path::Path::new(d).join("uv").exists())
        .map(str::to_owned)
        .collect();
    let house = ptest_testkit::wheels::wheelhouse().display().to_string();
    t.ptest([
        "env",
        "create",
        "nouv",
        "--no-index",
        "--find-links",
        &house,
        "-p",
        "ptdemo-a==1.0",
    ])
    .env("PATH", path.join(":"))
    .assert()
    .success();
    let env = &t.json(["env", "show", "nouv"])["environment"];
    assert_eq!(env["details"]["installer"], "pip");
    ptest(
        &t,
        &[
            "env",
            "exec",
            "nouv",
            "--",
            "python",
            "-c",
            "import ptdemo_a, ptdemo_b",
        ],
    )
    .assert()
    .success();
}

#[test]
fn a_failed_install_leaves_the_environment_as_it_was() {
    let t = TestHome::new();
    ptest(&t, &["env", "create", "steady", "-p", "ptdemo-a==1.0"])
        .assert()
        .success();
    let before = stdout(&mut t.ptest(["pkg", "freeze", "steady"]));
    ptest(
        &t,
        &[
            "pkg",
            "install",
            "steady",
            "ptdemo-b==2.0",
            "ptdemo-nonexistent",
        ],
    )
    .assert()
    .code(2)
    .stderr(contains("ptdemo-nonexistent"));
    assert_eq!(stdout(&mut t.ptest(["pkg", "freeze", "steady"])), before);
    ptest(&t, &["env", "exec", "steady", "--", "ptdemo-a"])
        .assert()
        .success();
    t.ptest(["pkg", "uninstall", "steady", "ptdemo-c"])
        .assert()
        .code(3)
        .stderr(contains("not installed"));
    assert_eq!(stdout(&mut t.ptest(["pkg", "freeze", "steady"])), before);
    // Offline installs use only local wheels (and uv's cache).
    let house = ptest_testkit::wheels::wheelhouse().display().to_string();
    t.ptest([
        "pkg",
        "install",
        "steady",
        "--offline",
        "--find-links",
        &house,
        "ptdemo-c==1.0",
    ])
    .assert()
    .success();
}

/// Every entry under `dir`: path, what it is (a directory, a link and its target, or a file's
/// size and a hash of its contents) and a file's inode.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String, u64)> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(here) = pending.pop() {
        for entry in std::fs::read_dir(&here).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                pending.push(path.clone());
                "dir".to_owned()
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut hasher);
                format!("{} bytes, hash {:x}", bytes.len(), hasher.finish())
            };
            let ino = if meta.is_file() { meta.ino() } else { 0 };
            out.push((path.strip_prefix(dir).unwrap().to_owned(), what, ino));
        }
    }
    out.sort();
    out
}

/// uv is not atomic: here it removes ptdemo-b 2.1, then cannot create `ptdemo_clash/` where a
/// file of that name is in the way. ptest puts the venv back file for file (same entries,
/// contents and inodes) and shows uv's error.
#[test]
fn an_install_failing_half_way_is_rolled_back_file_for_file() {
    let t = TestHome::new();
    ptest(&t, &["env", "create", "half", "-p", "ptdemo-a==1.0"])
        .assert()
        .success();
    let root = t.json(["env", "show", "half"])["environment"]["root"]
        .as_str()
        .unwrap()
        .to_owned();
    let venv = ptest_python::Venv::open(&std::path::Path::new(&root).join("venv")).unwrap();
    std::fs::write(venv.site_packages().join("ptdemo_clash"), "in the way\n").unwrap();
    let before = snapshot(venv.root());
    let freeze = stdout(&mut t.ptest(["pkg", "freeze", "half"]));

    ptest(
        &t,
        &[
            "pkg",
            "install",
            "half",
            "--no-deps",
            "ptdemo-b==1.0",
            "ptdemo-clash==1.0",
        ],
    )
    .assert()
    .code(2)
    .stderr(contains("ptdemo_clash"));
    assert_eq!(snapshot(venv.root()), before);
    assert_eq!(stdout(&mut t.ptest(["pkg", "freeze", "half"])), freeze);
    ptest(&t, &["pkg", "check", "half"]).assert().success();
    ptest(&t, &["env", "exec", "half", "--", "ptdemo-a"])
        .assert()
        .success()
        .stdout("ptdemo_a 1.0\n");
    let saved = std::fs::read_dir(&root).unwrap();
    let left: Vec<_> = saved
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".venv-saved"))
        .collect();
    assert!(left.is_empty(), "backups left behind: {left:?}");
}

/// The venv's python links to a base interpreter the sandbox may hide (at `high` only system
/// directories are shown): it is bound in at every level, so `python` runs and imports
/// what the environment installed.
#[test]
fn the_environment_python_runs_at_every_security_level() {
    let t = TestHome::new();
    let missing = crate::support::missing_features(&t, &["namespaces", "cgroups", "strict"]);
    if !crate::support::runnable(
        (!missing.is_empty()).then(|| format!("security levels need: {}", missing.join(", "))),
    ) {
        return;
    }
    for level in ["low", "medium", "high", "strict"] {
        let name = format!("py-{level}");
        ptest(
            &t,
            &[
                "env",
                "create",
                &name,
                "--security",
                level,
                "--package",
                "ptdemo-a==1.0",
            ],
        )
        .assert()
        .success();
        let out = stdout(&mut ptest(
            &t,
            &[
                "env",
                "exec",
                &name,
                "--",
                "python",
                "-c",
                "import ptdemo_a, sys; print(sys.prefix == sys.base_prefix)",
            ],
        ));
        assert_eq!(out, "False\n", "at {level}");
    }
}

/// An install that names only exact pins is fetched once: the same request later takes the
/// wheels ptest kept, and starts no pip (here its package source is gone by then).
#[test]
fn an_exactly_pinned_install_is_fetched_once() {
    let t = TestHome::new();
    let house = t.dir.path().join("house");
    std::fs::create_dir_all(&house).unwrap();
    for wheel in std::fs::read_dir(ptest_testkit::wheels::wheelhouse()).unwrap() {
        let wheel = wheel.unwrap().path();
        std::fs::copy(&wheel, house.join(wheel.file_name().unwrap())).unwrap();
    }
    let house_arg = house.display().to_string();
    let install = |env: &str| {
        t.ptest([
            "pkg",
            "install",
            env,
            "--no-index",
            "--find-links",
            &house_arg,
            "ptdemo-a==1.0",
        ])
        .assert()
    };
    for env in ["first", "second"] {
        t.ptest(["env", "create", env, "--level", "virtualenv"])
            .assert()
            .success();
    }
    install("first").success();
    std::fs::remove_dir_all(&house).unwrap();
    install("second").success();
    assert_eq!(
        stdout(&mut t.ptest(["pkg", "freeze", "second"])),
        "ptdemo-a==1.0\nptdemo-b==2.1\n"
    );
}
