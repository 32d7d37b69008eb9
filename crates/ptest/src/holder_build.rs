//! The build of the pod holder's code, in both of this package's binaries: `ptest` gives its
//! pods to the `ptest-pod-holder` beside it only when that file carries the same value (see
//! `holder.rs`). It is a digest of the holder's sources (`build.rs`), kept in a section of its
//! own so that it can be read from the file without running it.

/// 16 hexadecimal digits (`PTEST_HOLDER_BUILD` from `build.rs`), in the section `holder.rs`
/// reads (`HOLDER_SECTION`).
#[used]
#[unsafe(link_section = ".ptest_holder_build")]
pub static HOLDER_BUILD: [u8; 16] = digits(env!("PTEST_HOLDER_BUILD"));

const fn digits(text: &str) -> [u8; 16] {
    let bytes = text.as_bytes();
    assert!(bytes.len() == 16, "PTEST_HOLDER_BUILD is 16 hex digits");
    let mut out = [0; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = bytes[i];
        i += 1;
    }
    out
}
