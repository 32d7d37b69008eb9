//! Control groups behind one abstraction over cgroup v1 and v2.
//!
//! The hierarchy is detected at run time from `/proc/self/mountinfo`: if any of the v1
//! controllers this crate uses (memory, cpu, pids) is mounted as a v1 hierarchy, v1 is used
//! (this covers "hybrid" hosts whose v2 mount has no controllers); otherwise a `cgroup2` mount is
//! used. A [`Cgroup`] is always `<parent>/<name>` below the hierarchy root (in v1: the same
//! relative path in each controller's mount: memory, cpu, cpuacct, pids, freezer).
//!
//! A parent's CPU weight follows its groups: creating or removing a group sets the parent's
//! weight (v1 `cpu.shares`, v2 `cpu.weight`) to what one process weighs at the parent's level
//! (1024, 100) for each group under it, up to one per CPU. Without that, every group under
//! one parent would share one process's weight against the host's other processes: under
//! contention, two pods running a test suite each would get the CPU time of one process.

mod v1;
mod v2;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// Which cgroup hierarchy a group lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CgroupVersion {
    /// One hierarchy per controller (`/sys/fs/cgroup/<controller>/...`).
    V1,
    /// The unified hierarchy.
    V2,
}

/// A cgroup controller this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Controller {
    /// Memory limit and usage, OOM kill count.
    Memory,
    /// CPU bandwidth limit.
    Cpu,
    /// CPU time accounting (v1 only; part of `cpu` in v2).
    Cpuacct,
    /// Process count limit.
    Pids,
    /// Freezing, used to kill every process without races (v1; built into v2).
    Freezer,
}

impl Controller {
    /// Every controller, in the order groups are created.
    pub const ALL: [Controller; 5] = [
        Controller::Memory,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Pids,
        Controller::Freezer,
    ];

    /// The kernel's name for the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
        }
    }
}

/// Limits applied to a group. `None` leaves the kernel's default (unlimited).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Memory in bytes, swap counted: v1 `memory.limit_in_bytes` and
    /// `memory.memsw.limit_in_bytes` (when swap accounting is on), v2 `memory.max` with
    /// `memory.swap.max` = 0.
    pub memory_bytes: Option<u64>,
    /// CPU as a fraction of cores (1.5 = one and a half cores): CFS quota over a 100 ms period.
    pub cpu_cores: Option<f64>,
    /// Maximum number of tasks (processes and threads).
    pub pids_max: Option<u64>,
}

/// A snapshot of a group's resource use. `None` means the controller is not available.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Memory in use now, in bytes.
    pub memory_current: Option<u64>,
    /// Highest memory use seen, in bytes (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
    pub memory_peak: Option<u64>,
    /// CPU time consumed by all tasks.
    pub cpu_time: Option<Duration>,
    /// Tasks in the group now.
    pub pids_current: Option<u64>,
    /// Processes killed by the OOM killer in this group.
    pub oom_kills: Option<u64>,
}

/// Whether one controller can be used, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerProbe {
    /// The controller.
    pub controller: Controller,
    /// `Ok(path)` where its groups live, or `Err(reason)`.
    pub status: std::result::Result<PathBuf, String>,
}

/// What [`probe`] found on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupProbe {
    /// The hierarchy in use, or why none is.
    pub version: std::result::Result<CgroupVersion, String>,
    /// Per-controller availability (empty when there is no hierarchy).
    pub controllers: Vec<ControllerProbe>,
    /// Whether memory limits also count swap on this host.
    pub swap_accounting: bool,
}

impl CgroupProbe {
    /// Whether `controller` is usable.
    pub fn has(&self, controller: Controller) -> bool {
        self.controllers
            .iter()
            .any(|c| c.controller == controller && c.status.is_ok())
    }
}

