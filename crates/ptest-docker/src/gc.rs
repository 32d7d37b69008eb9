//! The reaper: finds Docker objects this home labelled for environments that are no longer
//! recorded (a ptest killed in the middle of a create, a record removed by hand) and removes
//! them. An object without this home's `ptest.home` label is never touched.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};

use crate::connection::{is_not_found, message_of, status_of};
use crate::container::{LABEL_ENV, LABEL_HOME};

/// What kind of Docker object was reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectKind {
    /// A container of an environment.
    Container,
    /// A run's bridge network (removed once no container uses it).
    Network,
    /// A volume labelled for an environment.
    Volume,
}

/// One object [`crate::DockerEngine::gc`] removed or tried to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    /// What it is.
    pub kind: ObjectKind,
    /// Its name (containers and networks) or id.
    pub name: String,
    /// The environment id on its `ptest.env` label, if it has one.
    pub env_id: Option<String>,
    /// `None` when removed, else why not.
    pub error: Option<String>,
}

/// Removes what is labelled with `home` but belongs to no environment in `live`.
pub(crate) async fn reap(docker: &Docker, home: &str, live: &[String]) -> Vec<Reaped> {
    let mut out = Vec::new();
    let filter = HashMap::from([("label", vec![format!("{LABEL_HOME}={home}")])]);
    let orphan = |labels: Option<&HashMap<String, String>>| -> Option<Option<String>> {
        let labels = labels?;
        // Double-check the label ourselves: never act on the filter alone.
        if labels.get(LABEL_HOME).map(String::as_str) != Some(home) {
            return None;
        }
        let env = labels.get(LABEL_ENV).cloned();
        match &env {
            Some(id) if live.contains(id) => None,
            _ => Some(env),
        }
    };

    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await;
    match containers {
        Ok(list) => {
            for c in list {
                let Some(env_id) = orphan(c.labels.as_ref()) else {
                    continue;
                };
                let Some(id) = c.id else { continue };
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_else(|| id.clone());
                let removed = docker
                    .remove_container(
                        &id,
                        Some(
                            RemoveContainerOptionsBuilder::new()
                                .force(true)
                                .v(true)
                                .build(),
                        ),
                    )
                    .await;
                out.push(Reaped {
                    kind: ObjectKind::Container,
                    name,
                    env_id,
                    error: removed
                        .err()
                        .filter(|e| !is_not_found(e))
                        .map(|e| message_of(&e)),
                });
            }
        }
        Err(e) => out.push(listing_failed(ObjectKind::Container, &e)),
    }

    match docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filter).build(),
        ))
        .await
    {
        Ok(list) => {
            for v in list.volumes.unwrap_or_default() {
                let Some(env_id) = orphan(Some(&v.labels)) else {
                    continue;
                };
                let removed = docker
                    .remove_volume(&v.name, Some(RemoveVolumeOptionsBuilder::new().build()))
                    .await;
                out.push(Reaped {
                    kind: ObjectKind::Volume,
                    name: v.name,
                    env_id,
                    error: removed
                        .err()
                        .filter(|e| !is_not_found(e))
                        .map(|e| message_of(&e)),
                });
            }
        }
        Err(e) => out.push(listing_failed(ObjectKind::Volume, &e)),
    }

    match docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filter).build(),
        ))
        .await
    {
        Ok(list) => {
            for n in list {
                if n.labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_HOME))
                    .map(String::as_str)
                    != Some(home)
                {
                    continue;
                }
                let Some(name) = n.name else { continue };
                match docker.remove_network(&name).await {
                    Ok(()) => out.push(Reaped {
                        kind: ObjectKind::Network,
                        name,
                        env_id: None,
                        error: None,
                    }),
                    // Still used by a live environment (403 on older engines, 409 on newer):
                    // it stays, and that is not a failure.
                    Err(e) if matches!(status_of(&e), Some(403 | 409)) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => out.push(Reaped {
                        kind: ObjectKind::Network,
                        name,
                        env_id: None,
                        error: Some(message_of(&e)),
                    }),
                }
            }
        }
        Err(e) => out.push(listing_failed(ObjectKind::Network, &e)),
    }
    out
}

fn listing_failed(kind: ObjectKind, e: &bollard::errors::Error) -> Reaped {
    Reaped {
        kind,
        name: String::new(),
        env_id: None,
        error: Some(format!("listing failed: {}", message_of(e))),
    }
}
