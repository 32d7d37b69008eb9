//! Python bindings of ptest: the `ptest._native` extension module of the `ptest-env` wheel,
//! whose Python surface (`ptest/__init__.py`, stubs, the pytest plugin) lives in `python/`.
//!
//! A thin layer over the same [`ptest_core::Manager`] and `$PTEST_HOME` as the CLI: what
//! Python creates, `ptest env list` shows. Main types: `manager::Manager` (opens a home with
//! every engine of this build), `environment::Environment` (exec, ports, packages, stats,
//! removal), `process::Process` (a background process under a `ptest __supervise`
//! supervisor), `process::ProcessResult`. Errors become the exception classes of
//! `errors`, one per ptest error kind.
//!
//! Every call that blocks releases the GIL and runs its future on one shared tokio runtime
//! (`block`), so Python threads create and use environments at the same time. Supervisors
//! are `ptest` processes: inside Python `current_exe` is the interpreter, so the Python
//! package tells the manager where the wheel's `ptest` binary is (`exe`, or `PTEST_EXE`).

mod convert;
mod environment;
mod errors;
mod manager;
mod process;

use std::future::Future;
use std::sync::OnceLock;

use pyo3::prelude::*;

/// One runtime for every manager of the process: its workers drive the engines' I/O while
/// callers block in [`block`] with the GIL released.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ptest-io")
            .enable_all()
            .build()
            .expect("a tokio runtime can be built")
    })
}

/// Runs `fut` to completion with the GIL released: other Python threads run meanwhile. Every
/// 50 ms it takes the GIL back to let a signal through (Ctrl-C): the exception is raised and
/// `fut` dropped, which ends what it started (a command's process group dies with its handle).
fn block_raw<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let mut fut = std::pin::pin!(fut);
    loop {
        let done = py.detach(|| {
            runtime().block_on(async {
                tokio::select! {
                    out = &mut fut => Some(out),
                    () = tokio::time::sleep(std::time::Duration::from_millis(50)) => None,
                }
            })
        });
        match done {
            Some(out) => return Ok(out),
            None => py.check_signals()?,
        }
    }
}

/// Runs short blocking work (a store transaction that may wait for SQLite's lock held by
/// another `ptest`) with the GIL released.
fn unlocked<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    Python::attach(|py| py.detach(work))
}

/// [`block_raw`] for ptest's results: its error becomes the matching exception.
fn block<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = ptest_core::Result<T>> + Send,
    T: Send,
{
    block_raw(py, fut)?.map_err(errors::to_py)
}

/// The `ptest._native` module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<manager::Manager>()?;
    m.add_class::<manager::EventStream>()?;
    m.add_class::<environment::Environment>()?;
    m.add_class::<process::Process>()?;
    m.add_class::<process::ProcessResult>()?;
    m.add_function(wrap_pyfunction!(owner_id, m)?)?;
    m.add_function(wrap_pyfunction!(owner_alive, m)?)?;
    Ok(())
}

/// This process as `PID:START_TICKS`: the `ptest.run.owner` label `ptest gc` reaps by once
/// that process is gone (a SIGKILLed pytest session's environments).
#[pyfunction]
fn owner_id() -> String {
    ptest_core::liveness::ProcessId::current().to_string()
}

/// Whether the process an owner label names still runs (`False` for a label that is not one).
#[pyfunction]
fn owner_alive(label: &str) -> bool {
    label
        .parse::<ptest_core::liveness::ProcessId>()
        .is_ok_and(|p| p.is_alive())
}
