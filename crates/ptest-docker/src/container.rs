//! What a container of an environment looks like: its name, labels, mounts, limits, security
//! options and network, built from the environment's spec. Everything here is a pure function
//! of the spec, so the mapping is tested without an engine.
//!
//! # Layout inside the container
//!
//! The environment root is mounted read-only at [`CONTAINER_ROOT`] (`/ptest`), so the
//! `.ptest-env` marker cannot be changed from inside; each directory of its anatomy
//! (`workspace/`, `home/`, `tmp/`, `logs/`, `run/`) is mounted read-write on top of it at
//! `/ptest/<dir>`, and `workspace/` once more at [`CONTAINER_WORKSPACE`] (`/workspace`), the
//! working directory. Commands see `PTEST_ENV_ROOT=/ptest`, `HOME=/ptest/home`,
//! `TMPDIR=/ptest/tmp`.
//!
//! The main process is Docker's init (`init: true`, PID 1, reaping what exec'd commands leave)
//! running `sleep 2147483647`: the only thing the image must provide is a `sleep` on its
//! `PATH` (busybox, coreutils and every distribution image have one). The image's own
//! entrypoint and command are not run.
//!
//! # Security levels
//!
//! | level | what the container gets |
//! |---|---|
//! | `low` | Docker's defaults: root, Docker's default capability set, its default seccomp profile (and AppArmor profile where the host has AppArmor) |
//! | `medium` (default) | plus `no-new-privileges` and these capabilities dropped: [`MEDIUM_CAP_DROP`] |
//! | `high` | runs as uid:gid 65534:65534, every capability dropped, `no-new-privileges`, read-only root filesystem; network `none` unless asked for |
//! | `strict` | `high`, and the engine must have its default seccomp profile on (create fails otherwise); Landlock has no Docker equivalent and is not applied |
//!
//! Every level keeps Docker's default seccomp profile: ptest never passes `seccomp=unconfined`.
//! What Docker's defaults already refuse to root in a container, at every level: mounts
//! (remounting `/` read-write, binding `/` elsewhere: no `CAP_SYS_ADMIN`), new user namespaces
//! (the seccomp profile refuses `unshare`/`clone` with namespace flags), writes to `/proc/sys`
//! and `/sys` (mounted read-only, so no sysctl and no cgroup `release_agent`), reading
//! `/proc/kcore`, `/proc/keys`, `/proc/timer_list` (masked) and writing `/proc/sysrq-trigger`
//! (read-only), device nodes other than the container's own (the devices cgroup; from
//! `medium` up `MKNOD` is dropped as well), and the host's sockets (none is mounted unless
//! asked for, see below). `crates/ptest/tests/docker_hostile.rs` tries each from inside.
//!
//! # Scratch space: `/tmp` and `/dev/shm`
//!
//! At every level `/tmp` is a tmpfs (mode 1777, `nosuid`, `nodev`) of at most
//! [`DEFAULT_TMP_SIZE`] (1 GiB), and `/dev/shm` Docker's own tmpfs of [`DEFAULT_SHM_SIZE`]
//! (64 MiB, Docker's default, set explicitly): a command cannot fill the host's disk through
//! either, and what it writes there is memory charged to the container (so `--memory` bounds
//! it too).
//!
//! With `--disk` or `--files` the environment root is a size- and inode-limited tmpfs on the
//! host (see [`ptest_core::limited_root`]), and `/tmp` and `/dev/shm` are its `tmp/` and `shm/`
//! directories: the root, `/tmp` and `/dev/shm` share the one limit, as at the `basic` level,
//! and `env stats` DISK counts them all. The image's own writable layer (what a command writes
//! to `/etc`, `/var`, `/usr` at `low` and `medium`) is not covered: Docker bounds it only with
//! `--storage-opt size`, which needs the overlay2 driver on xfs mounted with `pquota`. At
//! `high` and `strict` that layer is read-only, so `--disk` bounds everything a command can
//! write.
//!
//! # Host sockets
//!
//! No host socket is in a container (no `docker.sock`) unless the environment asks for it by
//! path (`--expose-socket PATH`, a template's `expose_sockets`): each is bind-mounted
//! read-only (the socket answers; its inode cannot be changed from inside) at the same path.
//! Create refuses a path that is not a Unix socket on this host.
//!
//! # Networks
//!
//! `none` → Docker's `none`; `loopback` → Docker's `none` too, which is a network namespace
//! with only `lo` (exactly what `loopback` means); `host` → `host`; `bridge` (the default below
//! `high`) → the user-defined network `ptest-<home hash>`, where the container is reachable from
//! its neighbours by its environment name (a network alias).
//!
//! # Ports
//!
//! Each port leased to the environment (`PTEST_PORT_<NAME>=P`) is, on the bridge network,
//! published from the container's port P to the host's `127.0.0.1:P`, so a service listening
//! on `$PTEST_PORT_<NAME>` inside is reached at the same port from the host. With the host
//! network it is the host's port already; with `none` and `loopback` nothing is published.
//!
//! # Limits
//!
//! `memory` → memory and memory+swap both set to it (swap counted); `cpus` → `NanoCpus`;
//! `pids` → the pids cgroup limit; `nofile` and `fsize` → those ulimits (soft = hard); `disk`
//! and `files` → the root's tmpfs (see above).

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkingConfig,
    PortBinding, ResourcesUlimits,
};
use ptest_core::{
    Environment, EnvironmentSpec, MEDIUM_CAP_DROP, NetworkMode, RUN_LABEL, SecurityLevel,
    limited_root, root,
};

