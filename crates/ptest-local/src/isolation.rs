//! What sandboxing a `basic` or `virtualenv` environment gets: its spec (security level,
//! network mode, limits) resolved against what this host offers. A level or limit the host
//! cannot apply is an error naming the missing piece, unless the spec allows degrading, in
//! which case the drop is recorded on the environment.
//!
//! `PTEST_SANDBOX_DISABLE` (a comma-separated list of `namespaces`, `cgroups`, `seccomp`,
//! `landlock`, `quota`, `bridge`) makes the probe report those features as missing, so that refusals and
//! `--allow-degraded` can be exercised on a host that has everything; nothing is mocked below
//! the probe.

use std::sync::OnceLock;

use ptest_core::{EnvironmentSpec, Error, Finding, NetworkMode, Result, SecurityLevel};
use ptest_sandbox::{Capabilities, Controller, cgroup, landlock, seccomp};
use serde::{Deserialize, Serialize};

/// The cgroup parent every environment's group lives under.
pub(crate) const CGROUP_PARENT: &str = "ptest";

/// What this host offers, probed once per process.
#[derive(Debug, Clone)]
pub(crate) struct HostCaps {
    /// Why namespaces cannot be used, if they cannot.
    pub namespaces: std::result::Result<(), String>,
    /// Controllers available, or why cgroups cannot be used at all.
    pub cgroups: std::result::Result<Vec<Controller>, String>,
    /// Whether memory limits can count swap.
    pub swap_accounting: bool,
    /// The kernel's Landlock ABI version, or why there is none.
    pub landlock: std::result::Result<u32, String>,
    /// Why a seccomp filter cannot be installed, if it cannot.
    pub seccomp: std::result::Result<(), String>,
    /// Why size-limited roots (a tmpfs mounted per environment) cannot be made, if not.
    pub quota: std::result::Result<(), String>,
    /// Why `--network bridge` cannot be set up (beyond namespaces), if it cannot.
    pub bridge: std::result::Result<(), String>,
}

/// The variable naming features to treat as missing (see the module documentation).
pub(crate) const DISABLE_VAR: &str = "PTEST_SANDBOX_DISABLE";

