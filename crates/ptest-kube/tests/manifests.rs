//! The manifests of an environment, one snapshot per spec field and security level: what
//! `env create --dry-run -o yaml` prints and what the engine sends.

mod support;

use std::time::Duration;

use ptest_core::{ByteSize, NetworkMode, RUN_LABEL, SecurityLevel};
use ptest_kube::Manifests;
use support::{HOME, env, spec};

fn yaml(spec: ptest_core::EnvironmentSpec) -> String {
    let env = env(spec);
    Manifests::new(&env, "busybox:1.36", "ptest-ci", HOME)
        .to_yaml()
        .expect("manifests serialize")
}

fn at(level: SecurityLevel) -> ptest_core::EnvironmentSpec {
    let mut spec = spec();
    spec.security = Some(level);
    spec
}

#[test]
fn default_is_a_medium_pod_with_no_network_policy() {
    insta::assert_snapshot!(yaml(spec()));
}

#[test]
fn low_keeps_the_clusters_defaults() {
    insta::assert_snapshot!(yaml(at(SecurityLevel::Low)));
}

#[test]
fn high_is_unprivileged_read_only_and_loopback_only() {
    insta::assert_snapshot!(yaml(at(SecurityLevel::High)));
}

#[test]
fn strict_is_applied_as_high() {
    let strict = yaml(at(SecurityLevel::Strict));
    assert_eq!(strict, yaml(at(SecurityLevel::High)));
}

#[test]
fn limits_are_requests_and_limits_and_disk_bounds_the_volume() {
    let mut spec = spec();
    spec.limits.memory = Some(ByteSize(256 << 20));
    spec.limits.cpus = Some(0.5);
    spec.limits.disk = Some(ByteSize(1 << 30));
    insta::assert_snapshot!(yaml(spec));
}

#[test]
fn a_scheduled_ttl_is_the_active_deadline() {
    let mut spec = spec();
    spec.ttl = Some(Duration::from_secs(1800));
    insta::assert_snapshot!(yaml(spec));
}

#[test]
fn leased_ports_are_named_container_ports() {
    let mut env = env(spec());
    env.ports.insert("http".parse().unwrap(), 20080);
    env.ports
        .insert("db_primary_replica".parse().unwrap(), 20081);
    let yaml = Manifests::new(&env, "busybox:1.36", "ptest-ci", HOME)
        .to_yaml()
        .unwrap();
    insta::assert_snapshot!(yaml);
}

#[test]
fn a_runs_environments_carry_its_label() {
    let mut spec = spec();
    spec.labels
        .insert(RUN_LABEL.into(), "2026-12-05/run 7".into());
    insta::assert_snapshot!(yaml(spec));
}

#[test]
fn loopback_and_none_drop_all_traffic_on_the_interface() {
    let mut spec = spec();
    spec.network = Some(NetworkMode::Loopback);
    let loopback = yaml(spec.clone());
    spec.network = Some(NetworkMode::None);
    assert_eq!(loopback, yaml(spec));
    insta::assert_snapshot!(loopback);
}

#[test]
fn bridge_sends_only_where_allow_rules_say() {
    let mut spec = spec();
    spec.network = Some(NetworkMode::Bridge);
    spec.allow = vec![
        "10.96.0.10:53".parse().unwrap(),
        "192.168.0.0/16".parse().unwrap(),
        "api:8080".parse().unwrap(),
    ];
    insta::assert_snapshot!(yaml(spec));
}

#[test]
fn allow_rules_alone_limit_egress() {
    let mut spec = spec();
    spec.allow = vec!["api".parse().unwrap()];
    let allowed = yaml(spec.clone());
    spec.network = Some(NetworkMode::Bridge);
    assert_eq!(allowed, yaml(spec));
}
