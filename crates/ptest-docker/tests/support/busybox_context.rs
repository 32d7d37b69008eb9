//! The busybox build context for the CLI's docker tests (`crates/ptest/tests/docker*.rs`
//! include this file by path): the test image's Dockerfile beside it plus `/bin/busybox`, for
//! `ptest env create --build`, or a skip when the host has no Docker engine.

use std::path::{Path, PathBuf};

/// A build context with busybox alone (`FROM scratch`) made in `dir`'s `image/`, or `None`
/// (with the reason printed) when the host has no Docker engine or no busybox; under
/// `PTEST_REQUIRE_ALL=1` that is a failure instead.
pub fn busybox_context(dir: &Path) -> Option<PathBuf> {
    let engine = std::process::Command::new("docker").arg("version").output();
    let why = match &engine {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).into_owned()),
        Err(e) => Some(e.to_string()),
    };
    let why = why.or_else(|| {
        (!Path::new("/bin/busybox").exists())
            .then(|| "/bin/busybox missing (busybox-static)".to_owned())
    });
    if let Some(why) = why {
        let why = format!("no Docker engine (scripts/start-dockerd starts one): {why}");
        if std::env::var_os("PTEST_REQUIRE_ALL").is_some_and(|v| v == "1") {
            panic!("{why}");
        }
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let context = dir.join("image");
    std::fs::create_dir(&context).expect("a new directory in the test's temp dir");
    let support =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ptest-docker/tests/support/Dockerfile");
    std::fs::copy(support, context.join("Dockerfile")).expect("the test image's Dockerfile");
    std::fs::copy("/bin/busybox", context.join("busybox")).expect("a copy of busybox");
    Some(context)
}
