//! What ptest's tests share, as a dev-dependency of every crate that has tests: the skip rule
//! (a test that needs what the host lacks prints why and skips, but fails under
//! `PTEST_REQUIRE_ALL=1`, which CI sets), waiting for a condition, the busybox image's build
//! context (no registry can be reached, so the test image is built `FROM scratch`) and a
//! wheelhouse of small demo packages.
//!
//! It depends on no ptest crate, so that any of them can use it without building a second
//! copy of itself.

pub mod busybox;
pub mod python;
pub mod wheels;

use std::fmt::Display;
use std::time::{Duration, Instant};

/// Whether every test must run: `PTEST_REQUIRE_ALL=1`.
pub fn required() -> bool {
    std::env::var_os("PTEST_REQUIRE_ALL").is_some_and(|v| v == "1")
}

/// Skips a test that cannot run here: prints `why` and returns `None`, or panics under
/// `PTEST_REQUIRE_ALL=1`.
pub fn skip<T>(why: impl Display) -> Option<T> {
    if required() {
        panic!("PTEST_REQUIRE_ALL=1 and this test cannot run: {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// `true` when `why` is `None`; otherwise [`skip`]s and returns `false`.
pub fn runnable(why: Option<impl Display>) -> bool {
    match why {
        None => true,
        Some(why) => skip::<()>(why).is_some(),
    }
}

/// Polls `done` every 10 ms until it holds (`true`) or `timeout` passes (`false`).
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process with this pid exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|end| s.get(end + 2..))
            .is_some_and(|state| !state.starts_with('Z'))
    })
}
