//! Venv creation, installs and uninstalls with each installer, proven by importing in the
//! venv's python and by reading site-packages.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use ptest_python::{
    Error, InstallRequest, PackageName, PythonRequest, Venv, freeze, installed, show,
};
use support::{installers, local, python, run_python, venv};

#[test]
fn installed_package_imports_in_venv_with_each_installer() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for installer in installers(&dir.path().join("cache")) {
        let tool = installer.kind().name();
        let started = Instant::now();
        let venv = venv(dir.path(), &format!("venv-{tool}"), &python, &installer);
        let created = started.elapsed();

        let started = Instant::now();
        let outcome = installer.install(&venv, &local(&["ptdemo-a"])).unwrap();
        eprintln!(
            "{tool}: venv created in {created:?}, ptdemo-a installed in {:?} (tool {:?})",
            started.elapsed(),
            outcome.duration
        );

        let added: Vec<(String, Option<String>)> = outcome
            .installed()
            .map(|c| (c.name.to_string(), c.after.clone()))
            .collect();
        assert_eq!(
            added,
            vec![
                ("ptdemo-a".to_owned(), Some("1.0".to_owned())),
                ("ptdemo-b".to_owned(), Some("2.1".to_owned())),
            ],
            "{tool}"
        );

        let (ok, out) = run_python(
            &venv.python(),
            "import ptdemo_a, ptdemo_b; print(ptdemo_a.VERSION, ptdemo_b.VERSION)",
        );
        assert!(ok, "{tool}: import failed: {out}");
        assert_eq!(out.trim(), "1.0 2.1", "{tool}");

        assert_eq!(
            freeze(&venv).unwrap(),
            vec!["ptdemo-a==1.0", "ptdemo-b==2.1"],
            "{tool}"
        );
        let a = show(&venv, "PtDemo_A")
            .unwrap()
            .expect("ptdemo-a is installed");
        assert_eq!(a.summary.as_deref(), Some("Demo package A"));
        assert_eq!(a.location, venv.site_packages());
        assert_eq!(a.requires_dist.len(), 3);
        assert!(
            venv.bin_dir().join("ptdemo-a").exists(),
            "{tool}: console script missing"
        );

        let outcome = installer
            .uninstall(&venv, &[PackageName::new("ptdemo_b")])
            .unwrap();
        let removed: Vec<String> = outcome.removed().map(|c| c.name.to_string()).collect();
        assert_eq!(removed, vec!["ptdemo-b"], "{tool}");
        let (ok, _) = run_python(&venv.python(), "import ptdemo_b");
        assert!(!ok, "{tool}: ptdemo_b still importable after uninstall");
        assert!(show(&venv, "ptdemo-b").unwrap().is_none());
    }
}

#[test]
fn constraints_and_requirement_files_are_honoured() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let requirements = dir.path().join("requirements.txt");
    let constraints = dir.path().join("constraints.txt");
    std::fs::write(&requirements, "ptdemo-a\n").unwrap();
    std::fs::write(&constraints, "ptdemo-b==2.0\n").unwrap();
    for installer in installers(&dir.path().join("cache")) {
        let tool = installer.kind().name();
        let venv = venv(dir.path(), &format!("venv-{tool}"), &python, &installer);
        let request = InstallRequest {
            requirement_files: vec![requirements.clone()],
            constraint_files: vec![constraints.clone()],
            ..local(&[])
        };
        installer.install(&venv, &request).unwrap();
        let (ok, out) = run_python(&venv.python(), "import ptdemo_b; print(ptdemo_b.VERSION)");
        assert!(ok, "{tool}: {out}");
        assert_eq!(out.trim(), "2.0", "{tool}: the constraint pins ptdemo-b");

        // --upgrade without the constraint moves ptdemo-b to the newest local wheel.
        let outcome = installer
            .install(
                &venv,
                &InstallRequest {
                    upgrade: true,
                    ..local(&["ptdemo-b"])
                },
            )
            .unwrap();
        let change = outcome
            .changes
            .iter()
            .find(|c| c.name.as_str() == "ptdemo-b")
            .unwrap();
        assert_eq!(
            (change.before.as_deref(), change.after.as_deref()),
            (Some("2.0"), Some("2.1"))
        );

        // --no-deps installs only what is named.
        let outcome = installer
            .install(
                &venv,
                &InstallRequest {
                    no_deps: true,
                    ..local(&["ptdemo-d"])
                },
            )
            .unwrap();
        let names: Vec<&str> = outcome.installed().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["ptdemo-d"], "{tool}");
    }
}

