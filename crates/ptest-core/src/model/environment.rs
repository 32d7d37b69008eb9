//! An environment and the spec it was created from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::limit_range;
use super::{
    AllowRule, CleanupPolicy, EnvironmentStatus, ExposedSocket, IsolationLevel, SecurityLevel,
};
use crate::duration;
use crate::name::{EnvId, EnvName};
use crate::ports::PortName;
use crate::size::ByteSize;

/// Free-form `key=value` labels, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// The label every environment of a `ptest run` carries, with the run id as value: engines
/// group a run's environments by it (a docker run's own bridge network).
pub const RUN_LABEL: &str = "ptest.run";
/// Label naming the environment id an object outside the store (a container, a pod) belongs
/// to: what the reapers match it back by.
pub const ENV_LABEL: &str = "ptest.env";
/// Label naming (by hash) the `PTEST_HOME` that made such an object: a reaper touches only
/// its own home's.
pub const HOME_LABEL: &str = "ptest.home";

/// The label naming the process that runs a `ptest run`'s environments, `PID:START_TICKS`
/// ([`crate::liveness::ProcessId`]): `ptest gc` removes the `on_shutdown` environments of a
/// run whose process is gone, and `gc --shutdown` leaves those of a live run alone.
pub const RUN_OWNER_LABEL: &str = "ptest.run.owner";

/// What the caller asks for when creating an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// Unique name; a random one (`env-<id>`) when absent.
    pub name: Option<EnvName>,
    /// Isolation level.
    pub level: IsolationLevel,
    /// Root directory; `$PTEST_HOME/envs/<id>` when absent. Must not exist or be empty.
    pub path: Option<PathBuf>,
    /// Labels for filtering.
    #[serde(default)]
    pub labels: Labels,
    /// When the environment is removed.
    pub cleanup: CleanupPolicy,
    /// Time to live for the `scheduled` policy.
    #[serde(with = "duration::option", default)]
    pub ttl: Option<Duration>,
    /// Default timeout for commands run in it; none when absent.
    #[serde(with = "duration::option", default)]
    pub exec_timeout: Option<Duration>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Network mode; the level's default when absent.
    #[serde(default)]
    pub network: Option<NetworkMode>,
    /// Security level; the strongest the host supports up to `medium` when absent.
    #[serde(default)]
    pub security: Option<SecurityLevel>,
    /// Apply what this host can and record what was dropped, instead of refusing a level or
    /// limit the host cannot apply.
    #[serde(default)]
    pub allow_degraded: bool,
    /// Named host ports to lease at creation (`PTEST_PORT_<NAME>` in every command).
    #[serde(default)]
    pub ports: Vec<PortName>,
    /// Where a `bridge` environment may send: everything else is dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<AllowRule>,
    /// Host Unix sockets shown inside at their own paths (pods get a fresh `/run` without
    /// the host's control sockets; a test that drives Docker asks for its socket here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_sockets: Vec<ExposedSocket>,
    /// Settings of the `virtualenv` level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualenv: Option<VirtualenvSpec>,
    /// Settings of the `docker` level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerSpec>,
    /// Settings of the `kubernetes` level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSpec>,
    /// A host directory shown in `workspace/` through a copy-on-write layer, so that commands
    /// can write to it while it stays as it was (ptest runs a project this way). Needs a
    /// sandboxed `basic` or `virtualenv` environment (security `medium` and above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlaySpec>,
}

/// A directory seen through a copy-on-write layer: overlayfs with the directory as its
/// read-only lower layer and the environment's [`Environment::overlay_upper`] as the upper
/// one, where every write lands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlaySpec {
    /// The directory shown; never written to.
    pub lower: PathBuf,
    /// Paths relative to `lower` left out of the view (they look deleted), as a project copy
    /// leaves out `.git` or `target/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hide: Vec<PathBuf>,
}

/// Resource limits; an absent limit is not applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory, swap counted (at least [`limit_range::MEMORY_MIN`]).
    #[serde(
        default,
        deserialize_with = "limit_range::serde_checked::memory",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<ByteSize>,
    /// CPU as a fraction of cores (`0.5`, `2`).
    #[serde(
        default,
        deserialize_with = "limit_range::serde_checked::cpus",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[serde(
        default,
        deserialize_with = "limit_range::serde_checked::pids",
        skip_serializing_if = "Option::is_none"
    )]
    pub pids: Option<u64>,
    /// Maximum open files per process.
    #[serde(
        default,
        deserialize_with = "limit_range::serde_checked::nofile",
        skip_serializing_if = "Option::is_none"
    )]
    pub nofile: Option<u64>,
    /// Largest file a process may write (RLIMIT_FSIZE; SIGXFSZ past it).
    #[serde(
        default,
        deserialize_with = "limit_range::serde_checked::fsize",
        skip_serializing_if = "Option::is_none"
    )]
    pub fsize: Option<ByteSize>,
    /// Disk space of the root (at least [`limit_range::DISK_MIN`]).
    #[serde(
        default,
        deserialize_with = "limit_range::serde_checked::disk",
        skip_serializing_if = "Option::is_none"
    )]
    pub disk: Option<ByteSize>,
    /// Number of files in the root.
    #[serde(
        default,
        deserialize_with = "limit_range::serde_checked::files",
        skip_serializing_if = "Option::is_none"
    )]
    pub files: Option<u64>,
}

