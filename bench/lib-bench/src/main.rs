//! Times ptest's library calls side by side with the bare operation each one wraps, for
//! `bench/run`. Every mode interleaves its contenders call by call (A, B, C, A, B, C, …) after a
//! warm-up, and writes the per-call times in the shape `hyperfine --export-json` uses
//! (`{"results": [{"command", "times": [seconds…], …}]}`), so `bench/report.py` reads both alike.
//!
//! ```text
//! ptest-lib-bench exec      --home DIR --iters N --warmup W --out FILE [--security medium,low]
//! ptest-lib-bench create-rm --home DIR --iters N --warmup W --out FILE [--security medium,low]
//! ptest-lib-bench scale     --home DIR --checkpoints 50,100,200,500 --samples S --out PREFIX
//!                           [--security medium]
//! ptest-lib-bench ports     --home DIR --names N --out FILE
//! ptest-lib-bench bind-once
//! ptest-lib-bench tcp       --upstream PORT --via NAME=PORT[,NAME=PORT…] --round-trips N
//!                           --transfers T --mib M --out PREFIX
//! ```
//!
//! `exec` and `create-rm` time one environment per `--security` level, the bare operation (the
//! limit) and, when they run on this host, `bwrap --unshare-all` and `unshare -pfmiu` spawned
//! the same way. `ports` leases N named ports one after another (`Manager::allocate_port`)
//! against binding port 0 and closing it. `bind-once` binds port 0 once and exits: the limit of
//! one `ptest port alloc` process.
//!
//! `tcp` serves on 127.0.0.1:`--upstream` (an echo, or a download of a given size) and times
//! the same client work through each `--via` port (proxies in front of it) and directly (the
//! limit): `PREFIX-rtt.json` holds one 64-byte round trip per sample over a kept connection,
//! `PREFIX-throughput.json` one download of M MiB on a new connection per sample.
//!
//! `scale` writes `PREFIX.n<N>.json` per checkpoint, `PREFIX.final.json` (exec in each and
//! remove each at the largest population) and `PREFIX.tsv` (`metric n value unit` lines).

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use ptest_core::{
    Config, EngineRegistry, EnvFilter, EnvName, Environment, EnvironmentSpec, ExecRequest, Home,
    IsolationLevel, Manager, PortName, RemoveOptions, SecurityLevel,
};

type Res<T> = Result<T, Box<dyn Error>>;

/// Per-call times of each contender, in the order contenders were first timed.
#[derive(Default)]
struct Samples {
    order: Vec<String>,
    times: BTreeMap<String, Vec<f64>>,
}

impl Samples {
    fn push(&mut self, name: &str, seconds: f64) {
        if !self.times.contains_key(name) {
            self.order.push(name.to_owned());
        }
        self.times.entry(name.to_owned()).or_default().push(seconds);
    }

    /// The hyperfine `--export-json` shape (only the fields report.py reads, plus a few).
    fn to_json(&self) -> serde_json::Value {
        let results: Vec<_> = self
            .order
            .iter()
            .map(|name| {
                let times = &self.times[name];
                let mut sorted = times.clone();
                sorted.sort_by(f64::total_cmp);
                let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
                serde_json::json!({
                    "command": name,
                    "mean": mean,
                    "median": sorted.get(sorted.len() / 2),
                    "min": sorted.first(),
                    "max": sorted.last(),
                    "times": times,
                })
            })
            .collect();
        serde_json::json!({ "results": results })
    }

    fn write(&self, path: &Path) -> Res<()> {
        std::fs::write(path, serde_json::to_string_pretty(&self.to_json())?)?;
        Ok(())
    }
}

struct Args {
    mode: String,
    flags: BTreeMap<String, String>,
}

impl Args {
    fn parse() -> Res<Self> {
        let mut argv = std::env::args().skip(1);
        let mode = argv.next().ok_or("usage: ptest-lib-bench exec|create-rm|scale --flag value…")?;
        let mut flags = BTreeMap::new();
        while let Some(flag) = argv.next() {
            let key = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --flag, got {flag}"))?;
            let value = argv.next().ok_or_else(|| format!("--{key} needs a value"))?;
            flags.insert(key.to_owned(), value);
        }
        Ok(Self { mode, flags })
    }

    fn get(&self, key: &str) -> Res<&str> {
        Ok(self
            .flags
            .get(key)
            .ok_or_else(|| format!("--{key} is required"))?)
    }

    fn number(&self, key: &str) -> Res<usize> {
        Ok(self.get(key)?.parse()?)
    }