#[test]
fn uv_copies_from_the_shared_cache_so_no_venv_can_change_it() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(uv) = support::uv_installer(&dir.path().join("cache")) else {
        return;
    };
    let first = venv(dir.path(), "first", &python, &uv);
    uv.install(&first, &local(&["ptdemo-a"])).unwrap();
    let started = Instant::now();
    let second = venv(dir.path(), "second", &python, &uv);
    let outcome = uv.install(&second, &local(&["ptdemo-a"])).unwrap();
    eprintln!(
        "uv: second venv + install from warm cache took {:?}",
        started.elapsed()
    );
    assert_eq!(outcome.installed().count(), 2);
    let module = second.site_packages().join("ptdemo_a/__init__.py");
    let links = std::fs::metadata(&module).unwrap().nlink();
    assert_eq!(
        links, 1,
        "the module is shared by hard link with the cache or the first venv"
    );
}

/// With every version pinned, uv is asked for the cache's (and find-links') answer first and
/// the index is not asked at all: behind an index that cannot be reached, a pinned install
/// (in a requirements file too) succeeds, an unpinned one fails asking it.
#[test]
fn pinned_requirements_come_from_the_cache_without_asking_the_index() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(uv) = support::uv_installer(&dir.path().join("cache")) else {
        return;
    };
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let unreachable = |requirements: &[&str], files: Vec<std::path::PathBuf>| InstallRequest {
        no_index: false,
        index_url: Some("http://127.0.0.1:9/simple".into()),
        requirement_files: files,
        ..local(requirements)
    };
    let pinned = venv(dir.path(), "pinned", &python, &uv);
    let outcome = uv
        .install(&pinned, &unreachable(&["ptdemo-b==2.0"], Vec::new()))
        .unwrap();
    assert_eq!(outcome.installed().count(), 1);
    let file = dir.path().join("requirements.txt");
    std::fs::write(
        &file,
        "# pinned\nptdemo-c==1.0\nptdemo-a==1.0 # and its\nptdemo-b==2.1\n",
    )
    .unwrap();
    let from_file = venv(dir.path(), "file", &python, &uv);
    let outcome = uv
        .install(&from_file, &unreachable(&[], vec![file]))
        .unwrap();
    assert_eq!(outcome.installed().count(), 3);
    let loose = venv(dir.path(), "loose", &python, &uv);
    let e = uv
        .install(&loose, &unreachable(&["ptdemo-b>=2.0"], Vec::new()))
        .unwrap_err();
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
}

