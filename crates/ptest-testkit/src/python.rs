//! Counting the starts of a venv's interpreter: ptest promises to start none where it need
//! not (an interpreter probe cache, uv installing without running the venv's python).

use std::path::Path;
use std::process::Command;

/// Makes the python of the venv whose `site-packages` is `site` write its pid to `log` at
/// every start (a `.pth` line runs at start-up, even under `-I`).
pub fn log_starts(site: &Path, log: &Path) {
    let line = format!(
        "import os; open({:?}, 'a').write('%d\\n' % os.getpid())\n",
        log.display().to_string()
    );
    std::fs::write(site.join("log-starts.pth"), line).expect("a .pth in site-packages");
}

/// How many processes wrote their pid to `log` (a venv's `.pth` may run twice in one start,
/// through `lib` and `lib64`).
pub fn starts(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Why the host has no Python 3 to test with, if it has none (`python3` on PATH).
pub fn missing() -> Option<String> {
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "python3 --version failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Some(format!("no python3 on PATH: {e}")),
    }
}
