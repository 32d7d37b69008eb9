//! A private switch for network namespaces, called a *hub*: a network namespace of its own,
//! held by a process of its own (see [`Hub::create`]), holding a Linux bridge. An
//! *uplink* veth pair joins it to the host, whose end carries the subnet's gateway address;
//! each member namespace (a pod's) is *plugged* in by a veth pair: `eth0` inside, with an
//! address and a default route via the gateway, and a link of the caller's naming on the
//! bridge. The bridge itself has the subnet's last address ([`Subnet::hub_address`]).
//!
//! Why a namespace of its own rather than a bridge on the host: with `br_netfilter` (loaded
//! by Docker), frames between two ports of a host bridge go through the host's iptables
//! `FORWARD` chain, whose policy Docker sets to drop, and one firewall's drop cannot be
//! overridden by another's accept. Inside the hub the whole netfilter ruleset belongs to its
//! owner ([`Hub::nft`]), so filtering there neither depends on nor touches the host's rules;
//! traffic between a member and the host arrives on the host's uplink as local input.
//!
//! Everything is done by iproute2's `ip`, util-linux's `nsenter` and `nft`, run as
//! commands: a handful per plug, each with its error output kept for the caller. Needs root.

use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::procfs;
use crate::sys;

/// The bridge's name inside every hub.
const BRIDGE: &str = "br0";
/// The hub's end of the uplink: what frames from the host enter the bridge through.
pub const UPLINK_PEER: &str = "up0";

/// An IPv4 subnet, host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// Its first address.
    pub network: Ipv4Addr,
    /// Its prefix length (at most 30: a gateway and a member need room).
    pub prefix: u8,
}

impl Subnet {
    /// The subnet of `addr` with `prefix` bits.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(30);
        Self {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    /// The host's address on it: the first after the network's.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The hub's own address on its bridge, the last before the broadcast: the source of the
    /// errors its filter answers refused packets with (without a route back to the sender a
    /// rejection would go nowhere and the sender would wait for its timeout).
    pub fn hub_address(&self) -> Ipv4Addr {
        Ipv4Addr::from((u32::from(self.network) | !mask(self.prefix)) - 1)
    }

    /// The addresses members can have: all but the network, the gateway, the hub's and the
    /// broadcast.
    pub fn members(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let first = u32::from(self.network) + 2;
        (first..u32::from(self.hub_address())).map(Ipv4Addr::from)
    }

    /// Whether the two share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        u32::from(self.network) & m == u32::from(other.network) & m
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// Why hubs cannot be made here, if they cannot: a tool missing from `PATH` (and the usual
/// `sbin` directories).
pub fn missing_tools() -> std::result::Result<(), String> {
    let missing: Vec<&str> = ["ip", "nft", "nsenter"]
        .into_iter()
        .filter(|t| tool(t).is_none())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} not found (Debian: apt-get install iproute2 nftables util-linux)",
            missing.join(", ")
        ))
    }
}

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Runs `program args...` with `stdin` fed in; its standard output, or an error carrying
/// its error output.
fn run(action: &str, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let command = format!("{program} {}", args.join(" "));
    let fail = |message: String| Error::NetworkTool {
        action: action.to_owned(),
        command: command.clone(),
        message,
    };
    let path = tool(program).ok_or_else(|| fail(format!("{program} not found")))?;
    let mut child = Command::new(path)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| fail(format!("writing its input: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_owned() + &format!(" ({})", out.status),
        ))
    }
}

/// Whether a network interface of this name exists in this process's namespace.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Applies an `nft -f` script to the host's ruleset (only tables the caller owns belong in
/// it).
pub fn nft(action: &str, script: &str) -> Result<String> {
    run(action, "nft", &["-f", "-"], Some(script))
}

/// The first of `candidates` that overlaps no route of the host's main table (the default
/// route aside), so that a hub's subnet never hides a network the host reaches.
fn free_subnet(candidates: impl IntoIterator<Item = Subnet>) -> Option<Subnet> {
    let routes = host_routes();
    candidates
        .into_iter()
        .find(|c| !routes.iter().any(|r| r.overlaps(c)))
}

