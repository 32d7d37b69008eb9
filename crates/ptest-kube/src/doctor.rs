//! What `ptest doctor` says of the level: where the kubeconfig is, the context and its API
//! server, the server's version, and what RBAC lets ptest do in the namespace (asked with
//! SelfSubjectAccessReviews, the way `kubectl auth can-i` asks).

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use ptest_core::Finding;

use crate::connect::{Cluster, Clusters, Lookup, connect};

/// What ptest asks of a namespace: (verb, group, resource, subresource).
const NEEDED: [(&str, &str, &str, &str); 7] = [
    ("create", "", "pods", ""),
    ("watch", "", "pods", ""),
    ("delete", "", "pods", ""),
    ("create", "", "pods", "exec"),
    ("list", "", "pods", ""),
    ("create", "networking.k8s.io", "networkpolicies", ""),
    ("delete", "networking.k8s.io", "networkpolicies", ""),
];

/// The findings, asked from a thread with a runtime of its own (the caller may be inside a
/// runtime, or not), within 10 seconds.
pub(crate) fn findings(clusters: &Clusters) -> Vec<Finding> {
    let fixed = match clusters {
        Clusters::Fixed(cluster) => Some(cluster.clone()),
        Clusters::Config(_) => None,
    };
    let lookup = Lookup::from_env();
    let paths = lookup.paths();
    let mut out = vec![Finding {
        check: "kubeconfig".into(),
        ok: fixed.is_some() || paths.iter().any(|p| p.exists()) || lookup.service_host,
        detail: match paths.iter().find(|p| p.exists()) {
            Some(p) => p.display().to_string(),
            None if lookup.service_host => "none; in-cluster service account".into(),
            None => format!(
                "none: looked for {} (set KUBECONFIG)",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }];
    if !out[0].ok {
        return out;
    }
    let probe = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), probe(fixed))
                .await
                .map_err(|_| "no answer within 10s".to_owned())?
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the probe thread panicked".to_owned()));
    match probe {
        Ok(found) => out.extend(found),
        Err(e) => out.push(Finding {
            check: "server".into(),
            ok: false,
            detail: e,
        }),
    }
    out
}

async fn probe(fixed: Option<Cluster>) -> Result<Vec<Finding>, String> {
    let cluster = match fixed {
        Some(c) => c,
        None => connect(None).await.map_err(|e| e.to_string())?,
    };
    let namespace = cluster.namespace(None);
    let mut out = vec![Finding {
        check: "context".into(),
        ok: true,
        detail: format!(
            "{} ({}, namespace {namespace})",
            cluster.context, cluster.server
        ),
    }];
    match cluster.client.apiserver_version().await {
        Ok(v) => out.push(Finding {
            check: "server".into(),
            ok: true,
            detail: format!("Kubernetes {} ({})", v.git_version, v.platform),
        }),
        Err(e) => {
            out.push(Finding {
                check: "server".into(),
                ok: false,
                detail: format!("not reachable: {}", crate::api_error::chain(&e)),
            });
            return Ok(out);
        }
    }
    let api: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    let (mut allowed, mut denied) = (Vec::new(), Vec::new());
    for (verb, group, resource, subresource) in NEEDED {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.clone()),
                    verb: Some(verb.to_owned()),
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    subresource: Some(subresource.to_owned()).filter(|s| !s.is_empty()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let what = if subresource.is_empty() {
            format!("{verb} {resource}")
        } else {
            format!("{verb} {resource}/{subresource}")
        };
        match api.create(&PostParams::default(), &review).await {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => allowed.push(what),
            Ok(_) => denied.push(what),
            Err(e) => denied.push(format!("{what} (unknown: {e})")),
        }
    }
    out.push(Finding {
        check: "rbac".into(),
        ok: denied.is_empty(),
        detail: if denied.is_empty() {
            format!("in namespace {namespace}: may {}", allowed.join(", "))
        } else {
            format!(
                "in namespace {namespace}: may not {}{}",
                denied.join(", "),
                if allowed.is_empty() {
                    String::new()
                } else {
                    format!("; may {}", allowed.join(", "))
                }
            )
        },
    });
    Ok(out)
}
