//! Shared set-up for the integration tests: the host interpreter, uv if present, a local
//! wheelhouse of small demo packages built by hand (a wheel is a zip with a dist-info), and
//! the skip rule (`PTEST_REQUIRE_ALL=1` turns a skip into a failure).

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ptest_python::{InstallRequest, Installer, Interpreter, PythonRequest, Venv};

/// Skips (returns `None`) with the reason printed, or panics under `PTEST_REQUIRE_ALL=1`.
pub fn skip<T>(reason: &str) -> Option<T> {
    if std::env::var("PTEST_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("PTEST_REQUIRE_ALL=1 and this test cannot run: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

/// The host's Python 3 (via `python3` on PATH), or a skip.
pub fn python() -> Option<Interpreter> {
    match Interpreter::find(&PythonRequest::Default) {
        Ok(python) => Some(python),
        Err(err) => skip(&format!("no Python 3 interpreter: {err}")),
    }
}

/// uv on PATH, or a skip.
pub fn uv_installer(cache: &Path) -> Option<Installer> {
    let installer = Installer::detect(cache);
    if installer.kind().name() == "uv" {
        Some(installer)
    } else {
        skip("uv is not on PATH (install it with `pip install uv`)")
    }
}

/// Every installer this host has: pip always, uv when on PATH (a skip is printed otherwise).
pub fn installers(cache: &Path) -> Vec<Installer> {
    let mut all = vec![Installer::pip(&cache.join("pip"))];
    if let Some(uv) = uv_installer(&cache.join("uv")) {
        all.push(uv);
    }
    all
}

/// Installs from the local wheelhouse only.
pub fn local(requirements: &[&str]) -> InstallRequest {
    InstallRequest {
        requirements: requirements.iter().map(|s| (*s).to_owned()).collect(),
        no_index: true,
        find_links: vec![wheelhouse().display().to_string()],
        ..InstallRequest::default()
    }
}

/// A venv in `dir/name` made by `installer`.
pub fn venv(dir: &Path, name: &str, python: &Interpreter, installer: &Installer) -> Venv {
    Venv::create(&dir.join(name), python, installer).unwrap()
}

/// A venv `dir/name` (made by `python -m venv`) whose python writes its pid to `log` at every
/// start (a `.pth` line runs at start-up, even under `-I`), so a test can count starts.
pub fn logging_venv(dir: &Path, name: &str, python: &Interpreter, log: &Path) -> Venv {
    let venv = venv(dir, name, python, &Installer::pip(&dir.join("pip-cache")));
    log_starts(&venv, log);
    venv
}

/// Makes `venv`'s python write its pid to `log` at every start (see [`starts`]).
pub fn log_starts(venv: &Venv, log: &Path) {
    let line = format!(
        "import os; open({:?}, 'a').write('%d\\n' % os.getpid())\n",
        log.display().to_string()
    );
    std::fs::write(venv.site_packages().join("log-starts.pth"), line).unwrap();
}

/// How many processes wrote their pid to `log` (a venv's `.pth` may run twice in one start,
/// through `lib` and `lib64`).
pub fn starts(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Runs the venv's python with `code`; returns (success, stdout + stderr).
pub fn run_python(python: &Path, code: &str) -> (bool, String) {
    let output = Command::new(python)
        .arg("-c")
        .arg(code)
        .env_remove("PYTHONPATH")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The demo packages, written as wheels once per test binary:
///
/// - `ptdemo-a 1.0`: requires `ptdemo-b>=2.0`; with extra `fast` also `ptdemo-c`; on Windows
///   only `ptdemo-win`; has a console script `ptdemo-a`.
/// - `ptdemo-b` 1.0, 2.0, 2.1.
/// - `ptdemo-c 1.0`: requires `ptdemo-a` (a cycle through the extra).
/// - `ptdemo-d 1.0`: requires `ptdemo-missing>=1`, and `ptdemo-b<2` only on Python 2.
/// - `ptdemo-clash 1.0`: the package `ptdemo_clash`; its install fails half-way where a file
///   of that name is in the way.
pub fn wheelhouse() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let binary = std::env::current_exe().unwrap();
        let stem = binary.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("wheels-v2-{stem}"));
        if dir.is_dir() {
            return dir; // built by an earlier test process; the wheels never change
        }
        // Tests run as parallel processes: build aside, then rename into place atomically.
        let staging = dir.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).unwrap();
        let python = python().expect("the wheelhouse needs Python");
        let status = Command::new(&python.path)
            .arg("-c")
            .arg(WHEEL_BUILDER)
            .arg(&staging)
            .status()
            .unwrap();
        assert!(status.success(), "building demo wheels failed");
        if std::fs::rename(&staging, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&staging); // another process won the race
        }
        dir
    })
}

const WHEEL_BUILDER: &str = r#"
import base64, hashlib, os, sys, zipfile

out = sys.argv[1]
SPECS = [
    ("ptdemo_a", "1.0", "Demo package A", [
        'ptdemo-b>=2.0',
        'ptdemo_c ; extra == "fast"',
        'ptdemo-win ; sys_platform == "win32"',
    ], ["fast"], "ptdemo-a = ptdemo_a:main"),
    ("ptdemo_b", "1.0", "Demo package B", [], [], None),
    ("ptdemo_b", "2.0", "Demo package B", [], [], None),
    ("ptdemo_b", "2.1", "Demo package B", [], [], None),
    ("ptdemo_c", "1.0", "Demo package C", ["ptdemo-a"], [], None),
    ("ptdemo_d", "1.0", "Demo package D", [
        "ptdemo-missing>=1",
        'ptdemo-b<2 ; python_version < "3"',
    ], [], None),
    ("ptdemo_clash", "1.0", "Demo package that a file can be in the way of", [], [], None),
]

def record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (path, digest, len(data))

for name, version, summary, requires, extras, script in SPECS:
    info = "%s-%s.dist-info" % (name, version)
    files = {}
    files["%s/__init__.py" % name] = (
        "VERSION = %r\n\ndef main():\n    print('%s', VERSION)\n" % (version, name)
    ).encode()
    meta = ["Metadata-Version: 2.1", "Name: " + name.replace("_", "-"), "Version: " + version,
            "Summary: " + summary]
    meta += ["Requires-Dist: " + r for r in requires]
    meta += ["Provides-Extra: " + e for e in extras]
    files[info + "/METADATA"] = ("\n".join(meta) + "\n\nLong description.\n").encode()
    files[info + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: ptest-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if script:
        files[info + "/entry_points.txt"] = ("[console_scripts]\n%s\n" % script).encode()
    record = [record_line(p, d) for p, d in files.items()] + [info + "/RECORD,,"]
    files[info + "/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = os.path.join(out, "%s-%s-py3-none-any.whl" % (name, version))
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
"#;
