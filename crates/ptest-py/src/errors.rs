//! ptest's errors as Python exceptions: one base class, one subclass per kind a caller acts
//! on differently (the CLI's exit codes 2, 3 and 125, with "state" split further).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    ptest,
    Error,
    PyException,
    "Base class of every ptest error."
);
create_exception!(
    ptest,
    NotFoundError,
    Error,
    "No environment, process or package with that name."
);
create_exception!(
    ptest,
    ConfigError,
    Error,
    "Bad input: a name, limit, level or configuration ptest cannot use."
);
create_exception!(
    ptest,
    LimitReachedError,
    Error,
    "max_environments reached, or no port or address left to lease."
);
create_exception!(
    ptest,
    WrongStateError,
    Error,
    "The environment is busy, taken or in a state that does not allow this."
);
create_exception!(
    ptest,
    EngineError,
    Error,
    "ptest or the host failed: the state store, the filesystem, an engine (Docker)."
);
create_exception!(
    ptest,
    ProcessError,
    Error,
    "A command run with check=True failed; `.result` holds its ProcessResult."
);
create_exception!(
    ptest,
    NotReadyError,
    Error,
    "A background process ended or was not ready in time; it was stopped."
);
create_exception!(
    ptest,
    TimeoutError,
    Error,
    "A wait ran out of time (the process still runs)."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("LimitReachedError", py.get_type::<LimitReachedError>())?;
    m.add("WrongStateError", py.get_type::<WrongStateError>())?;
    m.add("EngineError", py.get_type::<EngineError>())?;
    m.add("ProcessError", py.get_type::<ProcessError>())?;
    m.add("NotReadyError", py.get_type::<NotReadyError>())?;
    m.add("TimeoutError", py.get_type::<TimeoutError>())?;
    Ok(())
}

/// The exception for a ptest error: the class follows its variant, the message is ptest's.
pub(crate) fn to_py(e: ptest_core::Error) -> PyErr {
    use ptest_core::Error as E;
    let msg = e.to_string();
    match e {
        E::NotFound(_) | E::Missing(_) | E::NoProcess { .. } => NotFoundError::new_err(msg),
        E::InvalidName(_) | E::Usage(_) | E::Root { .. } | E::LevelUnavailable { .. } => {
            ConfigError::new_err(msg)
        }
        E::LimitReached { .. }
        | E::QuotaExceeded { .. }
        | E::QuotaNeedsLimit { .. }
        | E::PortsExhausted { .. }
        | E::AddressesExhausted { .. } => LimitReachedError::new_err(msg),
        E::NameTaken(_)
        | E::WrongState { .. }
        | E::Unsupported { .. }
        | E::Busy { .. }
        | E::PortTaken { .. }
        | E::ProcessNameTaken { .. }
        | E::StoreDamaged { .. } => WrongStateError::new_err(msg),
        E::Engine { .. } | E::Store { .. } | E::Io { .. } => EngineError::new_err(msg),
        // The enum is non-exhaustive: a new variant is ptest's own failure until mapped.
        _ => EngineError::new_err(msg),
    }
}

/// `.py_err()?` turns a ptest result into one Python understands.
pub(crate) trait ToPyResult<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> ToPyResult<T> for ptest_core::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