/// The host's IPv4 routes, from `/proc/net/route` (addresses in native byte order hex).
fn host_routes() -> Vec<Subnet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (dest, mask) = (hex(cols.get(1)?)?, hex(cols.get(7)?)?);
            let prefix = Ipv4Addr::from(mask.to_ne_bytes()).to_bits().count_ones() as u8;
            (prefix > 0).then(|| Subnet::new(Ipv4Addr::from(dest.to_ne_bytes()), prefix))
        })
        .collect()
}

/// A hub: the process holding its namespace, its uplink on the host and its subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hub {
    holder: i32,
    start_time: u64,
    uplink: String,
    subnet: Subnet,
}

impl Hub {
    /// The hub held by process `holder` (started at `start_time`, clock ticks after boot)
    /// with host-side uplink `uplink`, if both are there and whole (the uplink carries an
    /// address).
    pub fn open(holder: i32, start_time: u64, uplink: &str) -> Option<Hub> {
        let stat = procfs::stat(holder).ok()??;
        if stat.start_time != start_time || stat.state == b'Z' || !link_exists(uplink) {
            return None;
        }
        let out = run(
            "read the uplink's address",
            "ip",
            &["-o", "-4", "addr", "show", "dev", uplink],
            None,
        )
        .ok()?;
        let cidr = out.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        let (addr, prefix) = cidr.split_once('/')?;
        Some(Hub {
            holder,
            start_time,
            uplink: uplink.to_owned(),
            subnet: Subnet::new(addr.parse().ok()?, prefix.parse().ok()?),
        })
    }

    /// Makes a hub on the first of `candidates` that no route of the host overlaps (see
    /// [`Hub::create`]). A host-wide lock is held from the choice until the uplink carries
    /// its address, so that hubs made at once by several processes never share a subnet.
    pub fn create_on_free_subnet(
        uplink: &str,
        candidates: impl IntoIterator<Item = Subnet>,
    ) -> Result<Hub> {
        let dir = Path::new("/run/lock");
        let dir = if dir.is_dir() {
            dir.to_owned()
        } else {
            std::env::temp_dir()
        };
        let path = dir.join("ptest-sandbox-hubs.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::syscall(format!("open {}", path.display()), e))?;
        // Released when the file is closed.
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::syscall(format!("flock {}", path.display()), e.into()))?;
        let subnet = free_subnet(candidates).ok_or_else(|| Error::InvalidSpec {
            what: "hub subnet",
            reason: "every candidate overlaps a route of this host".into(),
        })?;
        let hub = Hub::create(uplink, subnet);
        drop(lock);
        hub
    }

    /// Makes a hub on `subnet` with its uplink `uplink` on the host (at most 15 bytes, the
    /// kernel's limit), removing a leftover link of that name first.
    ///
    /// The namespace is held by a process of its own (`sleep`, in its own session), not by
    /// a file under `/run/netns`: every mount namespace made while such a file exists (each
    /// pod's) would keep a copy of its mount, so it could neither be deleted nor its
    /// namespace freed while any of those pods lives.
    pub fn create(uplink: &str, subnet: Subnet) -> Result<Hub> {
        if uplink.len() > 15 || uplink.is_empty() {
            return Err(Error::InvalidName {
                what: "uplink",
                value: uplink.to_owned(),
                reason: "interface names have 1 to 15 bytes",
            });
        }
        remove_link(uplink)?;
        let (holder, start_time) = spawn_holder(uplink)?;
        let hub = Hub {
            holder,
            start_time,
            uplink: uplink.to_owned(),
            subnet,
        };
        let made = hub.build();
        if made.is_err() {
            let _ = hub.destroy();
        }
        made.map(|()| hub)
    }