/// Label naming the environment id a Docker object belongs to.
pub const LABEL_ENV: &str = ptest_core::ENV_LABEL;
/// Label naming (by hash, see [`home_hash`]) the `PTEST_HOME` that made a Docker object.
pub const LABEL_HOME: &str = ptest_core::HOME_LABEL;
/// Label with the environment's name, for people reading `docker ps`.
pub const LABEL_NAME: &str = "ptest.name";
/// Where the environment root is mounted (read-only) inside the container.
pub const CONTAINER_ROOT: &str = "/ptest";
/// Where `workspace/` is mounted inside the container: the working directory.
pub const CONTAINER_WORKSPACE: &str = "/workspace";
/// The user of `high` and `strict` containers (`nobody:nogroup`).
pub const UNPRIVILEGED_USER: &str = "65534:65534";
/// The size of a container's `/tmp` without `--disk` or `--files`: room for what test suites
/// unpack and build there, bounded so that a runaway writer stops short of the host's memory.
pub const DEFAULT_TMP_SIZE: u64 = 1 << 30;
/// The size of a container's `/dev/shm` without `--disk` or `--files`: Docker's own default.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;
/// The main command of every container (after Docker's init): sleep "forever" (68 years).
pub const MAIN_COMMAND: [&str; 2] = ["sleep", "2147483647"];

/// A short stable hash of a `PTEST_HOME` path: 12 hex digits of its SHA-256.
pub fn home_hash(home: &Path) -> String {
    ptest_core::Home::at(home).hash()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The container's name: `ptest-<env name>-<env id>`.
pub fn container_name(env: &Environment) -> String {
    format!("ptest-{}-{}", env.name, env.id)
}

/// Docker's default bridge network, which a `docker run` without `--network` joins.
pub const DEFAULT_BRIDGE: &str = "bridge";

/// The bridge network `env` joins in `bridge` mode: its run's own,
/// `ptest-<home hash>-<run id>`, when it carries the label [`RUN_LABEL`] (every environment of
/// a `ptest run` does, and anyone may set it), so the run's containers reach each other by
/// name and nobody else's; else, like `docker run`, Docker's default bridge
/// ([`DEFAULT_BRIDGE`]): the outside world and published ports, no names. A user-defined
/// network costs Docker about 15% more per container start and remove, which an environment
/// with no neighbours to name would pay for nothing.
pub fn network_name(home_hash: &str, env: &Environment) -> String {
    match run_of(env) {
        Some(run) => format!("ptest-{home_hash}-{run}"),
        None => DEFAULT_BRIDGE.to_owned(),
    }
}

/// The run `env` belongs to, if its label is usable in a network name.
pub(crate) fn run_of(env: &Environment) -> Option<&str> {
    env.spec
        .labels
        .get(RUN_LABEL)
        .map(String::as_str)
        .filter(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// The security level applied: the spec's, else `medium` (Docker applies every level).
pub fn effective_security(spec: &EnvironmentSpec) -> SecurityLevel {
    spec.security.unwrap_or(SecurityLevel::Medium)
}

/// The network mode applied: the spec's, else `none` at `high` and above, else `bridge`.
pub fn effective_network(spec: &EnvironmentSpec) -> NetworkMode {
    spec.network
        .unwrap_or(if effective_security(spec) >= SecurityLevel::High {
            NetworkMode::None
        } else {
            NetworkMode::Bridge
        })
}

/// What a container cannot apply from `spec`, with the reason for each.
pub fn unsupported(spec: &EnvironmentSpec) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(cpus) = spec.limits.cpus
        && !(cpus.is_finite() && cpus > 0.0)
    {
        out.push(format!("cpus = {cpus}: must be a positive number of cores"));
    }
    if spec.virtualenv.is_some() {
        out.push("settings of the virtualenv level".to_owned());
    }
    if spec.kubernetes.is_some() {
        out.push("settings of the kubernetes level (namespace, context)".to_owned());
    }
    if spec.overlay.is_some() {
        out.push(
            "an overlaid workspace (overlay): a container's /workspace is the root's \
             workspace/ bind-mounted; copy the directory into it instead"
                .to_owned(),
        );
    }
    out
}

/// The variables every command sees, with paths as the container sees them.
pub fn command_env(env: &Environment) -> Vec<(String, String)> {
    env.command_env()
        .into_iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "PTEST_ENV_ROOT" => CONTAINER_ROOT.to_owned(),
                "HOME" => format!("{CONTAINER_ROOT}/home"),
                "TMPDIR" => format!("{CONTAINER_ROOT}/tmp"),
                _ => v,
            };
            (k, v)
        })
        .collect()
}

