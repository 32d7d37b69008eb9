//! Times ptest's library calls side by side with the bare operation each one wraps, for
//! `bench/run`. Every mode interleaves its contenders call by call (A, B, C, A, B, C, …) after a
//! warm-up, and writes the per-call times in the shape `hyperfine --export-json` uses
//! (`{"results": [{"command", "times": [seconds…], …}]}`), so `bench/report.py` reads both alike.
//!
//! ```text
//! ptest-lib-bench exec      --home DIR --iters N --warmup W --out FILE
//! ptest-lib-bench create-rm --home DIR --iters N --warmup W --out FILE
//! ptest-lib-bench scale     --home DIR --checkpoints 50,100,200,500 --samples S --out PREFIX
//! ```
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
    IsolationLevel, Manager, RemoveOptions,
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
}

fn open_manager(home: &Path) -> Res<Manager> {
    let mut engines = EngineRegistry::new();
    engines.register(Arc::new(ptest_local::DirectoryEngine::new()));
    let mut config = Config::default();
    // The scale run holds 500 environments at once; the default cap is 100.
    config.max_environments = 10_000;
    Ok(Manager::open(Home::at(home), config, engines)?)
}

async fn create(manager: &Manager, name: &str) -> Res<Environment> {
    let spec = EnvironmentSpec::new(IsolationLevel::Basic).name(EnvName::new(name)?);
    Ok(manager.create_environment(spec).await?)
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

async fn create_cleanup(manager: &Manager, name: &str) -> Res<f64> {
    let start = Instant::now();
    let env = create(manager, name).await?;
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
    let env = create(&manager, "lib-exec").await?;
    let mut samples = Samples::default();
    for i in 0..warmup + iters {
        let ptest = lib_exec(&manager, &env).await?;
        let bare = bare_exec()?;
        let tokio = tokio_exec().await?;
        if i >= warmup {
            samples.push("Manager::execute_command([\"true\"])", ptest);
            samples.push("std Command::new(\"true\").status()", bare);
            samples.push("tokio Command::new(\"true\").status()", tokio);
        }
    }
    manager.cleanup(&env, RemoveOptions::default()).await?;
    samples.write(Path::new(args.get("out")?))
}

async fn mode_create_rm(args: &Args) -> Res<()> {
    let home = PathBuf::from(args.get("home")?);
    let manager = open_manager(&home)?;
    let (iters, warmup) = (args.number("iters")?, args.number("warmup")?);
    let dir = home.join("bare-dir");
    let mut samples = Samples::default();
    for i in 0..warmup + iters {
        let ptest = create_cleanup(&manager, "lib-create-rm").await?;
        let bare = mkdir_rmdir(&dir)?;
        if i >= warmup {
            samples.push("create_environment + cleanup", ptest);
            samples.push("create_dir + remove_dir", bare);
        }
    }
    samples.write(Path::new(args.get("out")?))
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
            let env = create(&manager, &format!("s{}", envs.len())).await?;
            point.push("create (filling up to N)", start.elapsed().as_secs_f64());
            envs.push(env);
        }
        // At population n, interleave the operations and their limits.
        for i in 0..samples_per_point {
            let env = &envs[(i * 7919) % envs.len()];
            point.push("exec true", lib_exec(&manager, env).await?);
            point.push("limit: fork/exec true", bare_exec()?);
            point.push("create + rm one more", create_cleanup(&manager, "extra").await?);
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
        other => Err(format!("unknown mode {other}: exec, create-rm or scale").into()),
    }
}