impl HostCaps {
    /// The host's capabilities (probed on first use).
    pub fn get() -> &'static HostCaps {
        static CAPS: OnceLock<HostCaps> = OnceLock::new();
        CAPS.get_or_init(|| {
            let probe = cgroup::probe();
            let cgroups = match &probe.version {
                Err(e) => Err(e.clone()),
                Ok(_) => {
                    let have: Vec<Controller> = Controller::ALL
                        .iter()
                        .copied()
                        .filter(|c| probe.has(*c))
                        .collect();
                    if rustix::process::geteuid().is_root() {
                        Ok(have)
                    } else {
                        Err("not root, and this build does not use delegated cgroups".into())
                    }
                }
            };
            let root = rustix::process::geteuid().is_root();
            let caps = HostCaps {
                namespaces: namespaces_usable(),
                cgroups,
                swap_accounting: probe.swap_accounting,
                landlock: landlock::abi_version(),
                seccomp: seccomp::available(),
                quota: if root {
                    Ok(())
                } else {
                    Err("not root: mounting a size-limited root needs CAP_SYS_ADMIN".into())
                },
                bridge: if root {
                    ptest_sandbox::bridge::missing_tools()
                } else {
                    Err("not root: veth pairs and nftables rules need CAP_NET_ADMIN".into())
                },
            };
            caps.disabled(std::env::var(DISABLE_VAR).ok().as_deref())
        })
    }

    /// These capabilities less the features `disable` (the value of [`DISABLE_VAR`]) names.
    fn disabled(mut self, disable: Option<&str>) -> HostCaps {
        for name in disable.unwrap_or("").split(',').map(str::trim) {
            let why = || format!("disabled by {DISABLE_VAR}");
            match name {
                "namespaces" => self.namespaces = Err(why()),
                "cgroups" => self.cgroups = Err(why()),
                "seccomp" => self.seccomp = Err(why()),
                "landlock" => self.landlock = Err(why()),
                "quota" => self.quota = Err(why()),
                "bridge" => self.bridge = Err(why()),
                _ => {}
            }
        }
        self
    }

    /// Why `strict` cannot be applied, if it cannot (beyond what `high` needs).
    fn strict_missing(&self) -> Option<String> {
        let mut why = Vec::new();
        if let Err(e) = &self.seccomp {
            why.push(format!("seccomp: {e}"));
        }
        if let Err(e) = &self.landlock {
            why.push(format!("Landlock: {e}"));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// Why a pod on the host's network cannot be kept from the host's abstract Unix sockets
    /// (a Landlock scope, ABI 6), if it cannot.
    pub fn abstract_scope_missing(&self) -> Option<String> {
        match &self.landlock {
            Err(e) => Some(format!("no Landlock: {e}")),
            Ok(abi) if *abi < 6 => Some(format!(
                "the kernel's Landlock ABI is {abi}, scopes need 6 (Linux 6.12)"
            )),
            Ok(_) => None,
        }
    }

    /// Whether `bridge` can be applied (so there may be bridges to collect).
    pub fn bridge_usable(&self) -> bool {
        self.bridge_missing().is_none()
    }

    /// Why `bridge` cannot be applied, if it cannot.
    fn bridge_missing(&self) -> Option<String> {
        match (&self.namespaces, &self.bridge) {
            (Err(e), _) => Some(format!("needs namespaces: {e}")),
            (Ok(()), Err(e)) => Some(e.clone()),
            (Ok(()), Ok(())) => None,
        }
    }

    fn has(&self, controller: Controller) -> bool {
        self.cgroups.as_ref().is_ok_and(|c| c.contains(&controller))
    }

    /// Findings for `ptest doctor`.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = vec![Finding {
            check: "namespaces".into(),
            ok: self.namespaces.is_ok(),
            detail: match &self.namespaces {
                Ok(()) => {
                    "PID, mount, IPC, UTS and network namespaces: security medium and high".into()
                }
                Err(e) => e.clone(),
            },
        }];
        out.push(Finding {
            check: "cgroups".into(),
            ok: self.cgroups.is_ok(),
            detail: match &self.cgroups {
                Ok(c) => format!(
                    "{}: controllers {}; swap {}",
                    match cgroup::probe().version {
                        Ok(cgroup::CgroupVersion::V1) => "cgroup v1",
                        Ok(cgroup::CgroupVersion::V2) => "cgroup v2",
                        Ok(_) => "cgroups",
                        Err(_) => "no cgroups",
                    },
                    c.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
                    if self.swap_accounting {
                        "counted"
                    } else {
                        "not counted"
                    }
                ),
                Err(e) => e.clone(),
            },
        });
        let strict = match (&self.namespaces, self.strict_missing()) {
            (Err(e), _) => Err(format!("needs namespaces: {e}")),
            (Ok(()), Some(why)) => Err(why),
            (Ok(()), None) => Ok(()),
        };
        out.push(Finding {
            check: "strict".into(),
            ok: strict.is_ok(),
            detail: match strict {
                Ok(()) => format!(
                    "seccomp filter and Landlock ABI {}: security strict",
                    self.landlock.as_ref().copied().unwrap_or_default()
                ),
                Err(e) => format!("security strict is refused: {e}"),
            },
        });
        let scope = self.abstract_scope_missing();
        out.push(Finding {
            check: "socket scope".into(),
            ok: scope.is_none(),
            detail: match scope {
                None => "Landlock scope: pods on the host network cannot reach the host's \
                         abstract Unix sockets"
                    .into(),
                Some(why) => format!(
                    "pods on the host network reach the host's abstract Unix sockets: {why}"
                ),
            },
        });
        let bridge = self.bridge_missing();
        out.push(Finding {
            check: "bridge".into(),
            ok: bridge.is_none(),
            detail: match bridge {
                None => "ip, nft and nsenter found: --network bridge and --allow".into(),
                Some(why) => format!("--network bridge is refused: {why}"),
            },
        });
        out.push(Finding {
            check: "disk quota".into(),
            ok: self.quota.is_ok(),
            detail: match &self.quota {
                Ok(()) => "size- and inode-limited tmpfs roots: --disk and --files".into(),
                Err(e) => format!("--disk and --files are refused: {e}"),
            },
        });
        out
    }

    /// The level an environment gets when none is asked for.
    pub fn default_security(&self) -> SecurityLevel {
        if self.namespaces.is_ok() {
            SecurityLevel::Medium
        } else {
            SecurityLevel::Low
        }
    }
}

/// Whether this process can create the namespaces a pod needs.
fn namespaces_usable() -> std::result::Result<(), String> {
    if !std::path::Path::new("/proc/self/ns/pid").exists() {
        return Err("the kernel has no namespaces (/proc/self/ns missing)".into());
    }
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    match std::fs::read_to_string("/proc/sys/user/max_user_namespaces") {
        Ok(n) if n.trim() == "0" => {
            Err("user namespaces blocked: /proc/sys/user/max_user_namespaces is 0".into())
        }
        _ => Err("not root: this build creates pods as root only".into()),
    }
}