/// The labels of every object made for `env` by the home with hash `home`.
pub(crate) fn labels(env: &Environment, home: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_ENV.to_owned(), env.id.to_string()),
        (LABEL_HOME.to_owned(), home.to_owned()),
        (LABEL_NAME.to_owned(), env.name.to_string()),
    ])
}

fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_owned()),
        source: Some(source.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Mount::default()
    }
}

/// The container to create for `env` from `image`, by the home with hash `home`.
pub(crate) fn create_body(env: &Environment, image: &str, home: &str) -> ContainerCreateBody {
    let spec = &env.spec;
    let security = effective_security(spec);
    let network = effective_network(spec);

    let mut mounts = vec![bind(&env.root, CONTAINER_ROOT, true)];
    // ptest's own directories read-only ([`root::OWN`]), `run/net/` writable again.
    for dir in root::ANATOMY.iter().chain([&root::OWN_WRITABLE]) {
        mounts.push(bind(
            &env.root.join(dir),
            &format!("{CONTAINER_ROOT}/{dir}"),
            root::OWN.contains(dir),
        ));
    }
    mounts.push(bind(&env.workspace(), CONTAINER_WORKSPACE, false));
    let limited_root = limited_root::limits(spec, 0).is_some();
    if limited_root {
        // Scratch space inside the size-limited root: one limit for everything written.
        mounts.push(bind(&env.root.join("tmp"), "/tmp", false));
        mounts.push(bind(
            &env.root.join(limited_root::SHM_DIR),
            "/dev/shm",
            false,
        ));
    }
    for socket in &spec.expose_sockets {
        let path = socket.path();
        mounts.push(bind(path, &path.display().to_string(), true));
    }

    let limits = &spec.limits;
    let memory = limits.memory.map(|m| m.0.min(i64::MAX as u64) as i64);
    let mut host = HostConfig {
        mounts: Some(mounts),
        init: Some(true),
        memory,
        memory_swap: memory,
        nano_cpus: limits.cpus.map(|c| (c * 1e9).round() as i64),
        pids_limit: limits.pids.map(|p| p.min(i64::MAX as u64) as i64),
        ulimits: {
            let ulimit = |name: &str, n: u64| {
                let n = n.min(i64::MAX as u64) as i64;
                ResourcesUlimits {
                    name: Some(name.to_owned()),
                    soft: Some(n),
                    hard: Some(n),
                }
            };
            let ulimits: Vec<ResourcesUlimits> = [
                limits.nofile.map(|n| ulimit("nofile", n)),
                limits.fsize.map(|s| ulimit("fsize", s.0)),
            ]
            .into_iter()
            .flatten()
            .collect();
            (!ulimits.is_empty()).then_some(ulimits)
        },
        network_mode: Some(match network {
            NetworkMode::Host => "host".to_owned(),
            NetworkMode::None | NetworkMode::Loopback => "none".to_owned(),
            NetworkMode::Bridge => network_name(home, env),
        }),
        // Without a limited root, Docker's own tmpfs mounts, bounded (see the module docs).
        tmpfs: (!limited_root).then(|| {
            HashMap::from([(
                "/tmp".to_owned(),
                format!("rw,exec,nosuid,nodev,mode=1777,size={DEFAULT_TMP_SIZE}"),
            )])
        }),
        shm_size: (!limited_root).then_some(DEFAULT_SHM_SIZE as i64),
        ..HostConfig::default()
    };
    let mut user = None;
    match security {
        SecurityLevel::Low => {}
        SecurityLevel::Medium => {
            host.cap_drop = Some(MEDIUM_CAP_DROP.iter().map(|c| (*c).to_owned()).collect());
            host.security_opt = Some(vec!["no-new-privileges:true".to_owned()]);
        }
        SecurityLevel::High | SecurityLevel::Strict => {
            user = Some(UNPRIVILEGED_USER.to_owned());
            host.cap_drop = Some(vec!["ALL".to_owned()]);
            host.security_opt = Some(vec!["no-new-privileges:true".to_owned()]);
            host.readonly_rootfs = Some(true);
        }
    }
    let published: Vec<u16> = if network == NetworkMode::Bridge {
        env.ports.values().copied().collect()
    } else {
        Vec::new()
    };
    if !published.is_empty() {
        host.port_bindings = Some(
            published
                .iter()
                .map(|p| {
                    (
                        format!("{p}/tcp"),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".to_owned()),
                            host_port: Some(p.to_string()),
                        }]),
                    )
                })
                .collect(),
        );
    }
    // Aliases exist only on user-defined networks: the run's, not the default bridge.
    let run_network = network == NetworkMode::Bridge && run_of(env).is_some();
    let networking_config = run_network.then(|| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network_name(home, env),
            EndpointSettings {
                aliases: Some(vec![env.name.to_string()]),
                ..EndpointSettings::default()
            },
        )])),
    });
    ContainerCreateBody {
        image: Some(image.to_owned()),
        exposed_ports: (!published.is_empty())
            .then(|| published.iter().map(|p| format!("{p}/tcp")).collect()),
        entrypoint: Some(MAIN_COMMAND.iter().map(|s| (*s).to_owned()).collect()),
        cmd: None,
        user,
        working_dir: Some(CONTAINER_WORKSPACE.to_owned()),
        env: Some(
            command_env(env)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        labels: Some(labels(env, home)),
        stop_timeout: Some(2),
        host_config: Some(host),
        networking_config,
        ..ContainerCreateBody::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ptest_core::{ByteSize, CleanupPolicy, EnvId, EnvName, EnvironmentStatus, IsolationLevel};

    fn env(spec: EnvironmentSpec) -> Environment {
        Environment {
            id: EnvId::random(),
            name: EnvName::new("web").unwrap(),
            level: IsolationLevel::Docker,
            status: EnvironmentStatus::Initializing,
            root: "/h/envs/x".into(),
            spec: EnvironmentSpec {
                cleanup: CleanupPolicy::OnRequest,
                ..spec
            },
            created_at: jiff::Timestamp::now(),
            updated_at: jiff::Timestamp::now(),
            expires_at: None,
            error: None,
            details: Default::default(),
            ports: Default::default(),
            activated_at: None,
            deactivated_at: None,
            last_activity: None,
        }
    }

    #[test]
    fn limits_map_to_host_config_with_swap_counted() {
        let mut spec = EnvironmentSpec::new(IsolationLevel::Docker);
        spec.limits.memory = Some(ByteSize(32 << 20));
        spec.limits.cpus = Some(0.5);
        spec.limits.pids = Some(64);
        spec.limits.nofile = Some(256);
        let body = create_body(&env(spec), "img", "abc");
        let host = body.host_config.unwrap();
        assert_eq!(host.memory, Some(32 << 20));
        assert_eq!(host.memory_swap, Some(32 << 20));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.pids_limit, Some(64));
        let ulimit = &host.ulimits.unwrap()[0];
        assert_eq!(
            (ulimit.name.as_deref(), ulimit.soft, ulimit.hard),
            (Some("nofile"), Some(256), Some(256))
        );
        assert_eq!(host.init, Some(true));
    }

    #[test]
    fn high_is_unprivileged_read_only_and_offline_by_default() {
        let mut spec = EnvironmentSpec::new(IsolationLevel::Docker);
        spec.security = Some(SecurityLevel::High);
        let body = create_body(&env(spec), "img", "abc");
        assert_eq!(body.user.as_deref(), Some(UNPRIVILEGED_USER));
        let host = body.host_config.unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert!(host.tmpfs.unwrap().contains_key("/tmp"));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert!(body.networking_config.is_none());
    }

    #[test]
    fn outside_a_run_bridge_is_dockers_default_network() {
        let body = create_body(
            &env(EnvironmentSpec::new(IsolationLevel::Docker)),
            "img",
            "abc",
        );
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some(DEFAULT_BRIDGE)
        );
        // Aliases exist only on user-defined networks.
        assert!(body.networking_config.is_none());
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_HOME], "abc");
    }

    #[test]
    fn a_runs_environments_join_the_runs_own_network() {
        let mut spec = EnvironmentSpec::new(IsolationLevel::Docker);
        spec.labels.insert(RUN_LABEL.into(), "0a1b2c".into());
        let body = create_body(&env(spec), "img", "abc");
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("ptest-abc-0a1b2c")
        );
        assert!(
            body.networking_config.unwrap().endpoints_config.unwrap()["ptest-abc-0a1b2c"]
                .aliases
                .is_some()
        );
    }

    #[test]
    fn loopback_is_dockers_none_mode() {
        let mut spec = EnvironmentSpec::new(IsolationLevel::Docker);
        spec.network = Some(NetworkMode::Loopback);
        let body = create_body(&env(spec), "img", "abc");
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("none")
        );
    }

    #[test]
    fn root_is_read_only_and_anatomy_read_write() {
        let body = create_body(
            &env(EnvironmentSpec::new(IsolationLevel::Docker)),
            "img",
            "abc",
        );
        let mounts = body.host_config.unwrap().mounts.unwrap();
        let find = |t: &str| {
            mounts
                .iter()
                .find(|m| m.target.as_deref() == Some(t))
                .unwrap()
        };
        assert_eq!(find("/ptest").read_only, Some(true));
        assert_eq!(find("/ptest/home").read_only, Some(false));
        assert_eq!(
            find("/workspace").source.as_deref(),
            Some("/h/envs/x/workspace")
        );
    }

    fn target<'a>(body: &'a ContainerCreateBody, target: &str) -> Option<&'a Mount> {
        let mounts = body.host_config.as_ref()?.mounts.as_ref()?;
        mounts.iter().find(|m| m.target.as_deref() == Some(target))
    }

    #[test]
    fn scratch_space_is_bounded_by_default() {
        let body = create_body(
            &env(EnvironmentSpec::new(IsolationLevel::Docker)),
            "img",
            "abc",
        );
        let host = body.host_config.unwrap();
        let tmp = &host.tmpfs.unwrap()["/tmp"];
        assert!(tmp.contains("size=1073741824"), "{tmp}");
        assert_eq!(host.shm_size, Some(64 << 20));
    }

    #[test]
    fn with_a_disk_limit_scratch_space_lives_in_the_root() {
        let mut spec = EnvironmentSpec::new(IsolationLevel::Docker);
        spec.limits.disk = Some(ByteSize(1 << 30));
        assert!(unsupported(&spec).is_empty());
        let body = create_body(&env(spec), "img", "abc");
        assert_eq!(
            target(&body, "/tmp").unwrap().source.as_deref(),
            Some("/h/envs/x/tmp")
        );
        assert_eq!(
            target(&body, "/dev/shm").unwrap().source.as_deref(),
            Some("/h/envs/x/shm")
        );
        let host = body.host_config.unwrap();
        assert!(host.tmpfs.is_none() && host.shm_size.is_none());
    }

    #[test]
    fn exposed_sockets_are_bound_read_only_at_their_path() {
        let mut spec = EnvironmentSpec::new(IsolationLevel::Docker);
        spec.expose_sockets = vec!["/run/x.sock".parse().unwrap()];
        let body = create_body(&env(spec), "img", "abc");
        let socket = target(&body, "/run/x.sock").unwrap();
        assert_eq!(socket.source.as_deref(), Some("/run/x.sock"));
        assert_eq!(socket.read_only, Some(true));
        let plain = create_body(
            &env(EnvironmentSpec::new(IsolationLevel::Docker)),
            "img",
            "abc",
        );
        assert!(target(&plain, "/run/x.sock").is_none());
    }

    #[test]
    fn command_env_points_into_the_container() {
        let vars = command_env(&env(EnvironmentSpec::new(IsolationLevel::Docker)));
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("PTEST_ENV_ROOT"), "/ptest");
        assert_eq!(get("HOME"), "/ptest/home");
        assert_eq!(get("TMPDIR"), "/ptest/tmp");
        assert_eq!(get("PTEST_ENV_NAME"), "web");
    }
}
