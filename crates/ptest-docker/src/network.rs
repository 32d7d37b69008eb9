//! The bridge network of a home: `ptest-<home hash>`, a user-defined Docker bridge made on
//! first need and labelled with the home, so its containers reach each other by name and
//! [`crate::DockerEngine::gc`] can find it again.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::NetworkCreateRequest;
use ptest_core::Result;

use crate::connection::{engine_error, is_not_found, message_of, status_of};
use crate::container::{LABEL_HOME, network_name};

/// Makes sure the bridge network of `home` exists; returns its name. Safe to race with
/// another ptest doing the same.
pub(crate) async fn ensure_bridge(docker: &Docker, home: &str) -> Result<String> {
    let name = network_name(home);
    match docker.inspect_network(&name, None).await {
        Ok(_) => return Ok(name),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(engine_error("inspect the bridge network", e)),
    }
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".to_owned()),
        labels: Some(HashMap::from([(LABEL_HOME.to_owned(), home.to_owned())])),
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