/// How one environment is sandboxed, recorded in its details as `isolation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Isolation {
    /// The security level applied.
    pub security: SecurityLevel,
    /// The network mode applied.
    pub network: NetworkMode,
    /// Whether the environment has a cgroup.
    pub cgroup: bool,
    /// Whether it runs in a pod (namespaces).
    pub pod: bool,
    /// What was asked for but dropped (only with `allow_degraded`).
    pub dropped: Vec<String>,
    /// The Landlock ABI version applied at `strict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock_abi: Option<u32>,
    /// Whether the root is a size- and inode-limited tmpfs (`--disk`, `--files`).
    #[serde(default)]
    pub quota: bool,
    /// Whether commands get a seccomp filter: the container profile at `medium` and `high`
    /// (no mounts, no namespaces, user namespaces included), the strict one at `strict`.
    #[serde(default)]
    pub seccomp: bool,
    /// The capabilities commands keep, for `env show` (see [`Isolation::capabilities`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<String>,
}

impl Isolation {
    /// The capabilities a command keeps, `None` for all of the caller's (`low`): root in a
    /// pod is never root over the host. At `medium` Docker's default set (no
    /// `CAP_SYS_ADMIN`: no mount, no namespace change), `NET_RAW` and `NET_ADMIN` only with a
    /// network namespace of its own; none from `high` up.
    pub(crate) fn capabilities(&self) -> Option<Capabilities> {
        match self.security {
            SecurityLevel::Low => None,
            SecurityLevel::Medium => Some(Capabilities::container_default(
                self.network != NetworkMode::Host,
            )),
            _ => Some(Capabilities::NONE),
        }
    }

    /// What an environment without a readable record of its isolation (made before ptest
    /// sandboxed anything) is taken to have: its commands run on the host, with no cgroup.
    pub(crate) fn unrecorded() -> Isolation {
        Isolation {
            security: SecurityLevel::Low,
            network: NetworkMode::Host,
            cgroup: false,
            pod: false,
            dropped: Vec::new(),
            landlock_abi: None,
            quota: false,
            seccomp: false,
            capabilities: None,
        }
    }
}

/// Resolves `spec` against `host`: what will be applied, or why it cannot be.
pub(crate) fn resolve(spec: &EnvironmentSpec, host: &HostCaps) -> Result<Isolation> {
    let mut missing: Vec<String> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    let mut lack = |what: String, missing: &mut Vec<String>| {
        if spec.allow_degraded {
            dropped.push(what);
        } else {
            missing.push(what);
        }
    };

    let mut security = spec.security.unwrap_or_else(|| host.default_security());
    if security == SecurityLevel::Strict
        && let Some(why) = host.strict_missing()
    {
        lack(
            format!("security strict ({why}); high applied"),
            &mut missing,
        );
        security = SecurityLevel::High;
    }
    if security >= SecurityLevel::Medium
        && let Err(why) = &host.namespaces
    {
        lack(
            format!("security {security} ({why}); low applied"),
            &mut missing,
        );
        security = SecurityLevel::Low;
    }
    let pod = security >= SecurityLevel::Medium;
    // Medium and high keep a pod's commands out of new namespaces with a filter too: without
    // it a command may still make a user namespace (its mounts stay locked, but its fresh
    // capabilities reopen much of the kernel). Asked for explicitly, a host without seccomp
    // refuses the level; by default, the drop is recorded (`env show` lists it).
    let mut seccomp = pod;
    let mut dropped_by_default = Vec::new();
    if pod && let Err(why) = &host.seccomp {
        let what = format!("seccomp filter of security {security} ({why})");
        if spec.security.is_some() {
            lack(what, &mut missing);
        } else {
            dropped_by_default.push(what);
        }
        seccomp = false;
    }

    let default_network = if security >= SecurityLevel::High {
        NetworkMode::None
    } else {
        NetworkMode::Host
    };
    let mut network = spec.network.unwrap_or(default_network);
    if !spec.allow.is_empty() && network != NetworkMode::Bridge {
        return Err(Error::Usage(format!(
            "--allow applies to --network bridge only (this environment's network is {})",
            wire(network)
        )));
    }
    match network {
        NetworkMode::Bridge if host.bridge_missing().is_some() => {
            let why = host.bridge_missing().unwrap_or_default();
            lack(
                format!("network bridge ({why}); loopback applied"),
                &mut missing,
            );
            network = NetworkMode::Loopback;
        }
        NetworkMode::Loopback | NetworkMode::None | NetworkMode::Bridge if !pod => {
            lack(
                format!(
                    "network {} needs security medium or higher; host applied",
                    wire(network)
                ),
                &mut missing,
            );
            network = NetworkMode::Host;
        }
        _ => {}
    }
    if network == NetworkMode::Loopback && !pod {
        network = NetworkMode::Host;
    }

    let limits = &spec.limits;
    let want = [
        (limits.memory.is_some(), Controller::Memory, "--memory"),
        (limits.cpus.is_some(), Controller::Cpu, "--cpus"),
        (limits.pids.is_some(), Controller::Pids, "--pids"),
    ];
    for (asked, controller, flag) in want {
        if asked && !host.has(controller) {
            let why = match &host.cgroups {
                Err(e) => e.clone(),
                Ok(_) => format!("no cgroup controller {} mounted", controller.name()),
            };
            lack(format!("{flag} ({why})"), &mut missing);
        }
    }
    let mut quota = limits.disk.is_some() || limits.files.is_some();
    if quota && let Err(why) = &host.quota {
        lack(format!("--disk/--files ({why})"), &mut missing);
        quota = false;
    }
    if !missing.is_empty() {
        return Err(Error::Usage(format!(
            "this host cannot apply: {}; use --allow-degraded to apply the rest",
            missing.join("; ")
        )));
    }
    if pod
        && network == NetworkMode::Host
        && let Some(why) = host.abstract_scope_missing()
    {
        // Not a refusal: the host's abstract sockets are the host network's, which this
        // environment asked to share; said where `env show` and `doctor` say what applies.
        dropped.push(format!(
            "the host's abstract Unix sockets stay reachable on the host network ({why}); \
             use --network loopback to keep them out"
        ));
    }
    dropped.extend(dropped_by_default);
    let mut iso = Isolation {
        security,
        network,
        cgroup: host.cgroups.is_ok() && host.has(Controller::Freezer),
        pod,
        dropped,
        landlock_abi: if security == SecurityLevel::Strict {
            host.landlock.as_ref().ok().copied()
        } else {
            None
        },
        quota,
        seccomp,
        capabilities: None,
    };
    iso.capabilities = iso.capabilities().map(|c| c.to_string());
    Ok(iso)
}

