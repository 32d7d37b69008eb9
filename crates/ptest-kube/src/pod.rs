//! The pod of an environment, built from its spec: a pure function, so the mapping is tested
//! without a cluster (the snapshots in `tests/manifests.rs`).
//!
//! # Layout inside the pod
//!
//! One container, `env`, runs `sleep 2147483647` from the environment's image: the image must
//! have a `sleep` on its `PATH`, and its own entrypoint is not run. `shareProcessNamespace`
//! makes the pod's pause process PID 1, which reaps what commands leave behind (as Docker's
//! init does for the docker level). The environment's root is an `emptyDir` volume at
//! [`POD_ROOT`] (`/ptest`), bounded by `--disk`; its `workspace/` is also at
//! [`POD_WORKSPACE`] (the working directory), its `home/` is `HOME` and its `tmp/` is `/tmp`
//! and `TMPDIR`. The volume goes with the pod.
//!
//! # Security levels
//!
//! | level | the container gets |
//! |---|---|
//! | `low` | the cluster's defaults |
//! | `medium` | `allowPrivilegeEscalation: false`, the docker level's capabilities dropped ([`MEDIUM_CAP_DROP`]), the runtime's default seccomp profile, no service account token |
//! | `high` | uid:gid 65534:65534 with `runAsNonRoot`, every capability dropped, `readOnlyRootFilesystem`, `seccompProfile: RuntimeDefault`, no privilege escalation, no service account token; network `loopback` unless asked for |
//! | `strict` | as `high`: Landlock has no Kubernetes equivalent and is not applied |
//!
//! # Limits
//!
//! `memory`, `cpus` and `disk` are the container's requests and limits (`memory`, `cpu`,
//! `ephemeral-storage`; requests equal limits, so the scheduler places the pod where they
//! fit), `disk` bounds the root's volume too. A `scheduled` environment's TTL is the pod's
//! `activeDeadlineSeconds`: the cluster stops it even when no ptest is left to. The other
//! limits have no per-pod setting and are refused ([`crate::manifest::unsupported`]).
//!
//! # Ports
//!
//! Each port leased to the environment is a container port of the same number, named after
//! the lease (shortened to Kubernetes' 15 characters), so `PTEST_PORT_<NAME>` is where a
//! service inside listens; [`crate::forward`] makes it reachable from this host.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, Pod, PodSecurityContext,
    PodSpec, ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use ptest_core::{Environment, EnvironmentSpec, MEDIUM_CAP_DROP, SecurityLevel};

use crate::labels::{labels, object_name};

/// Where the environment's root is inside the pod.
pub const POD_ROOT: &str = "/ptest";
/// Where `workspace/` is inside the pod: the working directory.
pub const POD_WORKSPACE: &str = "/workspace";
/// The name of the pod's one container.
pub const CONTAINER: &str = "env";
/// The uid and gid of `high` and `strict` pods (`nobody:nogroup`).
pub const UNPRIVILEGED_ID: i64 = 65534;
/// The container's command: sleep "forever" (68 years); commands come through exec.
pub const MAIN_COMMAND: [&str; 2] = ["sleep", "2147483647"];
/// The root's volume.
const VOLUME: &str = "ptest";

/// The security level applied: the spec's, else `medium`.
pub fn effective_security(spec: &EnvironmentSpec) -> SecurityLevel {
    spec.security.unwrap_or(SecurityLevel::Medium)
}

/// The variables every command sees, with paths as the pod sees them.
pub fn command_env(env: &Environment) -> Vec<(String, String)> {
    env.command_env()
        .into_iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "PTEST_ENV_ROOT" => POD_ROOT.to_owned(),
                "HOME" => format!("{POD_ROOT}/home"),
                "TMPDIR" => "/tmp".to_owned(),
                _ => v,
            };
            (k, v)
        })
        .collect()
}

