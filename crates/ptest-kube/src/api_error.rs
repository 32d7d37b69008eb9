//! The API server's refusals as ptest's errors, each naming what a user must change: RBAC's
//! 403 names the verb and resource ptest asked for (exit 2), a missing namespace says how to
//! make one (exit 3), an unreachable server names the server and context (exit 2, the level
//! is not available); anything else is an engine failure with the server's message.

use ptest_core::{Error, IsolationLevel};

use crate::connect::Cluster;

/// One kind of request ptest makes, as RBAC sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    /// What ptest was doing, for messages ("create the pod").
    pub action: &'static str,
    /// The RBAC verb (`create`, `get`, `list`, `watch`, `delete`).
    pub verb: &'static str,
    /// The RBAC resource (`pods`, `pods/exec`, `networkpolicies`).
    pub resource: &'static str,
}

/// Whether the server answered 404 Not Found.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

impl Call {
    /// `e`, raised by this call in `namespace` of `cluster`, as ptest's error.
    pub(crate) fn error(&self, e: kube::Error, namespace: &str, cluster: &Cluster) -> Error {
        let (server, context) = (&cluster.server, &cluster.context);
        match e {
            kube::Error::Api(status) => match status.code {
                403 => Error::Usage(format!(
                    "forbidden by RBAC: ptest may not {} {} in namespace {namespace:?} \
                     (context {context}); ask for a Role that grants it. The API server said: \
                     {}",
                    self.verb, self.resource, status.message
                )),
                401 => Error::Usage(format!(
                    "the API server {server} refused the credentials of context {context} \
                     (401 Unauthorized): {}",
                    status.message
                )),
                404 if namespace_missing(&status) => Error::Missing(format!(
                    "namespace {namespace:?} does not exist (context {context}); create it \
                     (kubectl create namespace {namespace}) or give another with --namespace"
                )),
                _ => Error::Engine {
                    level: IsolationLevel::Kubernetes,
                    action: self.action,
                    source: format!("{} ({} {})", status.message, status.code, status.reason)
                        .into(),
                },
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) => Error::LevelUnavailable {
                level: IsolationLevel::Kubernetes,
                reason: format!(
                    "cannot reach the API server {server} (context {context}): {}",
                    chain(&e)
                ),
            },
            e => Error::Engine {
                level: IsolationLevel::Kubernetes,
                action: self.action,
                source: chain(&e).into(),
            },
        }
    }
}

/// Whether a 404 is about the namespace (the request's object may simply be gone).
fn namespace_missing(status: &kube::core::Status) -> bool {
    status
        .details
        .as_ref()
        .is_some_and(|d| d.kind == "namespaces")
}

/// An error and its sources, `: `-joined (hyper's own message is only "client error").
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