fn wire(n: NetworkMode) -> &'static str {
    match n {
        NetworkMode::Host => "host",
        NetworkMode::Loopback => "loopback",
        NetworkMode::None => "none",
        NetworkMode::Bridge => "bridge",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ptest_core::IsolationLevel;

    fn host(ns: bool, cg: bool) -> HostCaps {
        HostCaps {
            namespaces: if ns {
                Ok(())
            } else {
                Err("no namespaces here".into())
            },
            cgroups: if cg {
                Ok(Controller::ALL.to_vec())
            } else {
                Err("no cgroups here".into())
            },
            swap_accounting: true,
            landlock: Ok(7),
            seccomp: Ok(()),
            quota: Ok(()),
            bridge: Ok(()),
        }
    }

    #[test]
    fn defaults_follow_the_host() {
        let spec = EnvironmentSpec::new(IsolationLevel::Basic);
        let full = resolve(&spec, &host(true, true)).unwrap();
        assert_eq!(
            (full.security, full.network, full.pod, full.cgroup),
            (SecurityLevel::Medium, NetworkMode::Host, true, true)
        );
        let bare = resolve(&spec, &host(false, false)).unwrap();
        assert_eq!(
            (bare.security, bare.pod, bare.cgroup),
            (SecurityLevel::Low, false, false)
        );
    }

    #[test]
    fn unavailable_asks_are_errors_unless_degraded() {
        let mut spec = EnvironmentSpec::new(IsolationLevel::Basic);
        spec.security = Some(SecurityLevel::Strict);
        spec.limits.memory = Some(ptest_core::ByteSize(1 << 20));
        assert_eq!(
            resolve(&spec, &host(true, true)).unwrap().security,
            SecurityLevel::Strict
        );
        let err = resolve(&spec, &host(true, false).disabled(Some("landlock")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("security strict") && err.contains("--memory (no cgroups here)"),
            "{err}"
        );
        spec.allow_degraded = true;
        let iso = resolve(&spec, &host(true, false).disabled(Some("landlock"))).unwrap();
        assert_eq!(iso.security, SecurityLevel::High);
        assert_eq!(iso.network, NetworkMode::None);
        assert_eq!(iso.dropped.len(), 2);
    }

    #[test]
    fn bridge_needs_its_tools_and_allow_needs_a_bridge() {
        let mut spec = EnvironmentSpec::new(IsolationLevel::Basic);
        spec.network = Some(NetworkMode::Bridge);
        assert_eq!(
            resolve(&spec, &host(true, true)).unwrap().network,
            NetworkMode::Bridge
        );
        let err = resolve(&spec, &host(true, true).disabled(Some("bridge")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("network bridge (disabled by"), "{err}");
        spec.network = Some(NetworkMode::Loopback);
        spec.allow = vec!["10.0.0.1:80".parse().unwrap()];
        let err = resolve(&spec, &host(true, true)).unwrap_err().to_string();
        assert!(
            err.contains("--allow applies to --network bridge only"),
            "{err}"
        );
    }

    #[test]
    fn network_namespaces_need_a_pod() {
        let mut spec = EnvironmentSpec::new(IsolationLevel::Basic);
        spec.security = Some(SecurityLevel::Low);
        spec.network = Some(NetworkMode::Loopback);
        assert!(resolve(&spec, &host(true, true)).is_err());
    }
}
