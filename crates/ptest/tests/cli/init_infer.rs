//! `ptest init` on a project that already says how it is tested (tox, pyproject, nox): the
//! file it writes runs the same tests, and it says what it inferred and what it could not.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;
use predicates::prelude::*;
use predicates::str::contains;

#[test]
fn a_tox_project_runs_under_ptest_init_as_it_does_under_tox() {
    let t = TestHome::new();
    let files = [
        (
            "tox.ini",
            "[tox]\nenvlist = py\n\n[testenv]\nskip_install = true\ndeps = pytest\n\
             setenv =\n    GREETING = hello\n\
             commands = python -m pytest -q -p no:cacheprovider {posargs}\n",
        ),
        (
            "test_it.py",
            "import os\n\ndef test_foo():\n    assert os.environ['GREETING'] == 'hello'\n\n\
             def test_bar():\n    pass\n",
        ),
        (
            "noxfile.py",
            "import nox\n\n@nox.session\ndef lint(session):\n    session.run('ruff')\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(t.cwd().join(name), text).unwrap();
    }
    t.ptest(["init"])
        .assert()
        .success()
        .stderr(contains("inferred: tox.ini: environments py"))
        .stderr(contains("not translated: noxfile.py sessions lint"));
    let report = t.json(["run", "--", "-k", "foo"]);
    let suite = &report["suites"][0];
    assert_eq!(suite["name"], "py");
    assert_eq!(suite["status"], "passed", "{suite}");
    let out = suite["stdout_tail"].as_str().unwrap();
    assert!(out.contains("1 passed, 1 deselected"), "{out}");
}

#[test]
fn pyproject_test_dependencies_and_requirements_are_named() {
    let t = TestHome::new();
    std::fs::write(
        t.cwd().join("pyproject.toml"),
        "[project]\nname = 'x'\n[dependency-groups]\ntest = ['pytest>=8', 'pretend']\n\
         [tool.pytest.ini_options]\ntestpaths = ['tests']\n",
    )
    .unwrap();
    std::fs::write(t.cwd().join("requirements-dev.txt"), "coverage\n").unwrap();
    t.ptest(["init"])
        .assert()
        .success()
        .stderr(contains("[dependency-groups] test: pytest>=8, pretend"))
        .stderr(contains("pytest configuration"))
        .stderr(contains("requirements files: requirements-dev.txt"))
        .stderr(contains("not translated").not());
    let text = std::fs::read_to_string(t.cwd().join("ptest.toml")).unwrap();
    assert!(
        text.contains(r#"packages = ["-e .", "pytest>=8", "pretend"]"#),
        "{text}"
    );
    t.ptest(["run", "--list"]).assert().success();
}