/// The pod for `env` running `image` in `namespace`, made by the home with hash `home`.
pub fn pod(env: &Environment, image: &str, namespace: &str, home: &str) -> Pod {
    let spec = &env.spec;
    let security = effective_security(spec);
    let unprivileged = security >= SecurityLevel::High;
    let mount = |path: &str, sub: Option<&str>| VolumeMount {
        name: VOLUME.to_owned(),
        mount_path: path.to_owned(),
        sub_path: sub.map(str::to_owned),
        ..VolumeMount::default()
    };
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        command: Some(MAIN_COMMAND.iter().map(|s| (*s).to_owned()).collect()),
        working_dir: Some(POD_WORKSPACE.to_owned()),
        env: Some(
            command_env(env)
                .into_iter()
                .map(|(name, value)| EnvVar {
                    name,
                    value: Some(value),
                    ..EnvVar::default()
                })
                .collect(),
        ),
        ports: ports(env),
        resources: resources(spec),
        security_context: container_security(security),
        volume_mounts: Some(vec![
            mount(POD_ROOT, None),
            mount(POD_WORKSPACE, Some("workspace")),
            mount(&format!("{POD_ROOT}/home"), Some("home")),
            mount("/tmp", Some("tmp")),
        ]),
        ..Container::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(object_name(env)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels(env, home)),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".to_owned()),
            share_process_namespace: Some(true),
            // `sleep` as the main process ignores SIGTERM: do not wait 30s for it.
            termination_grace_period_seconds: Some(2),
            active_deadline_seconds: spec
                .ttl
                .map(|ttl| ttl.as_secs().clamp(1, i64::MAX as u64) as i64),
            automount_service_account_token: (security >= SecurityLevel::Medium).then_some(false),
            security_context: unprivileged.then(|| PodSecurityContext {
                fs_group: Some(UNPRIVILEGED_ID),
                ..PodSecurityContext::default()
            }),
            volumes: Some(vec![Volume {
                name: VOLUME.to_owned(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: spec.limits.disk.map(|d| Quantity(d.0.to_string())),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// Requests and limits (equal) from the spec's memory, cpus and disk.
fn resources(spec: &EnvironmentSpec) -> Option<ResourceRequirements> {
    let limits = &spec.limits;
    let amounts: BTreeMap<String, Quantity> = [
        ("memory", limits.memory.map(|m| m.0.to_string())),
        (
            "cpu",
            limits
                .cpus
                .map(|c| format!("{}m", (c * 1000.0).round().max(1.0) as u64)),
        ),
        ("ephemeral-storage", limits.disk.map(|d| d.0.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_owned(), Quantity(v?))))
    .collect();
    (!amounts.is_empty()).then(|| ResourceRequirements {
        requests: Some(amounts.clone()),
        limits: Some(amounts),
        ..ResourceRequirements::default()
    })
}

/// The container's security context at `level` (see the module docs).
fn container_security(level: SecurityLevel) -> Option<SecurityContext> {
    let runtime_default = || SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    };
    let drop = |caps: &[&str]| Capabilities {
        add: None,
        drop: Some(caps.iter().map(|c| (*c).to_owned()).collect()),
    };
    match level {
        SecurityLevel::Low => None,
        SecurityLevel::Medium => Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(drop(&MEDIUM_CAP_DROP)),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
        SecurityLevel::High | SecurityLevel::Strict => Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(drop(&["ALL"])),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(UNPRIVILEGED_ID),
            run_as_group: Some(UNPRIVILEGED_ID),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
    }
}

/// A container port per leased port, named after the lease where the name fits Kubernetes'
/// rule (at most 15 of `a-z0-9-`, no `-` at either end or twice in a row; unique).
fn ports(env: &Environment) -> Option<Vec<ContainerPort>> {
    let mut seen = Vec::new();
    let ports: Vec<ContainerPort> = env
        .ports
        .iter()
        .map(|(name, port)| {
            let name = port_name(name.as_str()).filter(|n| !seen.contains(n));
            if let Some(n) = &name {
                seen.push(n.clone());
            }
            ContainerPort {
                name,
                container_port: i32::from(*port),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }
        })
        .collect();
    (!ports.is_empty()).then_some(ports)
}

/// `name` as a Kubernetes port name, if anything of it is left.
fn port_name(name: &str) -> Option<String> {
    let mut out = String::new();
    for c in name.chars() {
        let c = if c == '_' { '-' } else { c };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    out.truncate(15);
    let out = out.trim_matches('-');
    (!out.is_empty() && out.chars().any(|c| c.is_ascii_lowercase())).then(|| out.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_fit_kubernetes_rule() {
        assert_eq!(port_name("http").as_deref(), Some("http"));
        assert_eq!(port_name("db__main").as_deref(), Some("db-main"));
        assert_eq!(
            port_name("a_very_long_port_name").as_deref(),
            Some("a-very-long-por")
        );
        assert_eq!(
            port_name("abcdefghijklmn-x").as_deref(),
            Some("abcdefghijklmn")
        );
    }
}