/// Reports which hierarchy and controllers this host offers, with the reason for each gap.
pub fn probe() -> CgroupProbe {
    match Hierarchy::detect() {
        Err(e) => CgroupProbe {
            version: Err(e.to_string()),
            controllers: Vec::new(),
            swap_accounting: false,
        },
        Ok(Hierarchy::V1(mounts)) => {
            let controllers = Controller::ALL
                .iter()
                .map(|&c| ControllerProbe {
                    controller: c,
                    status: mounts.path(c).map(Path::to_path_buf).ok_or_else(|| {
                        format!("no v1 hierarchy with controller {} is mounted", c.name())
                    }),
                })
                .collect();
            let swap_accounting = mounts
                .path(Controller::Memory)
                .is_some_and(|p| p.join("memory.memsw.limit_in_bytes").exists());
            CgroupProbe {
                version: Ok(CgroupVersion::V1),
                controllers,
                swap_accounting,
            }
        }
        Ok(Hierarchy::V2(root)) => {
            let available = v2::root_controllers(&root);
            let controllers = Controller::ALL
                .iter()
                .map(|&c| ControllerProbe {
                    controller: c,
                    status: match c {
                        // Built into cgroup v2 (cpu.stat and cgroup.freeze are always present).
                        Controller::Cpuacct | Controller::Freezer => Ok(root.clone()),
                        _ if available.iter().any(|a| a == c.name()) => Ok(root.clone()),
                        _ => Err(format!(
                            "controller {} not listed in {}",
                            c.name(),
                            root.join("cgroup.controllers").display()
                        )),
                    },
                })
                .collect();
            let swap_accounting = available.iter().any(|a| a == "memory")
                && fs::read_dir(&root)
                    .map(|d| {
                        d.flatten()
                            .any(|e| e.path().is_dir() && e.path().join("memory.swap.max").exists())
                    })
                    .unwrap_or(false);
            CgroupProbe {
                version: Ok(CgroupVersion::V2),
                controllers,
                swap_accounting,
            }
        }
    }
}

/// Where v1 controllers are mounted.
#[derive(Debug, Clone, Default)]
pub(crate) struct V1Mounts(Vec<(Controller, PathBuf)>);

impl V1Mounts {
    fn path(&self, c: Controller) -> Option<&Path> {
        self.0
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, p)| p.as_path())
    }
}

/// The detected hierarchy.
#[derive(Debug, Clone)]
pub(crate) enum Hierarchy {
    V1(V1Mounts),
    V2(PathBuf),
}

impl Hierarchy {
    /// The host's hierarchy, read from `/proc/self/mountinfo` once per process: it is looked
    /// up on every cgroup open, several times per command, and does not change under us.
    pub(crate) fn detect() -> Result<Hierarchy> {
        static DETECTED: std::sync::OnceLock<std::result::Result<Hierarchy, String>> =
            std::sync::OnceLock::new();
        DETECTED
            .get_or_init(|| Self::read().map_err(|e| e.to_string()))
            .clone()
            .map_err(|reason| Error::NoCgroupHierarchy { reason })
    }

    fn read() -> Result<Hierarchy> {
        let text = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::syscall("read /proc/self/mountinfo", e))?;
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.len() < 5 || right.len() < 3 {
                continue;
            }
            let mount_point = PathBuf::from(unescape_mountinfo(left[4]));
            match right[0] {
                "cgroup" => {
                    for opt in right[2].split(',') {
                        if let Some(c) = Controller::ALL.iter().find(|c| c.name() == opt)
                            && !v1.iter().any(|(k, _)| k == c)
                        {
                            v1.push((*c, mount_point.clone()));
                        }
                    }
                }
                "cgroup2" if v2.is_none() => v2 = Some(mount_point),
                _ => {}
            }
        }
        let uses_v1 = v1
            .iter()
            .any(|(c, _)| matches!(c, Controller::Memory | Controller::Cpu | Controller::Pids));
        if uses_v1 {
            return Ok(Hierarchy::V1(V1Mounts(v1)));
        }
        match v2 {
            Some(root) => Ok(Hierarchy::V2(root)),
            None => Err(Error::NoCgroupHierarchy {
                reason: "no cgroup v1 memory/cpu/pids controller and no cgroup2 mount in /proc/self/mountinfo"
                    .into(),
            }),
        }
    }
}

fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(oct) = s.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(oct, 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks a group name: one path component of `[A-Za-z0-9_.-]`, not `.` or `..`.
fn validate_component(what: &'static str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        Some("empty")
    } else if value == "." || value == ".." {
        Some("is . or ..")
    } else if value.len() > 200 {
        Some("longer than 200 bytes")
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        Some("only ASCII letters, digits, '_', '.' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            what,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks a parent name: one or more valid components separated by `/`.
fn validate_parent(value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::InvalidName {
            what: "cgroup parent",
            value: value.into(),
            reason: "empty",
        });
    }
    value
        .split('/')
        .try_for_each(|c| validate_component("cgroup parent", c))
}

pub(crate) fn read_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::CgroupIo {
        action: "read",
        path: path.into(),
        source,
    })
}

pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    let text = read_string(path)?;
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse().map_err(|_| Error::CgroupParse {
        path: path.into(),
        content: text.clone(),
    })
}

/// Reads `key value` lines (memory.events, cpu.stat, memory.oom_control) and returns `key`'s value.
pub(crate) fn read_keyed(path: &Path, key: &str) -> Result<Option<u64>> {
    Ok(keyed(&read_string(path)?, key))
}

/// `key`'s value in `key value` lines.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Two counters of one group, from its files kept open (see [`Cgroup::gauges`]).
#[derive(Debug)]
pub struct Gauges {
    /// `memory.oom_control` (v1) or `memory.events` (v2).
    oom: Option<fs::File>,
    /// `pids.current`.
    pids: Option<fs::File>,
}

impl Gauges {
    /// How many times the kernel's OOM killer killed a process of the group (`None` without
    /// a memory controller, or unreadable).
    pub fn oom_kills(&self) -> Option<u64> {
        keyed(&read_again(self.oom.as_ref()?)?, "oom_kill")
    }

    /// How many tasks the group holds now (`None` without a pids controller, or unreadable).
    pub fn pids_current(&self) -> Option<u64> {
        read_again(self.pids.as_ref()?)?.trim().parse().ok()
    }
}

/// The whole of a small cgroup file, read from its start again.
fn read_again(file: &fs::File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 1024];
    let n = file.read_at(&mut buf, 0).ok()?;
    String::from_utf8(buf[..n].to_vec()).ok()
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|source| Error::CgroupIo {
        action: "write",
        path: path.into(),
        source,
    })
}

pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>> {
    Ok(read_string(path)?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Sleeps between checks of something the kernel finishes soon: from 100 µs, doubling up to
/// `max`, so a wait that ends at once costs little and a long one does not spin.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn up_to(max: Duration) -> Backoff {
        Backoff {
            next: Duration::from_micros(100),
            max,
        }
    }

    fn sleep(&mut self) {
        std::thread::sleep(self.next);
        self.next = (self.next * 2).min(self.max);
    }
}

/// Removes a group directory, retrying for up to 2 s while the kernel still counts dying
/// tasks (EBUSY).
pub(crate) fn rmdir_retry(path: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut backoff = Backoff::up_to(Duration::from_millis(10));
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                backoff.sleep()
            }
            Err(source) => {
                return Err(Error::CgroupIo {
                    action: "remove",
                    path: path.into(),
                    source,
                });
            }
        }
    }
}

