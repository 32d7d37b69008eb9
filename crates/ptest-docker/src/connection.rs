//! The connection to the Docker engine: made on first use (so a ptest without Docker still
//! starts), from `DOCKER_HOST` or the default socket, with the API version negotiated.

use std::fmt::Display;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use ptest_core::{Error, IsolationLevel};
use tokio::sync::OnceCell;

/// Where the engine is: `DOCKER_HOST`, else the default unix socket.
pub(crate) fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// A lazily made, version-negotiated client. A failed attempt is not cached: the next call
/// tries again (the engine may have been started since).
#[derive(Default)]
pub(crate) struct Connection {
    client: OnceCell<Docker>,
}

impl Connection {
    /// The client, connecting first if needed.
    pub(crate) async fn get(&self) -> ptest_core::Result<&Docker> {
        self.client.get_or_try_init(connect).await
    }
}

/// Connects to [`docker_host`] and negotiates the API version.
pub(crate) async fn connect() -> ptest_core::Result<Docker> {
    let host = docker_host();
    let docker = Docker::connect_with_defaults().map_err(|e| unreachable(&host, e))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| unreachable(&host, e))
}

fn unreachable(host: &str, e: impl Display) -> Error {
    engine_error(
        "connect to the Docker engine",
        format!(
            "{host}: {e}; start the engine (`dockerd`, or ptest's scripts/start-dockerd) or \
             point DOCKER_HOST at one"
        ),
    )
}

/// An engine error of the docker level.
pub(crate) fn engine_error(action: &'static str, message: impl Display) -> Error {
    Error::Engine {
        level: IsolationLevel::Docker,
        action,
        source: message.to_string().into(),
    }
}

/// The HTTP status of an error answered by the engine, if it was one.
pub(crate) fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Whether the engine answered "no such object".
pub(crate) fn is_not_found(e: &DockerError) -> bool {
    status_of(e) == Some(404)
}

/// The engine's own message for an error it answered, else the error's text.
pub(crate) fn message_of(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
