//! A template learns bytecode from its clones: the modules a clone's command imported are
//! compiled in the template from the template's own sources (never copied from the clone),
//! and the next clone imports them without compiling.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use ptest_python::{Installer, bytecode::compile_imported, clone_venv};
use support::{python, venv};

/// Runs `python -v -c code` in `venv`; returns (stdout, stderr). `write` decides whether
/// Python may write bytecode (the host's environment may forbid it).
fn import(venv: &Path, code: &str, write: bool) -> (String, String) {
    let mut command = Command::new(venv.join("bin/python"));
    command.args(["-v", "-c", code]).env_remove("PYTHONPATH");
    if write {
        command.env_remove("PYTHONDONTWRITEBYTECODE");
    } else {
        command.env("PYTHONDONTWRITEBYTECODE", "1");
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn has_pyc(dir: &Path, module: &str) -> bool {
    fs::read_dir(dir.join("__pycache__")).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{module}."))
        })
    })
}

#[test]
fn a_template_compiles_what_its_clones_imported_and_nothing_they_wrote() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let template = venv(
        dir.path(),
        "template",
        &python,
        &Installer::pip(&dir.path().join("c")),
    );
    let site = template.site_packages().to_owned();
    fs::write(site.join("used_mod.py"), "VALUE = 'from the source'\n").unwrap();
    fs::write(site.join("unused_mod.py"), "VALUE = 1\n").unwrap();
    for package in ["pkg", "linked"] {
        fs::create_dir(site.join(package)).unwrap();
        fs::write(site.join(package).join("__init__.py"), "").unwrap();
        fs::write(site.join(package).join("sub.py"), "X = 1\n").unwrap();
    }

    let first = dir.path().join("first");
    let (clone, _) = clone_venv(template.root(), &first).unwrap();
    import(&first, "import used_mod, pkg.sub, linked.sub", true);
    let theirs = clone.site_packages();
    assert!(has_pyc(theirs, "used_mod") && has_pyc(&theirs.join("pkg"), "sub"));
    // What the clone's command could plant: bytecode that says something else, and a
    // `__pycache__` that is a link out of its tree.
    for entry in fs::read_dir(theirs.join("__pycache__")).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("used_mod.") {
            fs::write(entry.path(), b"poisoned bytecode").unwrap();
        }
    }
    let elsewhere = dir.path().join("elsewhere");
    fs::rename(theirs.join("linked/__pycache__"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, theirs.join("linked/__pycache__")).unwrap();

    let compiled = compile_imported(&template, &first, &python.path).unwrap();
    assert_eq!(compiled, 3, "used_mod, pkg/__init__ and pkg/sub");
    assert!(has_pyc(&site, "used_mod"));
    assert!(has_pyc(&site.join("pkg"), "__init__") && has_pyc(&site.join("pkg"), "sub"));
    assert!(!has_pyc(&site, "unused_mod"), "never imported");
    assert!(!has_pyc(&site.join("linked"), "sub"), "read through a link");
    assert_eq!(
        compile_imported(&template, &first, &python.path).unwrap(),
        0
    );

    // The next clone imports the template's bytecode without compiling, and gets the
    // source's value, not the planted one.
    let second = dir.path().join("second");
    let (next, _) = clone_venv(template.root(), &second).unwrap();
    let (out, err) = import(&second, "import used_mod; print(used_mod.VALUE)", false);
    assert_eq!(out.trim(), "from the source");
    let pyc_dir = next.site_packages().join("__pycache__");
    assert!(
        err.lines().any(|l| l.starts_with("# code object from")
            && l.contains(&*pyc_dir.to_string_lossy())
            && l.contains("used_mod.")),
        "used_mod was not loaded from the template's bytecode:\n{err}"
    );
    // The bytecode checks the source: an edit in a clone is seen.
    fs::write(
        next.site_packages().join("used_mod.py"),
        "VALUE = 'edited'\n",
    )
    .unwrap();
    let (out, _) = import(&second, "import used_mod; print(used_mod.VALUE)", false);
    assert_eq!(out.trim(), "edited");
}
