//! Issue 14 at the docker level: each test is one attack, run by a shell script of the busybox
//! test image from inside a container environment at `medium`, `high` and `strict` (an
//! environment each, removed after). Each asserts what a command sees (its exit code, the
//! refusal on stderr) and that nothing changed on the host. Docker's defaults (no
//! `CAP_SYS_ADMIN`, its seccomp profile, read-only `/proc/sys` and `/sys`, masked `/proc`
//! files, the devices cgroup) stop most of them; the tests prove it for ptest's containers.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::support::TestHome;

/// The levels whose promises these tests try to break.
const LEVELS: [&str; 3] = ["medium", "high", "strict"];

/// A temporary home with the busybox build context, or `None` (a skip) without Docker.
struct Range {
    t: TestHome,
    context: PathBuf,
}

impl Range {
    fn new() -> Option<Self> {
        let t = TestHome::new();
        let context = ptest_testkit::busybox::context(t.dir.path())?;
        Some(Self { t, context })
    }

    /// Creates an environment named `level` at that security level (with `extra` flags),
    /// runs `sh -c script` in it, removes it and returns what the command saw.
    fn attack(&self, level: &str, extra: &[&str], script: &str) -> Outcome {
        let mut args = vec![
            "env",
            "create",
            level,
            "--security",
            level,
            "--build",
            self.context.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.t.json(&args);
        let result = self.t.exec_json(level, &["sh", "-c", script]);
        let stats = self.t.json(["env", "stats", level]);
        self.t
            .ptest(["env", "rm", "--force", level])
            .assert()
            .success();
        Outcome {
            level: level.to_owned(),
            code: result["exit_code"].as_i64().unwrap_or(-1),
            stdout: result["stdout"].as_str().unwrap_or_default().to_owned(),
            stderr: result["stderr"].as_str().unwrap_or_default().to_owned(),
            disk_bytes: stats["disk_bytes"].as_u64().unwrap_or(0),
        }
    }
}

/// What an attacking command saw, and the environment's disk use after it.
#[derive(Debug)]
struct Outcome {
    level: String,
    code: i64,
    stdout: String,
    stderr: String,
    disk_bytes: u64,
}

impl Outcome {
    /// Asserts that no step announced success by printing `mark`.
    fn never(&self, mark: &str) -> &Self {
        assert!(
            !self.stdout.contains(mark),
            "at security {}, a step that must be refused went through ({mark}): {self:#?}",
            self.level
        );
        self
    }

    /// Asserts that the command was told why: stderr holds `refusal`.
    fn told(&self, refusal: &str) -> &Self {
        assert!(
            self.stderr.contains(refusal),
            "at security {}, expected {refusal:?} on stderr: {self:#?}",
            self.level
        );
        self
    }
}

/// The contents of host files an attack aims at, to compare with after it.
struct HostFiles(Vec<(PathBuf, String)>);

impl HostFiles {
    fn read(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        Self(
            paths
                .into_iter()
                .map(|p| {
                    let text = std::fs::read_to_string(&p).unwrap();
                    (p, text)
                })
                .collect(),
        )
    }

