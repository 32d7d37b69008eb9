//! `ptest-pod-holder`: the program an idle environment's pod holder runs. `ptest` has its
//! holders execute this file when it is installed beside it (see `open_manager` in
//! `main.rs`): linking nothing but the holder's command server, it is written to (relocated)
//! in a page or two where a re-executed `ptest` dirties tens of KiB in every idle holder.

use std::process::ExitCode;

fn main() -> ExitCode {
    // In a pod holder, serves its pod and never returns.
    ptest_sandbox::serve_if_holder();
    eprintln!(
        "ptest-pod-holder: this program serves an environment's pod as its holder (PID 1 of \
         the pod's namespaces), started by ptest; there is nothing to run by hand"
    );
    ExitCode::from(2)
}
