//! `ptest-pod-holder`: the program an idle environment's pod holder runs. `ptest` has its
//! holders execute this file when it is installed beside it and of its build (see
//! `holder.rs`): linking little more than the holder's command server, it is written to
//! (relocated) in a page or two where a re-executed `ptest` dirties tens of KiB in every idle
//! holder.
//!
//! It is also what a command of the pod finds at `/proc/self/exe` (the holder forks every
//! command), which is how `ptest net fault` starts a port's fault proxy below `strict`: so it
//! serves `__proxy CONTROL_FILE` as `ptest __proxy` does.

#[path = "../holder_build.rs"]
mod holder_build;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Kept for `ptest` to read from this file: nothing here refers to it otherwise.
    std::hint::black_box(&holder_build::HOLDER_BUILD);
    // In a pod holder, serves its pod and never returns.
    ptest_sandbox::serve_if_holder();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if let [command, control] = args.as_slice()
        && command == "__proxy"
    {
        return proxy(Path::new(control));
    }
    eprintln!(
        "ptest-pod-holder: this program serves an environment's pod as its holder (PID 1 of \
         the pod's namespaces), started by ptest; there is nothing to run by hand"
    );
    ExitCode::from(2)
}

/// `__proxy CONTROL_FILE`: serves the fault proxy the file describes until killed, logging
/// to stderr (the proxy's log) as `ptest __proxy` does.
fn proxy(control: &Path) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PTEST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built");
    match runtime.block_on(ptest_net::serve_file(control)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: serving the proxy of {}: {e}", control.display());
            ExitCode::from(125)
        }
    }
}