/// Sub-directory names of `dir` (missing `dir` = none).
pub(crate) fn child_dirs(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::CgroupIo {
                action: "list",
                path: dir.into(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && let Some(name) = entry.file_name().to_str()
        {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// How long `kill_all` waits for a group to empty.
pub(crate) const KILL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Imp {
    V1(v1::CgroupV1),
    V2(v2::CgroupV2),
}

/// One control group, `<parent>/<name>`, in whichever hierarchy the host uses.
///
/// The value is a handle: dropping it leaves the group in place. [`Cgroup::remove`] deletes it.
#[derive(Debug, Clone)]
pub struct Cgroup {
    parent: String,
    name: String,
    imp: Imp,
}

impl Cgroup {
    /// Creates `<parent>/<name>` (the parent is created when missing) and applies `limits`.
    ///
    /// Fails with [`Error::ControllerMissing`] when a limit needs a controller the host lacks;
    /// fails if the group already exists.
    pub fn create(parent: &str, name: &str, limits: &Limits) -> Result<Cgroup> {
        validate_parent(parent)?;
        validate_component("cgroup name", name)?;
        let rel = Path::new(parent).join(name);
        let imp = match Hierarchy::detect()? {
            Hierarchy::V1(mounts) => Imp::V1(v1::CgroupV1::create(&mounts, &rel, limits)?),
            Hierarchy::V2(root) => Imp::V2(v2::CgroupV2::create(&root, parent, &rel, limits)?),
        };
        tracing::debug!(parent, name, ?limits, "created cgroup");
        weigh_parent(parent);
        Ok(Cgroup {
            parent: parent.into(),
            name: name.into(),
            imp,
        })
    }

    /// Reopens an existing `<parent>/<name>` (for example from another process).
    pub fn open(parent: &str, name: &str) -> Result<Cgroup> {
        validate_parent(parent)?;
        validate_component("cgroup name", name)?;
        let rel = Path::new(parent).join(name);
        let imp = match Hierarchy::detect()? {
            Hierarchy::V1(mounts) => v1::CgroupV1::open(&mounts, &rel).map(Imp::V1),
            Hierarchy::V2(root) => v2::CgroupV2::open(&root, &rel).map(Imp::V2),
        };
        match imp {
            Some(imp) => Ok(Cgroup {
                parent: parent.into(),
                name: name.into(),
                imp,
            }),
            None => Err(Error::CgroupNotFound {
                parent: parent.into(),
                name: name.into(),
            }),
        }
    }

    /// Names of the groups directly under `parent` (empty when `parent` does not exist).
    pub fn list(parent: &str) -> Result<Vec<String>> {
        validate_parent(parent)?;
        let mut names = match Hierarchy::detect()? {
            Hierarchy::V1(mounts) => v1::list(&mounts, Path::new(parent))?,
            Hierarchy::V2(root) => child_dirs(&root.join(parent))?,
        };
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The hierarchy this group lives in.
    pub fn version(&self) -> CgroupVersion {
        match self.imp {
            Imp::V1(_) => CgroupVersion::V1,
            Imp::V2(_) => CgroupVersion::V2,
        }
    }

    /// The parent name given at creation.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// The group's own name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group's directories (one per mounted controller in v1, one in v2).
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.imp {
            Imp::V1(g) => g.unique_dirs(),
            Imp::V2(g) => vec![g.dir.clone()],
        }
    }

    /// The files a freshly forked (single-threaded) child writes `0` to in order to join the
    /// group itself; the pod and [`crate::spawn_in_cgroup`] open them before forking.
    ///
    /// v1: each hierarchy's `tasks`. Moving only the calling thread is all a single-threaded
    /// process needs, and the kernel then skips its global threadgroup lock, whose write side
    /// waits for an RCU grace period (10–20 ms on a busy host): most of what creating a pod
    /// cost. v2: `cgroup.procs` (`cgroup.threads` is for threaded groups only).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        let file = match self.imp {
            Imp::V1(_) => "tasks",
            Imp::V2(_) => "cgroup.procs",
        };
        self.paths().into_iter().map(|p| p.join(file)).collect()
    }

    /// Each directory's `cgroup.procs`: it lists the member processes and moves in any pid.
    fn member_files(&self) -> Vec<PathBuf> {
        self.paths()
            .into_iter()
            .map(|p| p.join("cgroup.procs"))
            .collect()
    }

    /// Applies `limits` to the existing group (fields left `None` are not changed).
    pub fn set_limits(&self, limits: &Limits) -> Result<()> {
        match &self.imp {
            Imp::V1(g) => g.set_limits(limits),
            Imp::V2(g) => g.set_limits(limits),
        }
    }

    /// Moves process `pid` (all its threads) into the group.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        for file in self.member_files() {
            write_file(&file, &pid.to_string())?;
        }
        Ok(())
    }

    /// Current resource use.
    pub fn usage(&self) -> Result<Usage> {
        match &self.imp {
            Imp::V1(g) => g.usage(),
            Imp::V2(g) => g.usage(),
        }
    }

    /// The group's OOM-kill count and task count, from files opened once: for callers that
    /// read them around every command (opening a cgroup file costs more than reading it).
    pub fn gauges(&self) -> Gauges {
        let (oom, pids) = match &self.imp {
            Imp::V1(g) => g.gauge_files(),
            Imp::V2(g) => g.gauge_files(),
        };
        // A file the group lacks (no such controller) reads as `None`.
        let open = |path: Option<PathBuf>| path.and_then(|p| fs::File::open(p).ok());
        Gauges {
            oom: open(oom),
            pids: open(pids),
        }
    }

    /// Pids of the processes in the group (host pid namespace of the caller).
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        for file in self.member_files() {
            match read_pids(&file) {
                Ok(p) => pids.extend(p),
                Err(Error::CgroupIo { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                }
                Err(e) => return Err(e),
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Freezes (`frozen`) or thaws every process of the group, and waits (2 s at most) until
    /// the kernel says it is done: frozen processes keep their memory and open sockets and
    /// run on when thawed. v1 needs the freezer controller mounted.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        match &self.imp {
            Imp::V1(g) => g.freeze(frozen),
            Imp::V2(g) => g.freeze(frozen),
        }
    }

    /// Kills every process in the group with SIGKILL and waits until the group is empty.
    ///
    /// v1 freezes the group first so nothing can fork while it is being killed (an empty group
    /// is left as it is: nothing can fork into it); v2 uses `cgroup.kill` (Linux 5.14+) or
    /// freeze-and-kill on older kernels. Processes that are dead but not yet reaped by their
    /// parent may keep a v1 group "busy" for a moment; this waits up to 10 seconds for the
    /// group to report empty.
    pub fn kill_all(&self) -> Result<()> {
        match &self.imp {
            Imp::V1(g) => g.kill_all(),
            Imp::V2(g) => g.kill_all(),
        }
    }

    /// Kills everything in the group ([`Cgroup::kill_all`]) and deletes it.
    pub fn remove(self) -> Result<()> {
        self.kill_all()?;
        for dir in self.paths() {
            rmdir_retry(&dir)?;
        }
        tracing::debug!(parent = self.parent, name = self.name, "removed cgroup");
        weigh_parent(&self.parent);
        Ok(())
    }

    /// The group `pid` belongs to, if it is `<parent>/<name>` for this `parent`.
    pub fn of_process(pid: i32, parent: &str) -> Result<Option<Cgroup>> {
        validate_parent(parent)?;
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|e| Error::syscall(format!("read /proc/{pid}/cgroup"), e))?;
        let prefix = format!("/{parent}/");
        for line in text.lines() {
            let path = line.splitn(3, ':').nth(2).unwrap_or("");
            if let Some(name) = path.strip_prefix(&prefix)
                && !name.contains('/')
                && !name.is_empty()
            {
                return Cgroup::open(parent, name).map(Some);
            }
        }
        Ok(None)
    }
}

