//! Everything made on the cluster for one environment, as data: the pod ([`crate::pod`]) and,
//! where its network is limited, a NetworkPolicy ([`crate::policy`]); what a pod cannot apply
//! from a spec; and the YAML that `env create --dry-run -o yaml` prints.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use ptest_core::config::LevelDefaults;
use ptest_core::{
    AllowHost, CleanupPolicy, EnvId, Environment, EnvironmentSpec, EnvironmentStatus, Error,
    IsolationLevel, NetworkMode, Result,
};

use crate::{pod, policy};

/// The objects of one environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    /// Its pod.
    pub pod: Pod,
    /// Its NetworkPolicy, when its network is limited.
    pub network_policy: Option<NetworkPolicy>,
}

impl Manifests {
    /// The objects of `env` running `image` in `namespace`, made by the home with hash `home`.
    pub fn new(env: &Environment, image: &str, namespace: &str, home: &str) -> Self {
        Self {
            pod: pod::pod(env, image, namespace, home),
            network_policy: policy::network_policy(env, namespace, home),
        }
    }

    /// The objects as a YAML stream (`---` between documents), as `kubectl apply -f` takes it.
    pub fn to_yaml(&self) -> Result<String> {
        let mut docs = vec![yaml(&self.pod)?];
        if let Some(policy) = &self.network_policy {
            docs.push(yaml(policy)?);
        }
        Ok(docs.join("---\n"))
    }
}

fn yaml<T: serde::Serialize>(doc: &T) -> Result<String> {
    serde_saphyr::to_string(doc).map_err(|e| Error::Engine {
        level: IsolationLevel::Kubernetes,
        action: "write the manifests as YAML",
        source: e.into(),
    })
}

/// The image of a kubernetes spec, or why there is none.
pub fn image(spec: &EnvironmentSpec) -> Result<&str> {
    spec.kubernetes
        .as_ref()
        .and_then(|k| k.image.as_deref())
        .ok_or_else(|| {
            Error::Usage(
                "the kubernetes level needs an image the cluster's nodes can pull (--image NAME)"
                    .into(),
            )
        })
}

/// What a pod cannot apply from `spec`, with the reason for each.
pub fn unsupported(spec: &EnvironmentSpec) -> Vec<String> {
    let limits = &spec.limits;
    let mut out = Vec::new();
    let mut refuse = |what: bool, why: &str| {
        if what {
            out.push(why.to_owned());
        }
    };
    refuse(
        limits.cpus.is_some_and(|c| !(c.is_finite() && c > 0.0)),
        "cpus: must be a positive number of cores",
    );
    refuse(
        limits.pids.is_some(),
        "--pids: a pod has no process limit of its own (the kubelet's podPidsLimit sets one \
         for every pod of a node)",
    );
    refuse(
        limits.nofile.is_some(),
        "--nofile: a pod has no open-file limit of its own (the container runtime's applies)",
    );
    refuse(
        limits.fsize.is_some(),
        "--fsize: a pod has no file-size limit",
    );
    refuse(
        limits.files.is_some(),
        "--files: an emptyDir volume has no limit on its number of files",
    );
    refuse(
        spec.network == Some(NetworkMode::Host),
        "--network host: ptest does not put environments on a node's network",
    );
    refuse(
        spec.allow
            .iter()
            .any(|r| matches!(&r.host, AllowHost::Name(n) if n == "host")),
        "--allow host: the machine ptest runs on is no place a pod can name; give its address",
    );
    refuse(
        !spec.expose_sockets.is_empty(),
        "--expose-socket: a socket of this host cannot be shown in a pod on the cluster's nodes",
    );
    refuse(
        spec.virtualenv.is_some(),
        "settings of the virtualenv level",
    );
    refuse(
        spec.docker.is_some(),
        "settings of the docker level (--build: build the image and push it where the \
         cluster pulls from, then give it with --image)",
    );
    refuse(
        spec.overlay.is_some(),
        "an overlaid workspace (overlay): a pod's workspace is a volume on its node; copy the \
         project into it instead",
    );
    out
}

/// The environment `spec` would make, as `env create` would record it (the level's default
/// limits and TTL applied, a fresh id), for `--dry-run`: nothing is recorded or made.
pub fn planned(spec: EnvironmentSpec, defaults: &LevelDefaults) -> Environment {
    let mut spec = spec;
    let limits = &mut spec.limits;
    limits.memory = limits.memory.or(defaults.memory);
    limits.cpus = limits.cpus.or(defaults.cpus);
    limits.disk = limits.disk.or(defaults.disk);
    let ttl: Option<Duration> =
        (spec.cleanup == CleanupPolicy::Scheduled).then(|| spec.ttl.unwrap_or(defaults.ttl));
    let id = EnvId::random();
    let name = match &spec.name {
        Some(n) => n.clone(),
        None => format!("env-{id}")
            .parse()
            .expect("generated names are valid"),
    };
    let now = jiff::Timestamp::now();
    Environment {
        id,
        name,
        level: IsolationLevel::Kubernetes,
        status: EnvironmentStatus::Initializing,
        root: std::path::PathBuf::new(),
        spec: EnvironmentSpec { ttl, ..spec },
        created_at: now,
        updated_at: now,
        expires_at: None,
        activated_at: None,
        deactivated_at: None,
        last_activity: None,
        error: None,
        details: serde_json::Map::new(),
        ports: Default::default(),
    }
}
