//! `--network` and `--allow` as a NetworkPolicy selecting the environment's pod. A policy is
//! enforced only by a network plugin that honours NetworkPolicy (Calico, Cilium, kube-router,
//! ...); on one that does not (flannel, for one) it is accepted and does nothing, which ptest
//! cannot see from the API.
//!
//! | network | policy |
//! |---|---|
//! | not given, below `high`, no `--allow` | none: the pod network as the cluster gives it |
//! | `loopback`, `none` (and not given from `high` up) | every ingress and egress dropped: only the pod's loopback works. A pod always has an interface, so `none` is applied as `loopback`, with nothing passing on the interface |
//! | `bridge` (or `--allow` given) | egress only to the `--allow` rules, as the `basic` level's bridge; no DNS unless allowed (e.g. `--allow 10.96.0.10:53`); ingress open (neighbours connect, replies pass) |
//! | `host` | refused: ptest does not put environments on a node's network |
//!
//! An `--allow` host is an IPv4 address or network (an `ipBlock`), or another environment's
//! name (its pod, by the `ptest.name` and `ptest.home` labels, in the same namespace). With a
//! port, that port is allowed over TCP and UDP; without, every port.

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use ptest_core::{AllowHost, AllowRule, Environment, EnvironmentSpec, NetworkMode, SecurityLevel};
use std::collections::BTreeMap;

use crate::labels::{LABEL_ENV, LABEL_HOME, LABEL_NAME, label_value, labels, object_name};
use crate::pod::effective_security;

/// What the environment's traffic is limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// Nothing: no policy.
    Open,
    /// Only loopback.
    Closed,
    /// Egress only to the `--allow` rules.
    Allowed,
}

fn limit(spec: &EnvironmentSpec) -> Limit {
    match spec.network {
        Some(NetworkMode::None | NetworkMode::Loopback) => Limit::Closed,
        Some(NetworkMode::Bridge) => Limit::Allowed,
        // Refused by `check`; no policy would be the honest reading of it.
        Some(NetworkMode::Host) => Limit::Open,
        None if !spec.allow.is_empty() => Limit::Allowed,
        None if effective_security(spec) >= SecurityLevel::High => Limit::Closed,
        None => Limit::Open,
    }
}

/// The policy for `env` in `namespace`, made by the home with hash `home`; `None` where its
/// network is not limited.
pub fn network_policy(env: &Environment, namespace: &str, home: &str) -> Option<NetworkPolicy> {
    let limit = limit(&env.spec);
    if limit == Limit::Open {
        return None;
    }
    let egress = (limit == Limit::Allowed).then(|| {
        env.spec
            .allow
            .iter()
            .map(|rule| egress_rule(rule, home))
            .collect()
    });
    let policy_types = match limit {
        Limit::Allowed => vec!["Egress".to_owned()],
        _ => vec!["Ingress".to_owned(), "Egress".to_owned()],
    };
    Some(NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(object_name(env)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels(env, home)),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (LABEL_ENV.to_owned(), env.id.to_string()),
                    (LABEL_HOME.to_owned(), home.to_owned()),
                ])),
                ..LabelSelector::default()
            }),
            policy_types: Some(policy_types),
            egress,
            ingress: None,
        }),
    })
}

fn egress_rule(rule: &AllowRule, home: &str) -> NetworkPolicyEgressRule {
    let peer = match &rule.host {
        AllowHost::Net { addr, prefix } => NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: format!("{addr}/{prefix}"),
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        },
        AllowHost::Name(name) => NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (LABEL_HOME.to_owned(), home.to_owned()),
                    (LABEL_NAME.to_owned(), label_value(name)),
                ])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        },
    };
    let ports = rule.port.map(|port| {
        ["TCP", "UDP"]
            .iter()
            .map(|protocol| NetworkPolicyPort {
                port: Some(IntOrString::Int(i32::from(port))),
                protocol: Some((*protocol).to_owned()),
                end_port: None,
            })
            .collect()
    });
    NetworkPolicyEgressRule {
        to: Some(vec![peer]),
        ports,
    }
}
