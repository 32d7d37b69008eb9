//! A wheelhouse of small demo packages, written by hand (a wheel is a zip with a dist-info),
//! so that installs can be tested with no index.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The demo packages, written as wheels once per build directory:
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
        // Beside the test binaries (`target/<profile>/`): the wheels never change, so every
        // test binary of the build shares them.
        let binary = std::env::current_exe().expect("the test binary's path");
        let deps = binary.parent().expect("the test binary is in a directory");
        let dir = deps.parent().unwrap_or(deps).join("ptest-demo-wheels-v2");
        if dir.is_dir() {
            return dir;
        }
        // Tests run as parallel processes: build aside, then rename into place atomically.
        let staging = dir.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).expect("a staging directory for the wheels");
        let status = Command::new("python3")
            .arg("-c")
            .arg(WHEEL_BUILDER)
            .arg(&staging)
            .status()
            .expect("the wheelhouse needs python3 on PATH");
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