/// Sets `parent`'s CPU weight to one process's (v1 `cpu.shares` 1024, v2 `cpu.weight` 100)
/// for each group under it, at least one and at most one per CPU this process may use (so
/// idle groups never make a busy one outweigh the host), and returns it. Best effort: `None`
/// where there is no CPU controller or the file cannot be written. Two processes changing
/// groups at once may leave it one group off until the next change.
fn weigh_parent(parent: &str) -> Option<u64> {
    let (dir, file, unit, max) = match Hierarchy::detect().ok()? {
        Hierarchy::V1(mounts) => (
            mounts.path(Controller::Cpu)?.join(parent),
            "cpu.shares",
            1024,
            262_144,
        ),
        Hierarchy::V2(root) => (root.join(parent), "cpu.weight", 100, 10_000),
    };
    let cpus = usable_cpus();
    // Only as far as the cap: a parent of thousands of groups costs no more than one of a few.
    let groups = fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .take(cpus)
        .count();
    let weight = (unit * groups.max(1) as u64).min(max);
    let path = dir.join(file);
    if read_u64(&path).ok()? != weight
        && let Err(e) = write_file(&path, &weight.to_string())
    {
        tracing::debug!(error = %e, "could not weigh the parent cgroup");
        return None;
    }
    tracing::debug!(parent, groups, weight, "weighed the parent cgroup");
    Some(weight)
}

