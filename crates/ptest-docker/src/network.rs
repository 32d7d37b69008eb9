//! Each run's own bridge network, `ptest-<home hash>-<run id>`: a user-defined Docker bridge
//! made on first need and labelled with the home and run, so the run's containers reach each
//! other by name and [`crate::DockerEngine::gc`] can find it again. Environments outside a run
//! use Docker's default bridge (see [`network_name`]), which is never made nor removed here.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::NetworkCreateRequest;
use ptest_core::{Environment, RUN_LABEL, Result};

use crate::connection::{engine_error, is_not_found, message_of, status_of};
use crate::container::{LABEL_HOME, network_name, run_of};

/// Makes sure the bridge network `env` joins exists (see [`network_name`]); returns its name.
/// Safe to race with another ptest doing the same. Docker's default bridge is taken as it is.
pub(crate) async fn ensure_bridge(
    docker: &Docker,
    home: &str,
    env: &Environment,
) -> Result<String> {
    let name = network_name(home, env);
    if run_of(env).is_none() {
        return Ok(name);
    }
    match docker.inspect_network(&name, None).await {
        Ok(_) => return Ok(name),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(engine_error("inspect the bridge network", e)),
    }
    let mut labels = HashMap::from([(LABEL_HOME.to_owned(), home.to_owned())]);
    if let Some(run) = run_of(env) {
        labels.insert(RUN_LABEL.to_owned(), run.to_owned());
    }
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".to_owned()),
        labels: Some(labels),
        ..NetworkCreateRequest::default()
    };
    match docker.create_network(request).await {
        Ok(_) => Ok(name),
        // Another ptest made it in the meantime.
        Err(e) if status_of(&e) == Some(409) => Ok(name),
        Err(e) => Err(engine_error(
            "create the bridge network",
            format!("{name}: {}", message_of(&e)),
        )),
    }
}

/// Removes a run's own network once its last container is gone. Still in use, or already
/// gone: nothing to do.
pub(crate) async fn release_run_network(docker: &Docker, home: &str, env: &Environment) {
    if run_of(env).is_none() {
        return;
    }
    let name = network_name(home, env);
    if let Err(e) = docker.remove_network(&name).await
        && !is_not_found(&e)
        && !matches!(status_of(&e), Some(403 | 409))
    {
        tracing::warn!(
            "could not remove the run's network {name}: {}",
            message_of(&e)
        );
    }
}
