//! Finding interpreters on this host (pyenv shims resolved), and the spec hash reporting
//! which input changed.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use ptest_python::{Error, Interpreter, ProbeCache, PythonRequest, SpecHash};
use ptest_testkit::python::starts;
use support::python;

fn is_elf(path: &std::path::Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"\x7fELF"))
}

#[test]
fn version_request_finds_the_real_binary_not_a_shim() {
    let Some(default) = python() else { return };
    let major_minor = default.major_minor();
    let found = Interpreter::find(&major_minor.parse().unwrap()).unwrap();
    assert!(found.version.to_string().starts_with(&major_minor));
    assert!(
        is_elf(&found.path),
        "{} is not the real binary",
        found.path.display()
    );
    assert_eq!(found.path, std::fs::canonicalize(&found.path).unwrap());
    assert_eq!(found.markers.python_version, major_minor);

    // Asking through whatever `python3` on PATH is (a pyenv shim here) gives the same binary.
    let via_path = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("python3"))
        .find(|p| p.exists())
        .unwrap();
    let queried = Interpreter::query(&via_path).unwrap();
    assert!(is_elf(&queried.path));
    assert_eq!(queried.version, default.version);
}

#[test]
fn a_pyenv_shim_is_resolved_to_the_binary_pyenv_runs() {
    let Some(default) = python() else { return };
    let shims: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("python3"))
        .filter(|p| ptest_python::pyenv::resolve_shim(p).is_some())
        .collect();
    let Some(shim) = shims.first() else {
        // No pyenv here: nothing to compare with (the rules are unit-tested in pyenv.rs).
        assert!(ptest_python::pyenv::resolve_shim(&default.path).is_none());
        ptest_testkit::skip::<()>("no pyenv shim for python3 on PATH");
        return;
    };
    let resolved = ptest_python::pyenv::resolve_shim(shim).unwrap();
    // Running the shim asks pyenv itself.
    let by_pyenv = Interpreter::query(shim).unwrap();
    assert_eq!(std::fs::canonicalize(&resolved).unwrap(), by_pyenv.path);
    // Finding through the shim gives that binary's interpreter.
    let found = Interpreter::find(&PythonRequest::Path(shim.clone())).unwrap();
    assert_eq!(found, by_pyenv);
}

#[test]
fn a_cached_interpreter_is_asked_again_only_when_its_binary_changes() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("starts.log");
    let cache = ProbeCache::new(&dir.path().join("probes"));
    let venv = support::logging_venv(dir.path(), "venv", &python, &log);
    let request = PythonRequest::Path(venv.python());

    assert_eq!(Interpreter::find_cached(&request, &cache).unwrap(), python);
    assert_eq!(starts(&log), 1);
    // Asked again: answered from the cache, no Python started.
    assert_eq!(Interpreter::find_cached(&request, &cache).unwrap(), python);
    assert_eq!(starts(&log), 1);
    // The venv's configuration changed: asked again.
    let cfg = venv.root().join("pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}# changed\n")).unwrap();
    assert_eq!(Interpreter::find_cached(&request, &cache).unwrap(), python);
    assert_eq!(starts(&log), 2);

    // A script that starts Python may start another one tomorrow without changing: never kept.
    let wrapper = dir.path().join("python3");
    let script = format!(
        "#!/bin/sh\necho wrapper $$ >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        python.path.display()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let request = PythonRequest::Path(wrapper);
    for _ in 0..2 {
        assert_eq!(Interpreter::find_cached(&request, &cache).unwrap(), python);
    }
    assert_eq!(starts(&log), 4);
}

#[test]
fn a_link_pointed_at_another_interpreter_never_gets_the_old_answer() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = ProbeCache::new(&dir.path().join("probes"));
    // Another interpreter: a copy of the binary is one (it reports its own path).
    let copy = dir
        .path()
        .join("copy")
        .join(python.path.file_name().unwrap());
    std::fs::create_dir(copy.parent().unwrap()).unwrap();
    std::fs::copy(&python.path, &copy).unwrap();
    let link = dir.path().join("python3");
    std::os::unix::fs::symlink(&python.path, &link).unwrap();
    let request = PythonRequest::Path(link.clone());

    assert_eq!(
        Interpreter::find_cached(&request, &cache).unwrap().path,
        python.path
    );
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&copy, &link).unwrap();
    assert_eq!(
        Interpreter::find_cached(&request, &cache).unwrap().path,
        copy
    );
    // A binary that is gone is an error, not an old answer.
    std::fs::remove_file(&copy).unwrap();
    assert!(Interpreter::find_cached(&request, &cache).is_err());
}