    /// `--security a,b` (default `default`): the levels to compare.
    fn securities(&self, default: &str) -> Res<Vec<SecurityLevel>> {
        let list = self.flags.get("security").map_or(default, String::as_str);
        list.split(',')
            .map(|s| s.parse::<SecurityLevel>().map_err(|e| format!("--security: {e}").into()))
            .collect()
    }
}

fn open_manager(home: &Path) -> Res<Manager> {
    let mut engines = EngineRegistry::new();
    engines.register(Arc::new(ptest_local::DirectoryEngine::new()));
    let mut config = Config::default();
    // The scale run holds 500 environments at once; the default cap is 100.
    config.max_environments = 10_000;
    Ok(Manager::open(Home::at(home), config, engines)?)
}

async fn create(manager: &Manager, name: &str, security: SecurityLevel) -> Res<Environment> {
    let mut spec = EnvironmentSpec::new(IsolationLevel::Basic).name(EnvName::new(name)?);
    spec.security = Some(security);
    let env = manager.create_environment(spec).await?;
    Ok(env)
}

/// The peers spawned like the limit: a sandbox built for one command, then `true` in it.
const PEERS: &[(&str, &[&str])] = &[
    (
        "bwrap --unshare-all (spawned)",
        &["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"],
    ),
    ("unshare -pfmiu --mount-proc (spawned)", &["unshare", "-pfmiu", "--mount-proc", "true"]),
];

/// The peers that run on this host (bwrap installed, unshare permitted).
fn usable_peers() -> Vec<(&'static str, &'static [&'static str])> {
    PEERS
        .iter()
        .copied()
        .filter(|(name, argv)| {
            let ok = spawn_argv(argv).is_ok();
            if !ok {
                eprintln!("lib-bench: {name} does not run here; left out");
            }
            ok
        })
        .collect()
}

/// One fork/exec of `argv`, waited for, output discarded, checked, timed.
fn spawn_argv(argv: &[&str]) -> Res<f64> {
    let start = Instant::now();
    let status = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let elapsed = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("{argv:?} failed: {status}").into());
    }
    Ok(elapsed)
}

fn label(what: &str, security: SecurityLevel) -> String {
    format!("{what}, security {security}")
}

/// One `execute_command(["true"])`, checked, timed.
async fn lib_exec(manager: &Manager, env: &Environment) -> Res<f64> {
    let start = Instant::now();
    let result = manager
        .execute_command(env, ExecRequest::new(["true"]))
        .await?;
    let elapsed = start.elapsed().as_secs_f64();
    if !result.success() {
        return Err(format!("`true` failed in {}: {result:?}", env.name).into());
    }
    Ok(elapsed)
}

/// The limit: one fork/exec of `true`, waited for, output discarded like ptest's capture.
fn bare_exec() -> Res<f64> {
    let start = Instant::now();
    let status = std::process::Command::new("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let elapsed = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err("`true` failed".into());
    }
    Ok(elapsed)
}

/// The same through tokio's process API, which the engine uses: the runtime's share.
async fn tokio_exec() -> Res<f64> {
    let start = Instant::now();
    let status = tokio::process::Command::new("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await?;
    let elapsed = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err("`true` failed".into());
    }
    Ok(elapsed)
}

async fn create_cleanup(manager: &Manager, name: &str, security: SecurityLevel) -> Res<f64> {
    let start = Instant::now();
    let env = create(manager, name, security).await?;
    manager.cleanup(&env, RemoveOptions::default()).await?;
    Ok(start.elapsed().as_secs_f64())
}

fn mkdir_rmdir(dir: &Path) -> Res<f64> {
    let start = Instant::now();
    std::fs::create_dir(dir)?;
    std::fs::remove_dir(dir)?;
    Ok(start.elapsed().as_secs_f64())
}

async fn mode_exec(args: &Args) -> Res<()> {
    let manager = open_manager(Path::new(args.get("home")?))?;
    let (iters, warmup) = (args.number("iters")?, args.number("warmup")?);
    let mut envs = Vec::new();
    for security in args.securities("medium,low")? {
        envs.push((security, create(&manager, &format!("lib-exec-{security}"), security).await?));
    }
    let peers = usable_peers();
    let mut samples = Samples::default();
    for i in 0..warmup + iters {
        let keep = i >= warmup;
        for (security, env) in &envs {
            let t = lib_exec(&manager, env).await?;
            if keep {
                samples.push(&label("Manager::execute_command([\"true\"])", *security), t);
            }
        }
        let bare = bare_exec()?;
        let tokio = tokio_exec().await?;
        if keep {
            samples.push("std Command::new(\"true\").status()", bare);
            samples.push("tokio Command::new(\"true\").status()", tokio);
        }
        for (name, argv) in &peers {
            let t = spawn_argv(argv)?;
            if keep {
                samples.push(name, t);
            }
        }
    }
    for (_, env) in &envs {
        manager.cleanup(env, RemoveOptions::default()).await?;
    }
    samples.write(Path::new(args.get("out")?))
}

