//! Links the package's binaries as position-dependent executables: their pointer data
//! (`.data.rel.ro`, 0.5 MB in `ptest`) is then final in the file instead of relocated at every
//! start, so each `ptest` call and each pod holder (which executes `ptest-pod-holder`, or
//! ptest again where that is missing) neither writes nor privately keeps those pages.
//! bench/README.md ("Where a CLI call's time goes") measures it for `ptest`; for
//! `ptest-pod-holder` it is 8 KiB less private memory in each idle holder (120 KiB, against
//! 128 KiB as a PIE). The cost: the binaries' own images are not placed at a random address
//! (their heap, stack and libraries still are).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
