//! Blocking work (file trees, forks, subprocesses) from async code, on tokio's blocking pool.

use crate::error::Result;

/// Runs `f` on a blocking thread and returns what it returns. A panic in `f` goes on in the
/// caller, as if `f` had run there.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking work was cancelled: {e}"),
    }
}