    fn build(&self) -> Result<()> {
        let gateway = format!("{}/{}", self.subnet.gateway(), self.subnet.prefix);
        self.ip(
            "create the hub's bridge",
            &format!(
                "link set lo up\nlink add {BRIDGE} type bridge\nlink set {BRIDGE} up\n\
                 addr add {}/{} dev {BRIDGE}\n",
                self.subnet.hub_address(),
                self.subnet.prefix
            ),
        )?;
        let holder = self.holder.to_string();
        run(
            "create the uplink",
            "ip",
            &[
                "link",
                "add",
                &self.uplink,
                "type",
                "veth",
                "peer",
                "name",
                UPLINK_PEER,
                "netns",
                &holder,
            ],
            None,
        )?;
        self.ip(
            "put the uplink on the bridge",
            &format!("link set {UPLINK_PEER} master {BRIDGE} up\n"),
        )?;
        run(
            "address the uplink",
            "ip",
            &["-batch", "-"],
            Some(&format!(
                "addr add {gateway} dev {}\nlink set {} up\n",
                self.uplink, self.uplink
            )),
        )?;
        // Lets the host's loopback addresses be forwarded to members (DNAT from 127.0.0.1):
        // a setting of this interface alone, not of the host.
        let localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", self.uplink);
        std::fs::write(&localnet, "1").map_err(|e| Error::syscall(format!("write {localnet}"), e))
    }

    /// The pid of the process holding the hub's namespace.
    pub fn holder(&self) -> i32 {
        self.holder
    }

    /// The holder's start time (clock ticks after boot), to tell it from a reused pid.
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// The uplink's host-side name.
    pub fn uplink(&self) -> &str {
        &self.uplink
    }

    /// The subnet.
    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    fn netns(&self) -> String {
        format!("--net=/proc/{}/ns/net", self.holder)
    }

    /// Runs an `ip -batch` script in the hub.
    fn ip(&self, action: &str, script: &str) -> Result<String> {
        run(
            action,
            "nsenter",
            &[&self.netns(), "--", "ip", "-batch", "-"],
            Some(script),
        )
    }

    /// Plugs the network namespace of process `pid` in: a veth pair with `link` in the hub
    /// (not yet on the bridge: see [`Hub::attach`]) and `eth0` in the namespace, given
    /// `address` and a default route via the gateway.
    pub fn plug(&self, link: &str, pid: i32, address: Ipv4Addr) -> Result<()> {
        self.ip(
            "create the veth pair",
            &format!("link add {link} type veth peer name eth0 netns {pid}\n"),
        )?;
        let net = format!("--net=/proc/{pid}/ns/net");
        run(
            "configure eth0 in the namespace",
            "nsenter",
            &[&net, "--", "ip", "-batch", "-"],
            Some(&format!(
                "addr add {address}/{} dev eth0\nlink set eth0 up\nroute add default via {}\n",
                self.subnet.prefix,
                self.subnet.gateway()
            )),
        )?;
        Ok(())
    }

    /// Puts a plugged `link` on the bridge and brings it up: from now on frames flow.
    pub fn attach(&self, link: &str) -> Result<()> {
        self.ip(
            "put the link on the bridge",
            &format!("link set {link} master {BRIDGE} up\n"),
        )
        .map(drop)
    }