async fn mode_create_rm(args: &Args) -> Res<()> {
    let home = PathBuf::from(args.get("home")?);
    let manager = open_manager(&home)?;
    let (iters, warmup) = (args.number("iters")?, args.number("warmup")?);
    let securities = args.securities("medium,low")?;
    let peers = usable_peers();
    let dir = home.join("bare-dir");
    let mut samples = Samples::default();
    for i in 0..warmup + iters {
        let keep = i >= warmup;
        for &security in &securities {
            let t = create_cleanup(&manager, "lib-create-rm", security).await?;
            if keep {
                samples.push(&label("create_environment + cleanup", security), t);
            }
        }
        let bare = mkdir_rmdir(&dir)?;
        if keep {
            samples.push("create_dir + remove_dir", bare);
        }
        for (name, argv) in &peers {
            let t = spawn_argv(argv)?;
            if keep {
                samples.push(name, t);
            }
        }
    }
    samples.write(Path::new(args.get("out")?))
}

/// N named leases on one environment, one after another, against binding port 0 and closing
/// it (TCP, all IPv4 addresses, as ptest binds before it leases); then every lease released.
async fn mode_ports(args: &Args) -> Res<()> {
    let home = PathBuf::from(args.get("home")?);
    let manager = open_manager(&home)?;
    let names = args.number("names")?;
    let env = create(&manager, "lib-ports", SecurityLevel::Low).await?;
    let mut samples = Samples::default();
    let mut ports = std::collections::BTreeSet::new();
    for i in 0..names {
        let name: PortName = format!("p{i}").parse()?;
        let start = Instant::now();
        let port = manager.allocate_port(&env, &name)?;
        samples.push("Manager::allocate_port (N names, one by one)", start.elapsed().as_secs_f64());
        if !ports.insert(port) {
            return Err(format!("port {port} leased twice").into());
        }
        let start = Instant::now();
        let listener = std::net::TcpListener::bind(("0.0.0.0", 0))?;
        let _ = listener.local_addr()?;
        drop(listener);
        samples.push("limit: bind port 0 + close", start.elapsed().as_secs_f64());
    }
    for i in 0..names {
        let name: PortName = format!("p{i}").parse()?;
        let start = Instant::now();
        manager.release_port(&env, &name)?;
        samples.push("Manager::release_port", start.elapsed().as_secs_f64());
    }
    manager.cleanup(&env, RemoveOptions::default()).await?;
    samples.write(Path::new(args.get("out")?))
}

/// Binds port 0 once and prints the port: what one `ptest port alloc` process must at least do.
fn bind_once() -> Res<()> {
    let listener = std::net::TcpListener::bind(("0.0.0.0", 0))?;
    println!("{}", listener.local_addr()?.port());
    Ok(())
}

/// The server behind the proxies of `tcp`: a first byte `e` asks for an echo of everything
/// that follows; `d` and a little-endian u64 N for N bytes, then the end of the connection.
fn tcp_upstream(port: u16) -> Res<()> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut s = stream;
                s.set_nodelay(true)?;
                let mut kind = [0; 1];
                s.read_exact(&mut kind)?;
                if kind[0] == b'e' {
                    let mut r = s.try_clone()?;
                    std::io::copy(&mut r, &mut s)?;
                } else {
                    let mut n = [0; 8];
                    s.read_exact(&mut n)?;
                    let block = vec![b'x'; 256 * 1024];
                    let mut left = u64::from_le_bytes(n) as usize;
                    while left > 0 {
                        let k = left.min(block.len());
                        s.write_all(&block[..k])?;
                        left -= k;
                    }
                }
                Ok(())
            });
        }
    });
    Ok(())
}

