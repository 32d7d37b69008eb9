//! Links the package's binaries as position-dependent executables: their pointer data
//! (`.data.rel.ro`, 0.5 MB in `ptest`) is then final in the file instead of relocated at every
//! start, so each `ptest` call and each pod holder (which executes `ptest-pod-holder`, or
//! ptest again where that is missing) neither writes nor privately keeps those pages.
//! bench/README.md ("Where a CLI call's time goes") measures it for `ptest`; an idle holder
//! running `ptest-pod-holder` keeps 130 KiB private dirty, against 362 KiB as a PIE (the
//! fault proxy it carries brings 0.2 MB of `.data.rel.ro`). The cost: the binaries' own
//! images are not placed at a random address (their heap, stack and libraries still are).
//!
//! Also gives both binaries `PTEST_HOLDER_BUILD`, a digest of the holder's sources (see
//! `src/holder_build.rs`): `cargo run -p ptest` relinks `ptest` alone, and must not hand its
//! pods to a `ptest-pod-holder` left from before a change to them.

use std::path::{Path, PathBuf};

/// What `ptest-pod-holder` is made of, relative to this package: its own file, the crates
/// it links from this workspace, and the lock that fixes everything else.
const HOLDER_SOURCES: &[&str] = &[
    "src/bin/ptest-pod-holder.rs",
    "src/holder_build.rs",
    "../ptest-sandbox/src",
    "../ptest-sandbox/Cargo.toml",
    "../ptest-net/src",
    "../ptest-net/Cargo.toml",
    "../../Cargo.lock",
];

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let mut files = Vec::new();
    for source in HOLDER_SOURCES {
        println!("cargo:rerun-if-changed={source}");
        collect(Path::new(source), &mut files);
    }
    files.sort();
    // FNV-1a over each file's path and contents: stable across toolchains, unlike std's
    // hasher, so that identical sources give identical builds.
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    for file in files {
        let contents = std::fs::read(&file).unwrap_or_default();
        let path = file.to_string_lossy().into_owned().into_bytes();
        for byte in path.iter().chain([0].iter()).chain(&contents) {
            digest = (digest ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=PTEST_HOLDER_BUILD={digest:016x}");
}

/// Every file at or beneath `path`.
fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            for entry in entries.flatten() {
                collect(&entry.path(), files);
            }
        }
        Err(_) if path.is_file() => files.push(path.to_owned()),
        Err(_) => {}
    }
}