    /// Removes `link` (and its peer) if it is still there; the namespace at its other end
    /// going away removes it as well.
    pub fn unplug(&self, link: &str) -> Result<()> {
        let present = |hub: &Hub| hub.links().map(|l| l.iter().any(|l| l == link));
        if present(self)? {
            // The namespace at the other end may be going away at the same moment.
            if let Err(e) = self.ip("remove the link", &format!("link del {link}\n"))
                && present(self)?
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The links plugged in (the bridge, the uplink and loopback aside).
    pub fn links(&self) -> Result<Vec<String>> {
        let out = run(
            "list the hub's links",
            "nsenter",
            &[&self.netns(), "--", "ip", "-o", "link", "show"],
            None,
        )?;
        Ok(out
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
            .filter(|n| ![BRIDGE, UPLINK_PEER, "lo", ""].contains(&n.as_str()))
            .collect())
    }

    /// Applies an `nft -f` script to the hub's own ruleset (listings are its output).
    pub fn nft(&self, action: &str, script: &str) -> Result<String> {
        run(
            action,
            "nsenter",
            &[&self.netns(), "--", "nft", "-f", "-"],
            Some(script),
        )
    }

    /// Removes the hub: the uplink (with its peer), then the holder, and with it the
    /// namespace, the bridge and every link still in it.
    pub fn destroy(&self) -> Result<()> {
        Hub::remove(self.holder, self.start_time, &self.uplink)
    }

    /// Removes what is left of a hub, whole or not: the uplink `uplink` if it exists, and the
    /// holder if `holder` is still the process that started at `start_time`.
    pub fn remove(holder: i32, start_time: u64, uplink: &str) -> Result<()> {
        remove_link(uplink)?;
        kill_holder(holder, start_time);
        Ok(())
    }
}

/// Removes the host interface `name` (a veth end takes its peer with it) if it exists.
pub fn remove_link(name: &str) -> Result<()> {
    if link_exists(name) {
        run("remove a link", "ip", &["link", "del", name], None)?;
    }
    Ok(())
}

/// Starts a process holding a new network namespace: `sleep` in a session of its own, with
/// nothing inherited but its namespace. Returns its pid and start time.
/// The variable a hub's holder carries, naming its uplink: a holder whose creator died before
/// recording it is still found ([`stray_holders`]).
const HOLDER_VAR: &str = "PTEST_BRIDGE_HUB";

/// Holders of hubs with uplink `uplink` other than `except` (the recorded one): left by a
/// creator that died between starting and recording them. Found by their `HOLDER_VAR`.
pub fn stray_holders(uplink: &str, except: Option<(i32, u64)>) -> Vec<(i32, u64)> {
    let needle = format!("{HOLDER_VAR}={uplink}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        })
        .filter_map(|pid| {
            let stat = procfs::stat(pid).ok().flatten()?;
            Some((pid, stat.start_time))
        })
        .filter(|found| Some(*found) != except)
        .collect()
}

/// Kills a hub holder identified by pid and start time (nothing if the pid is another
/// process's now).
pub fn kill_holder(holder: i32, start_time: u64) {
    if procfs::stat(holder)
        .ok()
        .flatten()
        .is_some_and(|s| s.start_time == start_time)
    {
        let _ = sys::kill(holder, libc::SIGKILL);
        // Reaped here if this process started it; elsewhere its parent (or init) does.
        let _ = sys::waitpid(holder, 0);
    }
}

fn spawn_holder(uplink: &str) -> Result<(i32, u64)> {
    use std::os::unix::process::CommandExt;
    let sleep = tool("sleep").ok_or_else(|| Error::NetworkTool {
        action: "start the hub's holder".into(),
        command: "sleep".into(),
        message: "sleep not found".into(),
    })?;
    let mut command = Command::new(sleep);
    command
        .arg("2147483647")
        .env_clear()
        .env(HOLDER_VAR, uplink)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls (setsid, unshare) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            sys::setsid()
                .and_then(|()| sys::unshare(libc::CLONE_NEWNET))
                .map_err(std::io::Error::from_raw_os_error)
        });
    }
    let child = command.spawn().map_err(|e| Error::Spawn {
        program: "sleep".into(),
        step: "unshare net",
        source: e,
    })?;
    let pid = child.id() as i32;
    let stat = procfs::stat(pid)
        .map_err(|e| Error::syscall(format!("read /proc/{pid}/stat"), e))?
        .ok_or(Error::HolderDiedEarly)?;
    Ok((pid, stat.start_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_know_their_addresses_and_overlaps() {
        let s = Subnet::new("10.130.7.99".parse().unwrap(), 24);
        assert_eq!(s.to_string(), "10.130.7.0/24");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 130, 7, 1));
        let members: Vec<Ipv4Addr> = s.members().collect();
        assert_eq!(s.hub_address(), Ipv4Addr::new(10, 130, 7, 254));
        assert_eq!(members.len(), 252);
        assert_eq!(members[0], Ipv4Addr::new(10, 130, 7, 2));
        assert_eq!(members[251], Ipv4Addr::new(10, 130, 7, 253));
        assert!(s.overlaps(&Subnet::new(Ipv4Addr::new(10, 0, 0, 0), 8)));
        assert!(!s.overlaps(&Subnet::new(Ipv4Addr::new(10, 130, 8, 0), 24)));
    }

    #[test]
    fn a_free_subnet_avoids_the_host_routes() {
        // Whatever the host routes, a candidate equal to one of its routes is never chosen.
        let taken = host_routes();
        let candidates: Vec<Subnet> = taken
            .iter()
            .copied()
            .chain([Subnet::new(Ipv4Addr::new(10, 254, 254, 0), 24)])
            .collect();
        if let Some(free) = free_subnet(candidates) {
            assert!(!taken.contains(&free));
        }
    }
}