/// How an environment reaches the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The host's network.
    Host,
    /// Its own network namespace with only `lo`.
    Loopback,
    /// No interface at all.
    None,
    /// Its own namespace (or container network) joined to a ptest bridge.
    Bridge,
}

/// The Python side of a `virtualenv` environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualenvSpec {
    /// Interpreter: a version (`3.11`), a path or a command; the default `python3` when absent.
    #[serde(default)]
    pub python: Option<String>,
    /// Requirements to install (`requests==2.31`, `-e .`).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Requirements files.
    #[serde(default)]
    pub requirements: Vec<PathBuf>,
    /// Constraints files.
    #[serde(default)]
    pub constraints: Vec<PathBuf>,
    /// Extra places to find packages (directories of wheels or URLs), as pip's `--find-links`.
    #[serde(default)]
    pub find_links: Vec<String>,
    /// Use no package index, only `find_links`.
    #[serde(default)]
    pub no_index: bool,
    /// The package index to use instead of PyPI.
    #[serde(default)]
    pub index_url: Option<String>,
    /// More package indexes.
    #[serde(default)]
    pub extra_index_urls: Vec<String>,
    /// Use nothing from the network (uv: its cache and `find_links`; pip: `find_links` only).
    #[serde(default)]
    pub offline: bool,
    /// The project under test, as a wheel: its dependencies are installed with `packages`
    /// (and hashed with them, so a template holds them), the wheel itself without
    /// dependencies after them (never hashed: a new build of the project reuses the template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectWheel>,
}

/// The wheel of a project under test and the extras asked for with it (`.[test]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectWheel {
    /// The wheel file.
    pub wheel: PathBuf,
    /// Extras whose dependencies are installed too.
    #[serde(default)]
    pub extras: Vec<String>,
}

/// The container of a `docker` environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSpec {
    /// Image to run (must exist locally or be pullable); a valid reference (see
    /// [`super::image_ref`]).
    #[serde(default, deserialize_with = "super::image_ref::deserialize_checked")]
    pub image: Option<String>,
    /// Directory with a Dockerfile to build the image from.
    #[serde(default)]
    pub build: Option<PathBuf>,
}

/// The pod of a `kubernetes` environment and where it goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    /// Image the pod runs (the cluster's nodes must be able to pull it); a valid reference.
    #[serde(default, deserialize_with = "super::image_ref::deserialize_checked")]
    pub image: Option<String>,
    /// Namespace of the pod; the kubeconfig context's namespace (else `default`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Kubeconfig context; the current context when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// A container's settings as given before the level is known (`env create`'s `--image`,
/// `--build`, `--namespace` and `--context`, the Python API's keywords, a template's keys):
/// one place decides which level they ask for and which section of the spec they fill.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerArgs {
    /// The image to run.
    pub image: Option<String>,
    /// A directory with a Dockerfile to build the image from.
    pub build: Option<PathBuf>,
    /// The cluster namespace.
    pub namespace: Option<String>,
    /// The kubeconfig context.
    pub context: Option<String>,
}

impl ContainerArgs {
    /// The level these ask for: a namespace or context means a cluster (`kubernetes`), an
    /// image or build `docker`; `None` when they ask for none.
    pub fn level(&self) -> Option<IsolationLevel> {
        if self.namespace.is_some() || self.context.is_some() {
            Some(IsolationLevel::Kubernetes)
        } else if self.image.is_some() || self.build.is_some() {
            Some(IsolationLevel::Docker)
        } else {
            None
        }
    }

    /// The spec's sections at `level`: a kubernetes pod runs the image, elsewhere image and
    /// build are docker's. A namespace or context off the kubernetes level still makes a
    /// kubernetes section, for the level's engine to refuse with the reason.
    pub fn into_sections(
        self,
        level: IsolationLevel,
    ) -> (Option<DockerSpec>, Option<KubernetesSpec>) {
        let cluster = self.namespace.is_some() || self.context.is_some();
        if level == IsolationLevel::Kubernetes {
            let pod = KubernetesSpec {
                image: self.image,
                namespace: self.namespace,
                context: self.context,
            };
            let docker = self.build.map(|build| DockerSpec {
                image: None,
                build: Some(build),
            });
            return (docker, Some(pod));
        }
        let docker = (self.image.is_some() || self.build.is_some()).then_some(DockerSpec {
            image: self.image,
            build: self.build,
        });
        let pod = cluster.then_some(KubernetesSpec {
            image: None,
            namespace: self.namespace,
            context: self.context,
        });
        (docker, pod)
    }
}

impl EnvironmentSpec {
    /// A spec at `level` with the `on_request` policy and nothing else set.
    pub fn new(level: IsolationLevel) -> Self {
        Self {
            name: None,
            level,
            path: None,
            labels: Labels::new(),
            cleanup: CleanupPolicy::OnRequest,
            ttl: None,
            exec_timeout: None,
            limits: Limits::default(),
            network: None,
            security: None,
            allow_degraded: false,
            ports: Vec::new(),
            allow: Vec::new(),
            expose_sockets: Vec::new(),
            virtualenv: None,
            docker: None,
            kubernetes: None,
            overlay: None,
        }
    }

