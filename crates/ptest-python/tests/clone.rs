//! A cloned venv runs on its own: its python imports the packages and its console scripts and
//! activate scripts name the new location, while the source venv is left as it was.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use ptest_python::{Error, clone_venv};
use support::{installers, local, python, run_python, venv};

#[test]
fn cloned_venv_runs_after_the_source_is_gone() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for installer in installers(&dir.path().join("cache")) {
        let tool = installer.kind().name();
        let source = venv(dir.path(), &format!("src-{tool}"), &python, &installer);
        installer.install(&source, &local(&["ptdemo-a"])).unwrap();
        let src_script = std::fs::read_to_string(source.bin_dir().join("ptdemo-a")).unwrap();
        let src_root = source.root().display().to_string();
        assert!(
            src_script.contains(&src_root),
            "{tool}: the script names its venv"
        );

        let dst = dir.path().join(format!("clone-{tool}"));
        let (clone, report) = clone_venv(source.root(), &dst).unwrap();
        assert!(report.copied > 0, "{tool}: {report:?}");
        assert!(
            report.rewritten.iter().any(|p| p.ends_with("bin/ptdemo-a")),
            "{tool}: {report:?}"
        );
        assert!(
            report.rewritten.iter().any(|p| p.ends_with("bin/activate")),
            "{tool}: {report:?}"
        );

        // No file is shared: a write to the clone's module leaves the source's as it was.
        let module = "ptdemo_a/__init__.py";
        let copy = std::fs::metadata(clone.site_packages().join(module)).unwrap();
        let original = std::fs::metadata(source.site_packages().join(module)).unwrap();
        assert_ne!(copy.ino(), original.ino(), "{tool}: module shared by inode");
        let before = std::fs::read(source.site_packages().join(module)).unwrap();
        let mut poisoned = std::fs::OpenOptions::new()
            .append(true)
            .open(clone.site_packages().join(module))
            .unwrap();
        std::io::Write::write_all(&mut poisoned, b"raise SystemExit('poisoned')\n").unwrap();
        assert_eq!(
            std::fs::read(source.site_packages().join(module)).unwrap(),
            before,
            "{tool}: a write to the clone reached the source"
        );
        std::fs::write(clone.site_packages().join(module), &before).unwrap();
        let script_meta = std::fs::metadata(clone.bin_dir().join("ptdemo-a")).unwrap();
        let src_script_meta = std::fs::metadata(source.bin_dir().join("ptdemo-a")).unwrap();
        assert_ne!(script_meta.ino(), src_script_meta.ino());

        // The source is untouched.
        assert_eq!(
            std::fs::read_to_string(source.bin_dir().join("ptdemo-a")).unwrap(),
            src_script
        );
        let activate = std::fs::read_to_string(clone.bin_dir().join("activate")).unwrap();
        assert!(
            activate.contains(&clone.root().display().to_string()),
            "{tool}"
        );
        assert!(
            !activate.contains(&src_root),
            "{tool}: activate still names the source"
        );

        // Remove the source: the clone must stand alone.
        std::fs::remove_dir_all(source.root()).unwrap();
        let (ok, out) = run_python(
            &clone.python(),
            "import sys, ptdemo_a; print(sys.prefix); print(ptdemo_a.__file__)",
        );
        assert!(ok, "{tool}: {out}");
        let prefix = clone.root().display().to_string();
        assert!(out.lines().all(|l| l.starts_with(&prefix)), "{tool}: {out}");
        let script = Command::new(clone.bin_dir().join("ptdemo-a"))
            .output()
            .unwrap();
        assert!(script.status.success(), "{tool}: {script:?}");
        assert_eq!(
            String::from_utf8_lossy(&script.stdout).trim(),
            "ptdemo_a 1.0"
        );
    }
}

#[test]
fn clone_refuses_a_non_empty_destination() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let installer = ptest_python::Installer::pip(&dir.path().join("cache"));
    let source = venv(dir.path(), "src", &python, &installer);
    let dst = dir.path().join("taken");
    std::fs::create_dir(&dst).unwrap();
    std::fs::write(dst.join("keep.txt"), "mine").unwrap();
    let err = clone_venv(source.root(), &dst).unwrap_err();
    assert!(matches!(err, Error::DestinationExists(_)), "{err}");
    assert_eq!(
        std::fs::read_to_string(dst.join("keep.txt")).unwrap(),
        "mine"
    );
}