/// Through its stable venv link, uv installs into a venv it has never seen without starting
/// that venv's python (a `.pth` line logs every start), and the scripts it writes name the
/// venv itself, not the link; a second install at once takes another link.
#[test]
fn uv_through_a_venv_link_starts_no_python_and_scripts_name_the_venv() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(uv) = support::uv_installer(&dir.path().join("cache")) else {
        return;
    };
    let links = dir.path().join("links");
    let uv = uv.with_venv_links(&links);
    let first = venv(dir.path(), "first", &python, &uv);
    uv.install(&first, &local(&["ptdemo-b==1.0"])).unwrap();

    let second = venv(dir.path(), "second", &python, &uv);
    let log = dir.path().join("starts.log");
    support::log_starts(&second, &log);
    let outcome = uv.install(&second, &local(&["ptdemo-a==1.0"])).unwrap();
    assert_eq!(outcome.installed().count(), 2);
    assert_eq!(
        ptest_testkit::python::starts(&log),
        0,
        "uv started the venv's python"
    );

    let script = std::fs::read_to_string(second.bin_dir().join("ptdemo-a")).unwrap();
    let first_line = script.lines().next().unwrap();
    assert_eq!(first_line, format!("#!{}", second.python().display()));
    let ran = std::process::Command::new(second.bin_dir().join("ptdemo-a"))
        .output()
        .unwrap();
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "ptdemo_a 1.0\n");

    // Installs at once each take a link of their own.
    let more: Vec<Venv> = ["third", "fourth", "fifth"]
        .iter()
        .map(|name| venv(dir.path(), name, &python, &uv))
        .collect();
    std::thread::scope(|s| {
        for venv in &more {
            let uv = &uv;
            s.spawn(move || uv.install(venv, &local(&["ptdemo-a==1.0"])).unwrap());
        }
    });
    for venv in &more {
        let script = std::fs::read_to_string(venv.bin_dir().join("ptdemo-a")).unwrap();
        assert!(
            script.starts_with(&format!("#!{}\n", venv.python().display())),
            "{script}"
        );
    }
    // Released: no link is left pointing into a venv.
    let left: Vec<_> = walk(&links)
        .into_iter()
        .filter(|p| p.is_symlink())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn bad_requirement_fails_before_any_tool_runs() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let installer = ptest_python::Installer::pip(&dir.path().join("cache"));
    let venv = venv(dir.path(), "venv", &python, &installer);
    let err = installer
        .install(&venv, &local(&["ptdemo-a >= "]))
        .unwrap_err();
    match err {
        Error::Requirement(e) => {
            assert_eq!(e.position, 12, "the end of `ptdemo-a >= `");
            assert!(e.to_string().contains("expected a version"), "{e}");
        }
        other => panic!("expected a requirement error, got {other}"),
    }
}

#[test]
fn failed_install_reports_the_tools_stderr() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for installer in installers(&dir.path().join("cache")) {
        let tool = installer.kind().name();
        let venv = venv(dir.path(), &format!("venv-{tool}"), &python, &installer);
        let err = installer
            .install(&venv, &local(&["ptdemo-does-not-exist"]))
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::ToolFailed { .. }), "{tool}: {text}");
        assert!(
            text.contains("ptdemo-does-not-exist"),
            "{tool}: stderr tail missing: {text}"
        );
        assert!(installed(&venv).unwrap().is_empty());
    }
}

#[test]
fn open_reads_an_existing_venv_and_rejects_other_directories() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let installer = ptest_python::Installer::pip(&dir.path().join("cache"));
    let made = venv(dir.path(), "venv", &python, &installer);
    let opened = Venv::open(made.root()).unwrap();
    assert_eq!(opened.site_packages(), made.site_packages());
    assert_eq!(
        opened.python_version().map(|v| v.to_owned()),
        Some(python.version.to_string())
    );
    assert!(opened.base_python().unwrap().exists());
    let err = Venv::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("pyvenv.cfg"), "{err}");
}

/// An interpreter whose pip predates `--python` (pip < 22.3, e.g. Python 3.7's 22.0.4) gets
/// pip bootstrapped into the venv instead. Found through pyenv's versions directory, since
/// the `python3.7` shim on PATH refuses to run while another version is selected.
#[test]
fn pip_older_than_22_3_is_bootstrapped_into_the_venv() {
    let Ok(old) = ptest_python::Interpreter::find(&PythonRequest::Version(vec![3, 7])) else {
        ptest_testkit::skip::<()>("no Python 3.7 (an interpreter with pip < 22.3) on this host");
        return;
    };
    assert!(old.version.to_string().starts_with("3.7"));
    assert!(
        !old.path.to_string_lossy().contains("/shims/"),
        "{}",
        old.path.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let installer = ptest_python::Installer::pip(&dir.path().join("cache"));
    let venv = venv(dir.path(), "venv", &old, &installer);
    assert!(!venv.bin_dir().join("pip").exists());
    let outcome = installer.install(&venv, &local(&["ptdemo-a"])).unwrap();
    assert!(
        outcome
            .command
            .contains(&venv.python().display().to_string()),
        "{}",
        outcome.command
    );
    let (ok, out) = run_python(&venv.python(), "import ptdemo_a; print(ptdemo_a.VERSION)");
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "1.0");
}