#[test]
fn a_venv_python_reports_its_base_interpreter() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let installer = ptest_python::Installer::pip(&dir.path().join("cache"));
    let venv = support::venv(dir.path(), "venv", &python, &installer);
    let inside = venv.interpreter().unwrap();
    assert_eq!(inside.path, python.path);
    assert_eq!(inside.markers, python.markers);
}

#[test]
fn missing_version_lists_what_was_tried() {
    let err = Interpreter::find(&PythonRequest::Version(vec![3, 99])).unwrap_err();
    let Error::InterpreterNotFound { request, tried } = &err else {
        panic!("unexpected error {err}");
    };
    assert_eq!(request, "3.99");
    assert!(
        tried
            .iter()
            .any(|t| t.candidate == "python3.99" && t.reason == "not on PATH"),
        "{err}"
    );
    if support::python().is_some() {
        assert!(
            tried.iter().any(|t| t.reason.starts_with("is cpython 3.")),
            "{err}"
        );
    }
    let bad_path =
        Interpreter::find(&PythonRequest::Path("/nonexistent/python".into())).unwrap_err();
    assert!(
        bad_path
            .to_string()
            .contains("/nonexistent/python: cannot run it"),
        "{bad_path}"
    );
}

#[test]
fn spec_hash_changes_with_a_requirement_and_names_it() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let constraints = dir.path().join("constraints.txt");
    std::fs::write(&constraints, "ptdemo-b<3\n").unwrap();
    let reqs = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let files = vec![constraints.clone()];

    let base =
        SpecHash::compute(&python, &reqs(&["ptdemo-a>=1", "ptdemo-b==2.0"]), &files).unwrap();
    // Order and name spelling do not matter.
    let same =
        SpecHash::compute(&python, &reqs(&["PtDemo_B == 2.0", "ptdemo-a >=1"]), &files).unwrap();
    assert_eq!(base.digest, same.digest);
    assert!(same.changes_since(&base).is_empty());
    let keys: Vec<&str> = base.inputs.iter().map(|i| i.key.as_str()).collect();
    assert!(
        keys.contains(&"python.version") && keys.contains(&"python.path"),
        "{keys:?}"
    );

    let bumped =
        SpecHash::compute(&python, &reqs(&["ptdemo-a>=1", "ptdemo-b==2.1"]), &files).unwrap();
    assert_ne!(base.digest, bumped.digest);
    let changes = bumped.changes_since(&base);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].key, "requirement:ptdemo-b");
    assert_eq!(
        changes[0].to_string(),
        "requirement:ptdemo-b changed: ptdemo-b==2.0 -> ptdemo-b==2.1"
    );

    std::fs::write(&constraints, "ptdemo-b<2.1\n").unwrap();
    let constrained =
        SpecHash::compute(&python, &reqs(&["ptdemo-a>=1", "ptdemo-b==2.0"]), &files).unwrap();
    let changes = constrained.changes_since(&base);
    let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, vec![format!("constraints:{}", constraints.display())]);

    let mut other_python = python.clone();
    other_python.path = PathBuf::from("/opt/other/bin/python3.11");
    let moved =
        SpecHash::compute(&other_python, &reqs(&["ptdemo-a>=1", "ptdemo-b==2.0"]), &[]).unwrap();
    let keys: Vec<String> = moved
        .changes_since(&base)
        .into_iter()
        .map(|c| c.key)
        .collect();
    assert!(keys.contains(&"python.path".to_owned()), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.starts_with("constraints:")),
        "{keys:?}"
    );

    // The hash survives a round trip through JSON, so a caller can store it next to the env.
    let stored = serde_json::to_string(&base).unwrap();
    let loaded: SpecHash = serde_json::from_str(&stored).unwrap();
    assert_eq!(loaded, base);
}