    /// Sets the name.
    pub fn name(mut self, name: EnvName) -> Self {
        self.name = Some(name);
        self
    }
}

/// What a listing shows of an environment ([`crate::Manager::list_summaries`]): its own
/// columns and one field of its spec, read without parsing the rest of the record (parsing
/// whole records was most of `env list`'s cost per environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSummary {
    /// As [`Environment::id`].
    pub id: EnvId,
    /// As [`Environment::name`].
    pub name: EnvName,
    /// As [`Environment::level`].
    pub level: IsolationLevel,
    /// As [`Environment::status`].
    pub status: EnvironmentStatus,
    /// The spec's cleanup policy.
    pub cleanup: CleanupPolicy,
    /// As [`Environment::created_at`].
    pub created_at: Timestamp,
    /// Host path of the root directory.
    pub root: PathBuf,
}

impl From<Environment> for EnvSummary {
    fn from(env: Environment) -> EnvSummary {
        EnvSummary {
            id: env.id,
            name: env.name,
            level: env.level,
            status: env.status,
            cleanup: env.spec.cleanup,
            created_at: env.created_at,
            root: env.root,
        }
    }
}

/// An environment as recorded in the state store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// Short unique id.
    pub id: EnvId,
    /// Unique name.
    pub name: EnvName,
    /// Isolation level.
    pub level: IsolationLevel,
    /// Where it is in its lifecycle.
    pub status: EnvironmentStatus,
    /// Host path of the root directory.
    pub root: PathBuf,
    /// The spec it was created from.
    pub spec: EnvironmentSpec,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its record last changed.
    pub updated_at: Timestamp,
    /// When the `scheduled` policy lets `gc` remove it.
    pub expires_at: Option<Timestamp>,
    /// When it last became active (created, or `env start`).
    #[serde(default)]
    pub activated_at: Option<Timestamp>,
    /// When it was last stopped (`env stop`).
    #[serde(default)]
    pub deactivated_at: Option<Timestamp>,
    /// When anything last happened to it (its last event: a command, a process, a package).
    #[serde(default)]
    pub last_activity: Option<Timestamp>,
    /// What went wrong, when `status` is `error`.
    pub error: Option<String>,
    /// Facts the engine recorded about what it built (interpreter, spec hash, container).
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Host ports it holds, by name.
    #[serde(default)]
    pub ports: BTreeMap<PortName, u16>,
}

impl Environment {
    /// Its `workspace/` directory: the working directory of its commands.
    pub fn workspace(&self) -> PathBuf {
        self.root.join("workspace")
    }
    /// Its `home/` directory: `HOME` of its commands.
    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }
    /// Its `tmp/` directory: `TMPDIR` of its commands.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// Its `logs/` directory: process output.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Where writes to an overlaid `workspace/` land (see [`EnvironmentSpec::overlay`]):
    /// `overlay/upper/`, readable from the host.
    pub fn overlay_upper(&self) -> PathBuf {
        self.root.join("overlay").join("upper")
    }
    /// overlayfs's scratch directory beside [`Environment::overlay_upper`].
    pub fn overlay_work(&self) -> PathBuf {
        self.root.join("overlay").join("work")
    }
    /// Its `run/` directory: pid files and handles.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    /// The variables every command in it sees: `PTEST_ENV_*`, `HOME`, `TMPDIR`.
    pub fn command_env(&self) -> Vec<(String, String)> {
        vec![
            ("PTEST_ENV_ID".into(), self.id.to_string()),
            ("PTEST_ENV_NAME".into(), self.name.to_string()),
            ("PTEST_ENV_ROOT".into(), self.root.display().to_string()),
            ("HOME".into(), self.home().display().to_string()),
            ("TMPDIR".into(), self.tmp().display().to_string()),
        ]
        .into_iter()
        .chain(
            self.ports
                .iter()
                .map(|(name, port)| (name.env_var(), port.to_string())),
        )
        .collect()
    }
}

/// What an environment uses right now. A reading the engine cannot take is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceUsage {
    /// Bytes of files under the root (symlinks not followed).
    pub disk_bytes: Option<u64>,
    /// Number of files and directories under the root.
    pub files: Option<u64>,
    /// Memory in use, in bytes (the cgroup's count, or the processes' resident memory).
    pub memory_bytes: Option<u64>,
    /// Highest memory use seen, in bytes (cgroup only).
    pub memory_peak_bytes: Option<u64>,
    /// How many times the memory limit killed a process (cgroup only).
    pub oom_kills: Option<u64>,
    /// CPU time used, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Live processes.
    pub pids: Option<u64>,
    /// Bytes received over the network (containers only).
    #[serde(default)]
    pub network_rx_bytes: Option<u64>,
    /// Bytes sent over the network (containers only).
    #[serde(default)]
    pub network_tx_bytes: Option<u64>,
}
