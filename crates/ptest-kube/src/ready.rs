//! Waiting for an environment's pod to be Ready, and saying why it is not: what the scheduler
//! and the kubelet put in the pod's status (Pending and unschedulable, an image that cannot be
//! pulled, a container killed for memory) is surfaced as it is, with the image or limit it
//! concerns.
//!
//! [`judge`] reads one Pod as the API server returns it; `wait` follows the pod with a watch
//! (`fieldSelector=metadata.name=<pod>`) from the version its creation returned, judging each
//! change, until it is Ready, has failed for good, or the time is up (then the last reason
//! it was waiting for is the error).

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::Api;
use kube::api::{WatchEvent, WatchParams};
use ptest_core::{Error, Result};

use crate::api_error::Call;
use crate::connect::Cluster;

/// What a pod's status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Running and Ready: commands can run.
    Ready,
    /// Not yet, for this reason (scheduling, pulling, starting).
    Waiting(String),
    /// Never will be, for this reason.
    Failed(String),
}

/// Waiting reasons of a container that do not pass by themselves.
const FATAL_WAITING: [&str; 6] = [
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "RunContainerError",
    "CrashLoopBackOff",
];

/// Reads `pod`'s status.
pub fn judge(pod: &Pod) -> Verdict {
    let Some(status) = &pod.status else {
        return Verdict::Waiting("the pod has no status yet".into());
    };
    let containers = status.container_statuses.as_deref().unwrap_or_default();
    for c in containers {
        if let Some(verdict) = container_verdict(pod, c) {
            return verdict;
        }
    }
    let condition = |kind: &str| status.conditions.iter().flatten().find(|c| c.type_ == kind);
    match status.phase.as_deref() {
        Some("Failed") | Some("Succeeded") => {
            return Verdict::Failed(format!(
                "the pod ended ({}){}",
                status.phase.as_deref().unwrap_or_default(),
                reason_text(status.reason.as_deref(), status.message.as_deref())
            ));
        }
        Some("Running") if condition("Ready").is_some_and(|c| c.status == "True") => {
            return Verdict::Ready;
        }
        _ => {}
    }
    if let Some(c) = condition("PodScheduled").filter(|c| c.status == "False") {
        return Verdict::Waiting(format!(
            "not scheduled{}",
            reason_text(c.reason.as_deref(), c.message.as_deref())
        ));
    }
    for c in containers {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            return Verdict::Waiting(format!(
                "container {}{}",
                c.name,
                reason_text(w.reason.as_deref(), w.message.as_deref())
            ));
        }
    }
    Verdict::Waiting(format!(
        "phase {}",
        status.phase.as_deref().unwrap_or("unknown")
    ))
}

/// A container's state that ends the wait, if it does.
fn container_verdict(pod: &Pod, c: &ContainerStatus) -> Option<Verdict> {
    let state = c.state.as_ref()?;
    if let Some(w) = &state.waiting
        && let Some(reason) = w.reason.as_deref()
        && FATAL_WAITING.contains(&reason)
    {
        let image = if reason.contains("Image") {
            format!(" (image {})", image_of(pod, c))
        } else {
            String::new()
        };
        return Some(Verdict::Failed(format!(
            "container {}{image}{}",
            c.name,
            reason_text(Some(reason), w.message.as_deref())
        )));
    }
    let ended = state
        .terminated
        .as_ref()
        .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))?;
    let memory = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|x| x.name == c.name))
        .and_then(|x| {
            x.resources
                .as_ref()?
                .limits
                .as_ref()?
                .get("memory")
                .cloned()
        });
    let reason = ended.reason.as_deref().unwrap_or("Error");
    let hint = match (reason, memory) {
        ("OOMKilled", Some(limit)) => format!(" (memory limit {}: raise --memory)", limit.0),
        ("OOMKilled", None) => " (the node ran out of memory)".to_owned(),
        _ => String::new(),
    };
    Some(Verdict::Failed(format!(
        "container {} ended with exit code {}: {reason}{hint}{}",
        c.name,
        ended.exit_code,
        ended
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    )))
}

/// The image a container runs: as the kubelet reports it, else as the spec asks.
fn image_of(pod: &Pod, c: &ContainerStatus) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|x| x.name == c.name))
        .and_then(|x| x.image.clone())
        .unwrap_or_else(|| c.image.clone())
}

fn reason_text(reason: Option<&str>, message: Option<&str>) -> String {
    match (reason, message) {
        (Some(r), Some(m)) => format!(": {r}: {m}"),
        (Some(r), None) => format!(": {r}"),
        (None, Some(m)) => format!(": {m}"),
        (None, None) => String::new(),
    }
}

const WATCH: Call = Call {
    action: "watch the pod",
    verb: "watch",
    resource: "pods",
};

/// Follows `pod` (as its creation returned it) until it is Ready; an error says why not.
pub(crate) async fn wait(
    cluster: &Cluster,
    namespace: &str,
    pod: Pod,
    timeout: Duration,
) -> Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut last = match judge(&pod) {
        Verdict::Ready => return Ok(()),
        Verdict::Failed(why) => return Err(failed(&name, why)),
        Verdict::Waiting(why) => why,
    };
    let mut version = pod.metadata.resource_version.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let follow = async {
        loop {
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(timeout.as_secs().clamp(1, 290) as u32);
            let mut events = api
                .watch(&params, &version)
                .await
                .map_err(|e| WATCH.error(e, namespace, cluster))?
                .boxed();
            while let Some(event) = events.next().await {
                let event = event.map_err(|e| WATCH.error(e, namespace, cluster))?;
                let pod = match event {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
                    WatchEvent::Deleted(_) => {
                        return Err(failed(&name, "the pod was deleted".into()));
                    }
                    WatchEvent::Bookmark(b) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    // 410 Gone: the version is too old; start again from now.
                    WatchEvent::Error(status) if status.code == 410 => {
                        version = "0".into();
                        break;
                    }
                    WatchEvent::Error(status) => {
                        return Err(WATCH.error(kube::Error::Api(status), namespace, cluster));
                    }
                };
                version = pod.metadata.resource_version.clone().unwrap_or_default();
                match judge(&pod) {
                    Verdict::Ready => return Ok(()),
                    Verdict::Failed(why) => return Err(failed(&name, why)),
                    Verdict::Waiting(why) => {
                        if why != last {
                            tracing::info!("pod {name}: {why}");
                        }
                        last = why;
                    }
                }
            }
        }
    };
    let outcome = tokio::time::timeout(timeout, follow).await;
    match outcome {
        Ok(result) => result,
        Err(_) => Err(failed(
            &name,
            format!("not Ready after {}s: {last}", timeout.as_secs()),
        )),
    }
}

/// A pod that will not start: what it asked for (image, limits, placement) cannot be had, so
/// the spec is what to change (exit 2).
fn failed(pod: &str, why: String) -> Error {
    Error::Usage(format!("the kubernetes pod {pod} did not start: {why}"))
}
