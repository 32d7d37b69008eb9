//! `check()` against real `pip check` on venvs broken on purpose, and `tree()` on the same
//! packages (extras, platform markers, cycles).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use ptest_python::{Conflict, InstallRequest, Installer, Venv, check, check_venv, installed, tree};
use support::{local, python, venv};

/// One finding reduced to what both tools state: (requirer, its version, dependency,
/// installed version or `None` when missing).
type Finding = (String, String, String, Option<String>);

/// Runs the real `pip check` for the venv (the base interpreter's pip with `--python`).
fn pip_check(venv: &Venv) -> (bool, Vec<String>) {
    let base = venv.base_python().unwrap();
    let output = Command::new(base)
        .args(["-m", "pip", "--python"])
        .arg(venv.python())
        .arg("check")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    (
        output.status.success(),
        stdout.lines().map(str::to_owned).collect(),
    )
}

/// Parses pip's two sentence shapes:
/// `A 1.0 requires B, which is not installed.` and
/// `A 1.0 has requirement B>=2.0, but you have B 1.0.`
fn parse_pip_line(line: &str) -> Finding {
    let words: Vec<&str> = line.split_whitespace().collect();
    if line.ends_with("which is not installed.") {
        let dep = words[3].trim_end_matches(',');
        return (words[0].into(), words[1].into(), dep.into(), None);
    }
    let n = words.len();
    (
        words[0].into(),
        words[1].into(),
        words[n - 2].into(),
        Some(words[n - 1].trim_end_matches('.').into()),
    )
}

fn ours(conflicts: &[Conflict]) -> BTreeSet<Finding> {
    conflicts
        .iter()
        .map(|c| match c {
            Conflict::Missing {
                requirer,
                requirer_version,
                dependency,
                ..
            } => (
                requirer.to_string(),
                requirer_version.clone(),
                dependency.to_string(),
                None,
            ),
            Conflict::VersionMismatch {
                requirer,
                requirer_version,
                dependency,
                installed_version,
                ..
            } => (
                requirer.to_string(),
                requirer_version.clone(),
                dependency.to_string(),
                Some(installed_version.clone()),
            ),
            other => panic!("unexpected finding {other}"),
        })
        .collect()
}

fn pip_installer(dir: &Path) -> Installer {
    Installer::pip(&dir.join("cache"))
}

#[test]
fn check_agrees_with_pip_check_on_a_broken_venv() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let installer = pip_installer(dir.path());
    let venv = venv(dir.path(), "venv", &python, &installer);

    installer.install(&venv, &local(&["ptdemo-a"])).unwrap();
    let clean = check_venv(&venv).unwrap();
    let (pip_ok, pip_lines) = pip_check(&venv);
    assert!(clean.is_empty(), "{clean:?}");
    assert!(
        pip_ok,
        "pip check should pass on a clean venv: {pip_lines:?}"
    );

    // Break it: an incompatible ptdemo-b, and ptdemo-d whose dependency is missing.
    for req in ["ptdemo-b==1.0", "ptdemo-d"] {
        installer
            .install(
                &venv,
                &InstallRequest {
                    no_deps: true,
                    ..local(&[req])
                },
            )
            .unwrap();
    }
    let conflicts = check(&installed(&venv).unwrap(), &python.markers);
    let (pip_ok, pip_lines) = pip_check(&venv);
    assert!(!pip_ok, "pip check should fail now");
    let theirs: BTreeSet<Finding> = pip_lines.iter().map(|l| parse_pip_line(l)).collect();
    assert_eq!(
        ours(&conflicts),
        theirs,
        "ours: {conflicts:#?}\npip: {pip_lines:#?}"
    );
    assert_eq!(theirs.len(), 2);

    // Our wording is pip's, line for line.
    let mut ours_text: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
    let mut pip_text = pip_lines.clone();
    ours_text.sort();
    pip_text.sort();
    assert_eq!(ours_text, pip_text);
}

#[test]
fn tree_follows_requested_extras_skips_foreign_platforms_and_stops_at_cycles() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let installer = pip_installer(dir.path());
    let venv = venv(dir.path(), "venv", &python, &installer);
    installer
        .install(&venv, &local(&["ptdemo-a[fast]"]))
        .unwrap();
    let dists = installed(&venv).unwrap();
    let names: Vec<&str> = dists.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, vec!["ptdemo-a", "ptdemo-b", "ptdemo-c"]);

    // Without the extra: a needs only b (ptdemo-win is Windows-only).
    let plain = tree(&dists, &python.markers, Some("ptdemo-a")).unwrap();
    let children: Vec<&str> = plain[0].children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(children, vec!["ptdemo-b"]);
    assert!(plain[0].children[0].satisfied);

    // With it: c too, and c -> a closes a cycle that is marked, not followed.
    let fast = tree(&dists, &python.markers, Some("ptdemo-a[fast]")).unwrap();
    let children: Vec<&str> = fast[0].children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(children, vec!["ptdemo-b", "ptdemo-c"]);
    let c = &fast[0].children[1];
    assert_eq!(c.children.len(), 1);
    assert!(c.children[0].cycle, "{c:#?}");
    assert!(c.children[0].children.is_empty());

    // Whole tree: c requires a and a (without extras) does not require c, so c is the only
    // root, and every package appears.
    let all = tree(&dists, &python.markers, None).unwrap();
    let roots: Vec<&str> = all.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(roots, vec!["ptdemo-c"]);
    let text = ptest_python::TreeDisplay(&all).to_string();
    assert_eq!(
        text,
        "ptdemo-c==1.0\n  - ptdemo-a==1.0 [required: ptdemo-a]\n    - ptdemo-b==2.1 [required: ptdemo-b>=2.0]\n"
    );

    let err = tree(&dists, &python.markers, Some("ptdemo-zzz")).unwrap_err();
    assert!(
        err.to_string().contains("ptdemo-zzz is not installed"),
        "{err}"
    );
}
