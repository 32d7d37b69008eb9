//! The reaper: finds Docker objects this home labelled for environments that are no longer
//! recorded (a ptest killed in the middle of a create, a record removed by hand) and removes
//! them. An object without this home's `ptest.home` label is never touched.
//!
//! A reaped container's environment root (the host directory bind-mounted at `/ptest`) goes
//! with it, through [`ptest_core::limited_root::remove`]: a `--disk`/`--files` root is a
//! tmpfs mounted on the host, which nothing else would ever unmount. That removal checks the
//! root's marker (and the tmpfs's name) against the container's `ptest.env` label, so a
//! directory of another environment, or not ptest's, is refused and left.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use ptest_core::{EnvId, limited_root};

use crate::connection::{is_not_found, message_of, status_of};
use crate::container::{CONTAINER_ROOT, LABEL_ENV, LABEL_HOME};

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
    /// The root of a reaped container's environment (unmounted first when it is a tmpfs).
    Root,
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
                let root = c
                    .mounts
                    .iter()
                    .flatten()
                    .find(|m| m.destination.as_deref() == Some(CONTAINER_ROOT))
                    .and_then(|m| m.source.clone());
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
                let error = removed
                    .err()
                    .filter(|e| !is_not_found(e))
                    .map(|e| message_of(&e));
                let gone = error.is_none();
                out.push(Reaped {
                    kind: ObjectKind::Container,
                    name,
                    env_id: env_id.clone(),
                    error,
                });
                // Only once the container no longer holds it.
                if let (true, Some(root), Some(id)) = (gone, root, env_id) {
                    out.extend(remove_root(PathBuf::from(root), id).await);
                }
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

/// Removes the root at `path` of environment `id` (a reaped container's): unmounts its tmpfs
/// and deletes it, as `env rm` would. `None` when there is no such directory.
async fn remove_root(path: PathBuf, id: String) -> Option<Reaped> {
    let name = path.display().to_string();
    let removed = tokio::task::spawn_blocking(move || {
        if !EnvId::looks_like(&id) || std::fs::symlink_metadata(&path).is_err() {
            return None;
        }
        // An id is only built by ptest-core; one read from a label is deserialized, as the
        // store does.
        let env_id: EnvId = serde_json::from_value(serde_json::Value::String(id.clone())).ok()?;
        Some((id, limited_root::remove(&path, &env_id)))
    })
    .await
    .ok()??;
    let (id, result) = removed;
    Some(Reaped {
        kind: ObjectKind::Root,
        name,
        env_id: Some(id),
        error: result.err().map(|e| e.to_string()),
    })
}

fn listing_failed(kind: ObjectKind, e: &bollard::errors::Error) -> Reaped {
    Reaped {
        kind,
        name: String::new(),
        env_id: None,
        error: Some(format!("listing failed: {}", message_of(e))),
    }
}
