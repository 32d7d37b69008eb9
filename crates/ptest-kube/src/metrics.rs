//! `env stats` for a pod: the memory its containers use now, from the metrics API
//! (`metrics.k8s.io/v1beta1`, served by metrics-server) where the cluster serves it. The API
//! gives a CPU *rate*, not the CPU time ptest reports, so CPU stays unknown; a cluster without
//! the API is said to be one (an error naming metrics-server), not shown as zero use.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use ptest_core::{Error, IsolationLevel, ResourceUsage, Result};
use serde::Deserialize;

use crate::api_error::{Call, is_not_found};
use crate::connect::Cluster;

const METRICS: Call = Call {
    action: "read the pod's metrics",
    verb: "get",
    resource: "pods.metrics.k8s.io",
};

#[derive(Deserialize)]
struct PodMetrics {
    #[serde(default)]
    containers: Vec<ContainerMetrics>,
}

#[derive(Deserialize)]
struct ContainerMetrics {
    usage: std::collections::BTreeMap<String, Quantity>,
}

/// What `pod` in `namespace` uses now, as the metrics API says.
pub(crate) async fn usage(cluster: &Cluster, namespace: &str, pod: &str) -> Result<ResourceUsage> {
    let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{pod}");
    let request = http::Request::get(&path)
        .body(Vec::new())
        .map_err(|e| Error::Engine {
            level: IsolationLevel::Kubernetes,
            action: METRICS.action,
            source: e.into(),
        })?;
    let metrics: PodMetrics = match cluster.client.request(request).await {
        Ok(m) => m,
        Err(e) if is_not_found(&e) => {
            return Err(Error::Unsupported {
                name: pod.to_owned(),
                action: "read the usage of",
                why: format!(
                    "the cluster (context {}) serves no metrics for it: either the metrics \
                     API (metrics.k8s.io, from metrics-server) is not installed, or it has \
                     not sampled the pod yet (it does every 15s or so)",
                    cluster.context
                ),
            });
        }
        Err(e) => return Err(METRICS.error(e, namespace, cluster)),
    };
    let memory = metrics
        .containers
        .iter()
        .filter_map(|c| bytes(c.usage.get("memory")?))
        .sum();
    Ok(ResourceUsage {
        memory_bytes: Some(memory),
        ..ResourceUsage::default()
    })
}

/// A quantity of bytes (`1234`, `3412Ki`, `2Mi`, `1G`, `1e3`) as a number.
pub fn bytes(q: &Quantity) -> Option<u64> {
    let s = q.0.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "m" => 1e-3,
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some((number * factor).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities_read_as_bytes() {
        let q = |s: &str| Quantity(s.to_owned());
        assert_eq!(bytes(&q("3412Ki")), Some(3412 * 1024));
        assert_eq!(bytes(&q("2Mi")), Some(2 << 20));
        assert_eq!(bytes(&q("1G")), Some(1_000_000_000));
        assert_eq!(bytes(&q("1e3")), Some(1000));
        assert_eq!(bytes(&q("512")), Some(512));
        assert_eq!(bytes(&q("12x")), None);
    }
}