fn mode_tcp(args: &Args) -> Res<()> {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let upstream: u16 = args.get("upstream")?.parse()?;
    let round_trips = args.number("round-trips")?;
    let transfers = args.number("transfers")?;
    let bytes = args.number("mib")? as u64 * 1024 * 1024;
    let prefix = args.get("out")?;
    let mut contenders = vec![("direct (limit)".to_owned(), upstream)];
    for pair in args.get("via")?.split(',') {
        let (name, port) = pair.split_once('=').ok_or("--via takes NAME=PORT")?;
        contenders.push((name.to_owned(), port.parse()?));
    }
    tcp_upstream(upstream)?;
    let connect = |port: u16, first: &[u8]| -> Res<TcpStream> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.write_all(first)?;
        Ok(s)
    };
    let mut streams = contenders
        .iter()
        .map(|(_, port)| connect(*port, b"e"))
        .collect::<Res<Vec<_>>>()?;
    let ping = [7u8; 64];
    let mut pong = [0u8; 64];
    let mut rtt = Samples::default();
    for i in 0..round_trips + 100 {
        for k in 0..contenders.len() {
            let k = (k + i) % contenders.len();
            let start = Instant::now();
            streams[k].write_all(&ping)?;
            streams[k].read_exact(&mut pong)?;
            if i >= 100 {
                rtt.push(&contenders[k].0, start.elapsed().as_secs_f64());
            }
        }
    }
    rtt.write(Path::new(&format!("{prefix}-rtt.json")))?;
    let mut throughput = Samples::default();
    let mut sink = vec![0u8; 256 * 1024];
    for i in 0..transfers + 1 {
        for k in 0..contenders.len() {
            let k = (k + i) % contenders.len();
            let start = Instant::now();
            let mut request = vec![b'd'];
            request.extend_from_slice(&bytes.to_le_bytes());
            let mut s = connect(contenders[k].1, &request)?;
            let mut got = 0u64;
            loop {
                let n = s.read(&mut sink)?;
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            if got != bytes {
                return Err(format!("{}: {got} of {bytes} bytes came", contenders[k].0).into());
            }
            // The first round warms up.
            if i > 0 {
                throughput.push(&contenders[k].0, start.elapsed().as_secs_f64());
            }
        }
    }
    throughput.write(Path::new(&format!("{prefix}-throughput.json")))?;
    Ok(())
}

/// Peak resident set of this process so far, in KiB.
fn peak_rss_kib() -> Res<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmHWM")?
        .parse()?)
}

async fn mode_scale(args: &Args) -> Res<()> {
    let home = PathBuf::from(args.get("home")?);
    let manager = open_manager(&home)?;
    let samples_per_point = args.number("samples")?;
    let prefix = args.get("out")?;
    let security = args.securities("medium")?[0];
    let checkpoints: Vec<usize> = args
        .get("checkpoints")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let mut tsv = String::new();
    let mut envs: Vec<Environment> = Vec::new();
    let dir = home.join("bare-dir");
    for &n in &checkpoints {
        let mut point = Samples::default();
        // Fill sequentially up to n; each create is timed at the population it ran at.
        while envs.len() < n {
            let start = Instant::now();
            let env = create(&manager, &format!("s{}", envs.len()), security).await?;
            point.push("create (filling up to N)", start.elapsed().as_secs_f64());
            envs.push(env);
        }
        // At population n, interleave the operations and their limits.
        for i in 0..samples_per_point {
            let env = &envs[(i * 7919) % envs.len()];
            point.push("exec true", lib_exec(&manager, env).await?);
            point.push("limit: fork/exec true", bare_exec()?);
            point.push("create + rm one more", create_cleanup(&manager, "extra", security).await?);
            point.push("limit: mkdir + rmdir", mkdir_rmdir(&dir)?);
            let start = Instant::now();
            let listed = manager.list_environments(&EnvFilter::default())?;
            point.push("list", start.elapsed().as_secs_f64());
            if listed.len() != n {
                return Err(format!("listed {} environments, expected {n}", listed.len()).into());
            }
        }
        point.write(Path::new(&format!("{prefix}.n{n}.json")))?;
        eprintln!("lib scale: {n} environments measured");
    }
    // Then, at the largest population: exec in each environment, and remove them all.
    let n = envs.len();
    let mut last = Samples::default();
    for env in &envs {
        last.push("exec in each", lib_exec(&manager, env).await?);
    }
    writeln!(tsv, "peak RSS of the process (VmHWM)\t{n}\t{}\tKiB", peak_rss_kib()?)?;
    for env in &envs {
        let start = Instant::now();
        manager.cleanup(env, RemoveOptions::default()).await?;
        last.push("remove each (population N down to 0)", start.elapsed().as_secs_f64());
    }
    last.write(Path::new(&format!("{prefix}.final.json")))?;
    let left = manager.list_environments(&EnvFilter::default())?.len();
    if left != 0 {
        return Err(format!("{left} environments left after removing all").into());
    }
    std::fs::write(format!("{prefix}.tsv"), tsv)?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Res<()> {
    let args = Args::parse()?;
    match args.mode.as_str() {
        "exec" => mode_exec(&args).await,
        "create-rm" => mode_create_rm(&args).await,
        "scale" => mode_scale(&args).await,
        "ports" => mode_ports(&args).await,
        "bind-once" => bind_once(),
        "tcp" => mode_tcp(&args),
        other => Err(format!(
            "unknown mode {other}: exec, create-rm, scale, ports, bind-once or tcp"
        )
        .into()),
    }
}
