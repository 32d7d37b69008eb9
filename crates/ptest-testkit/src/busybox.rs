//! The test image: busybox alone, built `FROM scratch` from Debian's `busybox-static` (no
//! registry can be reached from ptest's test machines), for `ptest env create --build` and
//! the docker engine's own tests.

use std::path::{Path, PathBuf};

/// The image's Dockerfile.
pub const DOCKERFILE: &str = include_str!("busybox.Dockerfile");

/// Why the host cannot build the test image, if it cannot: no reachable Docker engine, or
/// no `/bin/busybox`.
pub fn missing() -> Option<String> {
    let engine = std::process::Command::new("docker").arg("version").output();
    let engine = match &engine {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).into_owned()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = engine {
        return Some(format!(
            "no Docker engine (scripts/start-dockerd starts one): {why}"
        ));
    }
    (!Path::new("/bin/busybox").exists())
        .then(|| "/bin/busybox missing (install busybox-static)".to_owned())
}

/// Writes the build context (the Dockerfile and a copy of `/bin/busybox`) into `dir`.
pub fn write_context(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE)?;
    std::fs::copy("/bin/busybox", dir.join("busybox"))?;
    Ok(())
}

/// A build context made in `dir`'s `image/`, or `None` after a [`crate::skip`] when the host
/// cannot build it.
pub fn context(dir: &Path) -> Option<PathBuf> {
    if let Some(why) = missing() {
        return crate::skip(why);
    }
    let context = dir.join("image");
    std::fs::create_dir(&context).expect("a new directory in the test's temp dir");
    write_context(&context).expect("the test image's build context");
    Some(context)
}