/// The CPUs this process may run on (its affinity mask): what caps a parent's weight. One
/// system call, where `available_parallelism` also reads `/proc/self/cgroup` and the CPU
/// quota files (~27 µs, on every create and remove); a quota limits time, not weight.
fn usable_cpus() -> usize {
    rustix::thread::sched_getaffinity(None).map_or(1, |set| set.count().max(1) as usize)
}

/// Polls `pids` until it returns an empty list, sending SIGKILL to whatever it finds.
pub(crate) fn kill_until_empty(
    path: &Path,
    mut pids: impl FnMut() -> Result<Vec<i32>>,
) -> Result<()> {
    let deadline = std::time::Instant::now() + KILL_TIMEOUT;
    let mut backoff = Backoff::up_to(Duration::from_millis(5));
    loop {
        let remaining = pids()?;
        if remaining.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::CgroupNotEmpty {
                path: path.into(),
                remaining: remaining.len(),
            });
        }
        for pid in remaining {
            // The pid may already be gone; ESRCH is fine.
            let _ = crate::sys::kill(pid, libc::SIGKILL);
        }
        backoff.sleep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_component("n", "env-1.a_b").is_ok());
        assert!(validate_component("n", "..").is_err());
        assert!(validate_component("n", "a/b").is_err());
        assert!(validate_parent("ptest/inner").is_ok());
        assert!(validate_parent("ptest//inner").is_err());
    }

    /// The CPU weight file of `parent` and what one group weighs there, where this host can
    /// give a parent a weight (a cgroup hierarchy with a CPU controller, and root); else it
    /// skips (a failure under `PTEST_REQUIRE_ALL=1`).
    fn weight_file(parent: &str) -> Option<(PathBuf, u64)> {
        let found = Hierarchy::detect()
            .ok()
            .and_then(|hierarchy| match hierarchy {
                Hierarchy::V1(mounts) => mounts
                    .path(Controller::Cpu)
                    .map(|cpu| (cpu.join(parent).join("cpu.shares"), 1024)),
                Hierarchy::V2(root) => Some((root.join(parent).join("cpu.weight"), 100)),
            });
        if found.is_none() || !rustix::process::geteuid().is_root() {
            return ptest_testkit::skip("giving a cgroup a weight needs root and a CPU controller");
        }
        found
    }

    #[test]
    fn a_parent_weighs_as_many_processes_as_it_has_groups_up_to_the_cpus() {
        let parent = format!("ptest-weight-test-{}", std::process::id());
        let Some((file, unit)) = weight_file(&parent) else {
            return;
        };
        let cpus = usable_cpus() as u64;
        let weight = || read_u64(&file).expect("the parent's weight");
        let mut groups = Vec::new();
        for n in 1..=cpus + 1 {
            let name = format!("g{n}");
            groups.push(Cgroup::create(&parent, &name, &Limits::default()).expect("a cgroup"));
            assert_eq!(weight(), unit * n.min(cpus), "{n} groups, {cpus} CPUs");
        }
        while let Some(group) = groups.pop() {
            group.remove().expect("removed");
            let left = groups.len() as u64;
            assert_eq!(weight(), unit * left.clamp(1, cpus), "{left} groups left");
        }
        // The parent itself: one directory per v1 hierarchy, or the one v2 directory.
        let dirs = match Hierarchy::detect().expect("detected above") {
            Hierarchy::V1(mounts) => mounts.0.iter().map(|(_, m)| m.join(&parent)).collect(),
            Hierarchy::V2(root) => vec![root.join(&parent)],
        };
        for dir in dirs {
            let _ = fs::remove_dir(dir);
        }
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
