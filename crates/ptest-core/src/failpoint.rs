//! Failpoints: named steps where a test can have the process killed (SIGKILL), to prove that
//! whatever a dead `ptest` leaves is found and removed. Compiled in only with the
//! `failpoints` feature, which only the test build of the `ptest` binary enables; elsewhere
//! [`failpoint`] is an empty inline function.

/// The variable naming the step to die at.
pub const FAILPOINT_VAR: &str = "PTEST_FAILPOINT";

/// Kills this process with SIGKILL when `PTEST_FAILPOINT` names `step`.
#[cfg(feature = "failpoints")]
pub fn failpoint(step: &str) {
    if std::env::var(FAILPOINT_VAR).is_ok_and(|v| v == step) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; wait for it rather than run on.
        loop {
            std::thread::park();
        }
    }
}

/// Does nothing: this build has no failpoints.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_step: &str) {}
