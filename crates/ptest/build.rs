//! Links the package's binaries as position-dependent executables: their pointer data
//! (`.data.rel.ro`, 0.5 MB in `ptest`) is then final in the file instead of relocated at every
//! start, so each `ptest` call and each pod holder (which executes `ptest-pod-holder`, or
//! ptest again where that is missing) neither writes nor privately keeps those pages.
//! bench/README.md ("Where a CLI call's time goes") measures it for `ptest`; an idle holder
//! running `ptest-pod-holder` keeps 130 KiB private dirty, against 362 KiB as a PIE (the
//! fault proxy it carries brings 0.2 MB of `.data.rel.ro`). The cost: the binaries' own
//! images are not placed at a random address (their heap, stack and libraries still are).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
