//! Links the `ptest` binary as a position-dependent executable: its 0.5 MB of pointer data
//! (`.data.rel.ro`) is then final in the file instead of relocated at every start, so each
//! `ptest` call and each pod holder (which re-executes ptest) neither writes nor privately
//! keeps those pages. bench/README.md ("Where a CLI call's time goes") measures it.
//! The cost: the binary's own image is not placed at a random address (its heap, stack and
//! libraries still are).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