    /// Asserts that an attack at `level` changed none of them.
    fn assert_unchanged(&self, level: &str) {
        for (path, was) in &self.0 {
            let now = std::fs::read_to_string(path).unwrap();
            assert_eq!(
                &now,
                was,
                "at {level}: the host's {} changed",
                path.display()
            );
        }
    }
}

/// A name no other run of these tests uses.
fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

#[test]
fn docker_remount_root_rw_then_write_etc_is_refused() {
    let Some(range) = Range::new() else {
        return;
    };
    let host_file = PathBuf::from(format!("/etc/ptest-hostile-{}", nonce()));
    let script = format!(
        "mount -o remount,rw / && echo REMOUNTED; \
         mount -o remount,bind,rw / && echo REMOUNTED; \
         echo pwned > {0} && echo WROTE; exit 0",
        host_file.display()
    );
    for level in LEVELS {
        let out = range.attack(level, &[], &script);
        out.never("REMOUNTED").told("permission denied");
        if level != "medium" {
            // medium's root filesystem is the container's own writable layer; from high up
            // it is read-only.
            out.never("WROTE").told("Read-only file system");
        }
        assert!(
            !host_file.exists(),
            "at {level}: the host's {} was written",
            host_file.display()
        );
    }
}

#[test]
fn docker_bind_root_elsewhere_is_refused() {
    let Some(range) = Range::new() else {
        return;
    };
    let script = "mkdir -p /ptest/tmp/x; \
                  mount --bind / /ptest/tmp/x && echo BOUND; \
                  mount -o rbind / /ptest/tmp/x && echo BOUND; \
                  echo entries $(ls /ptest/tmp/x | wc -l)";
    for level in LEVELS {
        let out = range.attack(level, &[], script);
        out.never("BOUND").told("permission denied");
        assert!(out.stdout.contains("entries 0"), "at {level}: {out:#?}");
    }
    // Nothing of the attack is left behind on the host either.
    assert!(range.t.names().is_empty());
}

#[test]
fn docker_socket_is_absent_unless_exposed() {
    let Some(range) = Range::new() else {
        return;
    };
    // The engine these tests run on answers on the host's docker.sock (unless DOCKER_HOST
    // points elsewhere): the socket is there to be reached, had the container a way to it.
    let docker_sock = Path::new("/var/run/docker.sock");
    if std::env::var_os("DOCKER_HOST").is_none() {
        assert!(docker_sock.metadata().unwrap().file_type().is_socket());
    }
    // A control socket of the host's own, as a test might want to hand one in.
    let socket = range.t.dir.path().join("control.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let socket_arg = socket.to_str().unwrap();
    let host_inode = {
        let meta = socket.metadata().unwrap();
        format!("{}:{} socket", meta.dev(), meta.ino())
    };
    let look = format!(
        "for s in /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock \
         /run/dbus/system_bus_socket {socket_arg}; do test -e $s && echo PRESENT $s; done; exit 0"
    );
    // The same socket inode (a connect reaches the host's listener), writable, so connectable
    // even by uid 65534 (busybox has no Unix-socket client to connect with); its inode cannot
    // be changed from inside.
    let use_it = format!(
        "stat -c '%d:%i %F' {socket_arg}; test -w {socket_arg} && echo CONNECTABLE; \
         chmod 0777 {socket_arg} && echo CHMODDED; exit 0"
    );
    for level in LEVELS {
        range.attack(level, &[], &look).never("PRESENT");
        let out = range.attack(level, &["--expose-socket", socket_arg], &use_it);
        assert_eq!(
            out.stdout,
            format!("{host_inode}\nCONNECTABLE\n"),
            "at {level}: {out:#?}"
        );
        out.never("CHMODDED").told("Read-only file system");
    }
    assert_eq!(
        socket.metadata().unwrap().permissions().mode() & 0o777,
        0o666
    );
    // A path that is no socket, or nothing, is refused before anything is made.
    for bad in ["/etc/hostname", "/run/ptest-no-such.sock"] {
        range
            .t
            .ptest([
                "env",
                "create",
                "bad",
                "--build",
                range.context.to_str().unwrap(),
                "--expose-socket",
                bad,
            ])
            .assert()
            .code(2)
            .stderr(predicates::str::contains(bad));
    }
    assert!(range.t.names().is_empty());
}

#[test]
fn docker_global_sysctl_write_is_refused() {
    let Some(range) = Range::new() else {
        return;
    };
    let knobs = HostFiles::read(
        ["/proc/sys/vm/swappiness", "/proc/sys/kernel/core_pattern"].map(PathBuf::from),
    );
    let script = "echo 1 > /proc/sys/vm/swappiness && echo WROTE; \
                  echo '|/bin/sh -c reboot' > /proc/sys/kernel/core_pattern && echo WROTE; \
                  sysctl -w vm.swappiness=2 && echo WROTE; exit 0";
    for level in LEVELS {
        range
            .attack(level, &[], script)
            .never("WROTE")
            .told("Read-only file system");
        knobs.assert_unchanged(level);
    }
}

#[test]
fn docker_kernel_memory_keys_and_sysrq_are_masked() {
    let Some(range) = Range::new() else {
        return;
    };
    // What the host has (kcore and sysrq-trigger depend on the kernel's configuration) is
    // not empty there: the container must see nothing of it.
    let masked = ["/proc/kcore", "/proc/keys", "/proc/timer_list"];
    for file in masked.iter().filter(|f| Path::new(f).exists()) {
        let mut head = [0u8; 1];
        let n = std::io::Read::read(&mut std::fs::File::open(file).unwrap(), &mut head).unwrap();
        assert_eq!(n, 1, "{file} is empty on the host: the test proves nothing");
    }
    let script = format!(
        "for f in {}; do echo $f $(head -c 4096 $f 2>/dev/null | wc -c); done; \
         echo h > /proc/sysrq-trigger && echo SYSRQ; exit 0",
        masked.join(" ")
    );
    for level in LEVELS {
        let out = range.attack(level, &[], &script);
        out.never("SYSRQ");
        for file in masked {
            assert!(
                out.stdout.contains(&format!("{file} 0\n")),
                "at {level}: {file} readable: {out:#?}"
            );
        }
        // Read-only, or absent on a kernel without magic SysRq: refused either way.
        assert!(
            out.stderr.contains("Read-only file system")
                || (!Path::new("/proc/sysrq-trigger").exists()
                    && out.stderr.contains("nonexistent directory")),
            "at {level}: {out:#?}"
        );
    }
}

/// The major and minor numbers of a block device of the host's: the one `/` lives on, else
/// the first in `/proc/partitions`.
fn host_disk() -> (u64, u64) {
    let dev = std::fs::metadata("/").unwrap().dev();
    let (major, minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    if major != 0 {
        return (major, minor);
    }
    let partitions = std::fs::read_to_string("/proc/partitions").unwrap();
    let line = partitions
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() == 4 && f[0].parse::<u64>().is_ok())
        .expect("a block device in /proc/partitions");
    (line[0].parse().unwrap(), line[1].parse().unwrap())
}

#[test]
fn docker_mknod_host_disk_then_read_it_raw_is_refused() {
    let Some(range) = Range::new() else {
        return;
    };
    let (major, minor) = host_disk();
    let script = format!(
        "for d in /ptest/tmp /workspace /tmp; do \
           mknod $d/disk b {major} {minor} && echo MADE $d; \
           echo read $(dd if=$d/disk bs=512 count=1 2>/dev/null | wc -c); \
         done; exit 0"
    );
    for level in LEVELS {
        let out = range.attack(level, &[], &script);
        out.never("MADE").told("Operation not permitted");
        assert_eq!(out.stdout, "read 0\n".repeat(3), "at {level}: {out:#?}");
    }
}

#[test]
fn docker_unshare_user_namespace_then_mount_is_refused() {
    let Some(range) = Range::new() else {
        return;
    };
    let script = "unshare -U -m -r sh -c 'mount -t tmpfs none /ptest/tmp && echo MOUNTED'; \
                  unshare -m sh -c 'mount -t tmpfs none /ptest/tmp && echo MOUNTED'; exit 0";
    for level in LEVELS {
        range
            .attack(level, &[], script)
            .never("MOUNTED")
            .told("Operation not permitted");
    }
}

#[test]
fn docker_proc_1_root_and_mem_show_nothing_of_the_host() {
    let Some(range) = Range::new() else {
        return;
    };
    // A file only the host has: through any process's root, the container must not find it.
    let marker = range.t.dir.path().join(format!("host-only-{}", nonce()));
    std::fs::write(&marker, "host\n").unwrap();
    let script = format!(
        "for p in /proc/[0-9]*; do test -e $p/root{0} && echo HOST $p; done; \
         test -e /proc/1/root{1} && echo HOST repo; \
         echo init $(tr '\\0' ' ' < /proc/1/cmdline); \
         echo pids $(ls -d /proc/[0-9]* | wc -l); \
         dd if=/proc/1/mem bs=1 count=1 2>/dev/null; exit 0",
        marker.display(),
        env!("CARGO_MANIFEST_DIR"),
    );
    for level in LEVELS {
        let out = range.attack(level, &[], &script);
        out.never("HOST");
        // PID 1 is the container's own init, and only the container's few processes show.
        assert!(
            out.stdout
                .contains("init /sbin/docker-init -- sleep 2147483647"),
            "at {level}: {out:#?}"
        );
        let pids: u32 = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("pids "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(pids < 10, "at {level}: {pids} processes visible: {out:#?}");
    }
}

#[test]
fn docker_cgroup_release_agent_write_is_refused() {
    let Some(range) = Range::new() else {
        return;
    };
    // On a cgroup v1 host every hierarchy's root has one: the classic escape writes a host
    // path there and lets the kernel run it as root.
    let agents = HostFiles::read(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .filter_map(|e| Some(e.ok()?.path().join("release_agent")))
            .filter(|p| p.exists()),
    );
    let script = "for f in /sys/fs/cgroup/release_agent /sys/fs/cgroup/*/release_agent \
                    /sys/fs/cgroup/*/notify_on_release; do \
                    [ -e $f ] && { echo 1 > $f && echo WROTE $f; }; done; \
                  mkdir -p /ptest/tmp/cg; \
                  mount -t cgroup -o memory cgroup /ptest/tmp/cg && echo MOUNTED; \
                  mount -t cgroup2 none /ptest/tmp/cg && echo MOUNTED; exit 0";
    for level in LEVELS {
        let out = range.attack(level, &[], script);
        out.never("WROTE")
            .never("MOUNTED")
            .told("permission denied");
        if Path::new("/sys/fs/cgroup/memory/notify_on_release").exists() {
            out.told("Read-only file system");
        }
        agents.assert_unchanged(level);
    }
}

#[test]
fn docker_tmp_and_dev_shm_cannot_be_filled_past_the_limit() {
    let Some(range) = Range::new() else {
        return;
    };
    let fill = "for d in /tmp /dev/shm; do \
                  dd if=/dev/zero of=$d/fill bs=1M count=40; \
                  echo $d $(($(wc -c < $d/fill) / 1048576)); done";
    let sizes = "df -k /tmp /dev/shm; dd if=/dev/zero of=/dev/shm/x bs=1M count=8 2>/dev/null";
    for level in LEVELS {
        // With --disk: /tmp and /dev/shm live in the size-limited root and share its limit.
        let out = range.attack(level, &["--disk", "16M"], fill);
        let written: u64 = out
            .stdout
            .lines()
            .map(|l| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap())
            .sum();
        assert!(
            written <= 16,
            "at {level}: {written} MiB written past --disk 16M: {out:#?}"
        );
        out.told("No space left on device");
        assert!(
            out.disk_bytes >= (written.max(1) - 1) << 20,
            "at {level}: DISK uncounted: {out:#?}"
        );
        // Without: bounded by the documented defaults, and counted in env stats DISK.
        let out = range.attack(level, &[], sizes);
        let kib: Vec<u64> = out
            .stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(kib, vec![1 << 20, 64 << 10], "at {level}: {out:#?}");
        assert!(
            out.disk_bytes >= 8 << 20,
            "at {level}: /dev/shm uncounted: {out:#?}"
        );
    }
}

#[test]
fn docker_root_only_file_is_unreadable_at_high_and_strict() {
    let Some(range) = Range::new() else {
        return;
    };
    let script = "id -u; ls -l /etc/shadow; cat /etc/shadow";
    for level in ["high", "strict"] {
        let out = range.attack(level, &[], script);
        out.never("ptest-test-secret").told("Permission denied");
        assert_eq!(out.code, 1, "at {level}: cat succeeded: {out:#?}");
        assert!(out.stdout.starts_with("65534\n"), "at {level}: {out:#?}");
        // The image carries it, root-only: a refusal, not an absence.
        assert!(out.stdout.contains("-rw-r-----"), "at {level}: {out:#?}");
    }
}
