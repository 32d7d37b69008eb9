//! The command line, declared with clap: the top level and `env`, `run`, `pkg`, ... here,
//! `proc` and `net` in modules of their own. Command bodies are in `cmd/`.

mod deferred;
pub mod net;
pub mod proc;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
pub use deferred::{Deferred, build_eagerly};
use ptest_core::{
    AllowRule, ByteSize, CleanupPolicy, EnvName, EnvironmentStatus, ExposedSocket, IsolationLevel,
    NetworkMode, PortName, SecurityLevel, limit_range,
};

/// A clap value parser: `T`'s own parsing, then `check` (a range of [`limit_range`]).
fn checked<T>(
    check: fn(T) -> Result<T, String>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    move |text: &str| text.parse::<T>().map_err(|e| e.to_string()).and_then(check)
}

/// Isolated environments for test runs: directories, sandboxes, virtualenvs, containers.
///
/// ptest gives every test run its own environment and manages what happens inside it. State
/// lives in $PTEST_HOME (default ~/.local/share/ptest).
///
/// Exit codes: a command's own code for `env exec`; 2 usage or config error; 3 environment not
/// found, name taken, limit reached, busy or in the wrong state; 125 internal error.
#[derive(Debug, Parser)]
#[command(name = "ptest", version, max_term_width = 100)]
pub struct Cli {
    /// Override a config value for this command (KEY=VALUE, e.g. max_environments=10).
    #[arg(long = "config", global = true, value_name = "KEY=VALUE")]
    pub config: Vec<String>,

    /// More log output on stderr (-v info, -vv debug); PTEST_LOG takes a tracing filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the test suites of ptest.toml, each in its own environment, in parallel.
    ///
    /// Each suite gets a private copy of the project (or an overlay, or the project itself:
    /// the template's `project`). In a pod (`level = "kubernetes"`) the copy goes in as a tar
    /// through the exec subresource, and a suite's `junit` report comes back out as one;
    /// services and `project = "bind"` are refused there, since they need the workspace on
    /// this host.
    Run(Deferred<RunArgs>),
    /// Write a commented starter ptest.toml for the project in the current directory.
    Init(Deferred<InitArgs>),
    /// Create, inspect, run commands in and remove environments.
    #[command(subcommand)]
    Env(Deferred<EnvCommand>),
    /// Install, inspect and check Python packages of a virtualenv environment.
    #[command(subcommand)]
    Pkg(Deferred<PkgCommand>),
    /// Lease, list and release host ports (clash-free across every ptest on this host).
    #[command(subcommand)]
    Port(Deferred<PortCommand>),
    /// Start, list, follow, stop and wait for background processes (services) of environments.
    #[command(subcommand)]
    Proc(Deferred<proc::ProcCommand>),
    /// List background processes (same as `proc list`).
    Ps(Deferred<proc::ProcListArgs>),
    /// Inject network faults (latency, bandwidth, resets, outages) on environments' ports.
    #[command(subcommand)]
    Net(Deferred<net::NetCommand>),
    /// Serve the fault proxy a control file describes (started by `net fault`; not for
    /// direct use).
    #[command(name = "__proxy", hide = true)]
    Proxy {
        /// The proxy's control file.
        control: PathBuf,
    },
    /// Supervise background process record ID (started by `proc start`; not for direct use).
    #[command(name = "__supervise", hide = true)]
    Supervise {
        /// The process record.
        id: i64,
    },
    /// Show the event log (what happened to which environment, and when).
    Events(Deferred<EventsArgs>),
    /// Remove what the cleanup policies say is due, and records whose root vanished.
    Gc(Deferred<GcArgs>),
    /// Report which levels and features this host supports, and why not; with --repair,
    /// rebuild a damaged state database from the roots on the host.
    Doctor(Deferred<DoctorArgs>),
    /// Summarize this home: environments by level and status, what the quotas hold, and
    /// whether the holders and supervisors ptest keeps are alive.
    Status(Deferred<StatusArgs>),
    /// Show or check the configuration.
    #[command(subcommand)]
    Config(Deferred<ConfigCommand>),
    /// Print a shell completion script (e.g. `ptest completions bash > /etc/bash_completion.d/ptest`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Only these suites (and the suites they depend on).
    pub suites: Vec<String>,
    /// Only suites with this tag, repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Leave out suites with this tag, repeatable.
    #[arg(long = "exclude-tag", value_name = "TAG")]
    pub exclude_tags: Vec<String>,
    /// Print what would run (suites, environments, tags) and exit.
    #[arg(long)]
    pub list: bool,
    /// Suites at once (default: the number of cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Start no new suite after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// Retry failing suites N times (a suite passing on retry is reported flaky).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// End the whole run after this long (e.g. 10m).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Also write the JUnit XML report here (every run writes its reports to
    /// $PTEST_HOME/reports/<run id>/).
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Also write the self-contained HTML report (timeline, resources) here.
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    /// Keep every environment after the run (for debugging).
    #[arg(long)]
    pub keep: bool,
    /// Keep the environments of suites that failed, and print how to enter them.
    #[arg(long)]
    pub keep_failed: bool,
    /// The project: a ptest.toml or its directory (default: found from here upwards).
    #[arg(long, value_name = "PATH")]
    pub project: Option<PathBuf>,
    /// Finish run RUN whose ptest died (RUN: the id `ptest run` prints as it starts, or
    /// `last`). Suites that finished keep their results and are not run again; the others
    /// run in new environments (what is left of the run's old ones is removed first, and
    /// what `ptest gc` removed meanwhile is simply re-created); the reports cover the whole
    /// run. The run's own project, selection and options apply (only -j may be given).
    /// Exit 3 for an unknown run, one that finished or one whose ptest still runs; exit 2
    /// when ptest.toml's planned suites changed since the run started.
    #[arg(
        long,
        value_name = "RUN",
        conflicts_with_all = [
            "suites", "tags", "exclude_tags", "list", "fail_fast", "retries", "timeout",
            "keep", "keep_failed", "project", "args",
        ]
    )]
    pub resume: Option<String>,
    /// Print the run report (or with --list, the plan) as JSON on stdout instead of live
    /// lines; `--json=PATH` writes it to PATH and keeps the live lines.
    #[arg(
        long,
        value_name = "PATH",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "-"
    )]
    pub json: Option<PathBuf>,
    /// Arguments for the test command, after `--` (`ptest run unit -- -k foo`): they replace
    /// `{posargs}` (or `{posargs:DEFAULT}`) where a selected suite's `run` names it, and are
    /// appended to its `run` otherwise (single-quoted in a shell string). Suites that run
    /// only as a dependency get `{posargs}`'s default.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// Arguments of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing ptest.toml.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// When state.db is missing, empty, truncated or not a database while roots exist: move
    /// it aside (state.db.damaged-<time>) and record every marked root under envs/ again, as
    /// `recovered-<id>` in `error`, so that `ptest env rm` can remove it. Does nothing to a
    /// healthy store.
    #[arg(long)]
    pub repair: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--json` alone.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `ptest env ...`.
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment and make it active (`--no-start`: leave it created).
    Create(Box<CreateArgs>),
    /// List environments.
    #[command(alias = "ls")]
    List(EnvListArgs),
    /// Show one environment.
    Show(NameArgs),
    /// Run a command in an environment; its exit code becomes ptest's.
    ///
    /// Output streams live to this terminal. The command runs in the environment's workspace/
    /// with HOME, TMPDIR and PTEST_ENV_ID/NAME/ROOT set. Anything it leaves running in its
    /// process group is killed when it exits. A timeout kills the whole tree and exits 124; a
    /// signal death exits 128+N. SIGINT (Ctrl-C), SIGTERM, SIGHUP and SIGQUIT sent to ptest are
    /// passed on to the command's process group, and ptest keeps waiting for it.
    Exec(ExecArgs),
    /// Show what an environment uses: disk, files, memory, CPU, processes.
    Stats(StatsArgs),
    /// Check that an environment is intact; exits 1 if something is wrong.
    Validate(NameArgs),
    /// Remove environments (their processes, their root, their record).
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Stop an active or paused environment: its background processes and commands are
    /// stopped, its holder or container released; root, venv, ports and record stay. Status
    /// `inactive`; `env start` starts it again. Exit 3 from any other state.
    Stop(NameArgs),
    /// Start a created or stopped environment again: a new holder (or the container
    /// started), then the background processes `env stop` stopped, started again. Exit 3 from
    /// any other state.
    Start(NameArgs),
    /// Freeze every process of an active environment (the cgroup freezer; `docker pause`):
    /// they keep their memory and ports, and nothing runs in it until `env resume`. Exit 3
    /// where it cannot be frozen, saying why.
    Pause(NameArgs),
    /// Let a paused environment's processes run again.
    Resume(NameArgs),
}

/// Arguments of `env create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name ([a-z0-9][a-z0-9_.-]{0,62}); env-<id> when omitted.
    pub name: Option<EnvName>,
    /// Isolation level (default: config key default_level).
    #[arg(long, short)]
    pub level: Option<IsolationLevel>,
    /// Root directory (must not exist or be empty); default $PTEST_HOME/envs/<id>.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Label KEY=VALUE, repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,
    /// When to remove it (default: config key level.<level>.cleanup).
    #[arg(long)]
    pub cleanup: Option<CleanupPolicy>,
    /// Time to live under --cleanup scheduled, e.g. 30m (default: level.<level>.ttl).
    #[arg(long, value_parser = parse_duration)]
    pub ttl: Option<Duration>,
    /// Security level: low (own directories and cgroup), medium (plus PID/mount/IPC/UTS
    /// namespaces, read-only host, private bounded /tmp and /dev/shm, a fresh /run, host
    /// secrets masked; root of the pod only: Docker's default capabilities and a seccomp
    /// filter, so no mount or namespace change), high (plus no network by default, no
    /// capabilities, only system directories visible), strict (plus Landlock, write only
    /// beneath the root, and no ptrace). Default: medium where the host allows, else low.
    #[arg(long, help_heading = "Sandbox")]
    pub security: Option<SecurityLevel>,
    /// Network: host, loopback (own namespace, only lo), none, bridge (own namespace on this
    /// home's bridge with an address of its own; sends only where --allow says).
    #[arg(long, value_parser = parse_network, help_heading = "Sandbox")]
    pub network: Option<NetworkMode>,
    /// With --network bridge: a destination the environment may reach, HOST[:PORT] (TCP and
    /// UDP); HOST is an IPv4 address or network, another environment's name, `host` or a host
    /// name, resolved at creation. Repeatable; everything else is refused.
    #[arg(long, value_name = "HOST[:PORT]", help_heading = "Sandbox")]
    pub allow: Vec<AllowRule>,
    /// A host Unix socket to show inside at the same path, e.g. /var/run/docker.sock for tests
    /// that drive Docker (repeatable). Pods get a fresh /run: without this, the host's control
    /// sockets (docker.sock, containerd, dbus) are not there.
    #[arg(long = "expose-socket", value_name = "PATH", help_heading = "Sandbox")]
    pub expose_sockets: Vec<ExposedSocket>,
    /// Memory limit, swap counted (e.g. 512M; at least 4M).
    #[arg(long, value_parser = checked(limit_range::memory), help_heading = "Sandbox")]
    pub memory: Option<ByteSize>,
    /// CPU limit as a fraction of cores (e.g. 0.5, 2; more than 0, at most 1024).
    #[arg(long, value_parser = checked(limit_range::cpus), help_heading = "Sandbox")]
    pub cpus: Option<f64>,
    /// Maximum number of processes (1 to 4194304).
    #[arg(long, value_parser = checked(limit_range::pids), help_heading = "Sandbox")]
    pub pids: Option<u64>,
    /// Maximum open files per process (16 to 1048576).
    #[arg(long, value_parser = checked(limit_range::nofile), help_heading = "Sandbox")]
    pub nofile: Option<u64>,
    /// Largest file a process may write (e.g. 10M); a bigger write fails (SIGXFSZ).
    #[arg(long, value_parser = checked(limit_range::fsize), help_heading = "Sandbox")]
    pub fsize: Option<ByteSize>,
    /// Disk space of the root: a size-limited tmpfs (e.g. 100M, at least 1M); writes past it
    /// get ENOSPC. The pod's /tmp and /dev/shm then live in it and share the limit.
    #[arg(long, value_parser = checked(limit_range::disk), help_heading = "Sandbox")]
    pub disk: Option<ByteSize>,
    /// Number of files and directories in the root (inode-limited tmpfs; at least 1).
    #[arg(long, value_parser = checked(limit_range::files), help_heading = "Sandbox")]
    pub files: Option<u64>,
    /// Apply what this host can and record what was dropped, instead of refusing.
    #[arg(long, help_heading = "Sandbox")]
    pub allow_degraded: bool,
    /// Build it but start nothing in it: status `created` until `ptest env start`.
    #[arg(long)]
    pub no_start: bool,
    /// Lease a host port under this name (PTEST_PORT_<NAME> in every command), repeatable. A
    /// kubernetes environment's port is a container port, forwarded from 127.0.0.1 of this host
    /// only while the process that started it runs (`ptest run`, a library or Python caller),
    /// never after `env create` returns.
    #[arg(long = "port", value_name = "NAME")]
    pub ports: Vec<PortName>,
    /// Default timeout of commands run in it, e.g. 10m.
    #[arg(long, value_parser = parse_duration)]
    pub exec_timeout: Option<Duration>,
    /// Python for a virtualenv environment: a version (3.11), a path or a command; implies
    /// --level virtualenv.
    #[arg(long, help_heading = "Virtualenv")]
    pub python: Option<String>,
    /// Requirement to install (PEP 508, or a path such as `.`), repeatable; implies --level
    /// virtualenv.
    #[arg(
        long = "package",
        short = 'p',
        value_name = "SPEC",
        help_heading = "Virtualenv"
    )]
    pub packages: Vec<String>,
    /// Requirements file to install, repeatable.
    #[arg(long, short = 'r', value_name = "FILE", help_heading = "Virtualenv")]
    pub requirements: Vec<PathBuf>,
    /// Constraints file, repeatable.
    #[arg(long, value_name = "FILE", help_heading = "Virtualenv")]
    pub constraints: Vec<PathBuf>,
    #[command(flatten)]
    pub index: IndexArgs,
    /// Image for a docker environment (must exist locally or be pullable; implies --level
    /// docker), or for a kubernetes one (the cluster's nodes must be able to pull it).
    #[arg(
        long,
        value_name = "IMAGE",
        help_heading = "Docker",
        conflicts_with = "build",
        value_parser = |s: &str| ptest_core::image_ref::check(s).map(str::to_owned)
    )]
    pub image: Option<String>,
    /// Build the docker environment's image from this directory's Dockerfile (tagged by
    /// content hash, reused while unchanged); implies --level docker.
    #[arg(long, value_name = "DIR", help_heading = "Docker")]
    pub build: Option<PathBuf>,
    /// Namespace of a kubernetes environment (default: the kubeconfig context's, else
    /// `default`); implies --level kubernetes.
    #[arg(long, value_name = "NS", help_heading = "Kubernetes", value_parser = parse_dns_label)]
    pub namespace: Option<String>,
    /// Kubeconfig context of a kubernetes environment (default: the current context; the
    /// kubeconfig is KUBECONFIG, else ~/.kube/config); implies --level kubernetes.
    #[arg(long, value_name = "CONTEXT", help_heading = "Kubernetes")]
    pub context: Option<String>,
    /// Print what a kubernetes environment would be made of (its pod and network policy) and
    /// make nothing: no cluster is asked, nothing is recorded.
    #[arg(long, help_heading = "Kubernetes")]
    pub dry_run: bool,
    /// With --dry-run: how to print the manifests (yaml, the only format).
    #[arg(
        long,
        short = 'o',
        value_name = "FORMAT",
        help_heading = "Kubernetes",
        requires = "dry_run",
        value_parser = ["yaml"]
    )]
    pub output: Option<String>,
    /// Print the environment as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Command {
    /// Whether the command only reads state and prints it. Such a command may simply end when
    /// its reader goes away (`ptest events | head`), as coreutils do; one that changes state
    /// keeps going, so that it finishes (and cleans up) whoever reads its output.
    pub fn only_prints(&self) -> bool {
        use net::NetCommand;
        use proc::ProcCommand;
        matches!(
            self,
            Command::Events(_)
                | Command::Ps(_)
                | Command::Doctor(_)
                | Command::Completions { .. }
                | Command::Config(Deferred(ConfigCommand::Show(_)))
                | Command::Env(Deferred(
                    EnvCommand::List(_)
                        | EnvCommand::Show(_)
                        | EnvCommand::Stats(_)
                        | EnvCommand::Validate(_)
                ))
                | Command::Pkg(Deferred(
                    PkgCommand::List(_)
                        | PkgCommand::Show { .. }
                        | PkgCommand::Freeze { .. }
                        | PkgCommand::Tree { .. }
                        | PkgCommand::Check(_)
                ))
                | Command::Port(Deferred(PortCommand::List { .. }))
                | Command::Proc(Deferred(ProcCommand::List(_) | ProcCommand::Logs(_)))
                | Command::Net(Deferred(NetCommand::List(_)))
        )
    }
}

/// `ptest pkg ...`: packages of a virtualenv environment.
#[derive(Debug, Subcommand)]
pub enum PkgCommand {
    /// Install packages (uv when on PATH, else pip; one shared cache).
    Install(PkgInstallArgs),
    /// Uninstall packages by name.
    Uninstall {
        /// Environment name or id.
        env: String,
        /// Package names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Print what changed as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List installed packages (read from *.dist-info, no subprocess).
    #[command(alias = "ls")]
    List(NameArgs),
    /// Show one installed package.
    Show {
        /// Environment name or id.
        env: String,
        /// Package name (any spelling).
        package: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print name==version lines.
    Freeze {
        /// Environment name or id.
        env: String,
    },
    /// Show the dependency tree (markers evaluated for the environment's Python).
    Tree {
        /// Environment name or id.
        env: String,
        /// Start from this package (`name` or `name[extra]`).
        package: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that every installed requirement is satisfied (as `pip check`); exit 1 if not.
    Check(NameArgs),
}

/// Arguments of `pkg install`.
#[derive(Debug, Args)]
pub struct PkgInstallArgs {
    /// Environment name or id.
    pub env: String,
    /// Requirements (PEP 508 or paths).
    #[arg(required_unless_present = "requirements")]
    pub specs: Vec<String>,
    /// Requirements file, repeatable.
    #[arg(long, short = 'r', value_name = "FILE")]
    pub requirements: Vec<PathBuf>,
    /// Constraints file, repeatable.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub constraints: Vec<PathBuf>,
    #[command(flatten)]
    pub index: IndexArgs,
    /// Do not install dependencies.
    #[arg(long)]
    pub no_deps: bool,
    /// Upgrade packages that are already installed.
    #[arg(long, short = 'U')]
    pub upgrade: bool,
    /// Print what changed as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ptest port ...`.
#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// Lease a free host port to an environment under a name; prints the port.
    Alloc {
        /// Environment name or id.
        env: String,
        /// Port name ([a-z][a-z0-9_-]{0,31}); commands see PTEST_PORT_<NAME>.
        name: PortName,
        /// Print the lease as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List port leases.
    #[command(alias = "ls")]
    List {
        /// Only this environment's.
        env: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a port back.
    Release {
        /// Environment name or id.
        env: String,
        /// Port name.
        name: PortName,
    },
}

/// Where packages come from.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Also look for packages here (a directory of wheels or a URL), repeatable.
    #[arg(long, value_name = "DIR|URL", help_heading = "Package index")]
    pub find_links: Vec<String>,
    /// Use no package index: only --find-links.
    #[arg(long, help_heading = "Package index")]
    pub no_index: bool,
    /// The package index to use instead of PyPI.
    #[arg(long, value_name = "URL", help_heading = "Package index")]
    pub index_url: Option<String>,
    /// A further package index, repeatable.
    #[arg(long, value_name = "URL", help_heading = "Package index")]
    pub extra_index_url: Vec<String>,
    /// Use nothing from the network (uv: its cache and --find-links; pip: --find-links only).
    #[arg(long, help_heading = "Package index")]
    pub offline: bool,
}

impl IndexArgs {
    /// Whether any option was given.
    pub fn given(&self) -> bool {
        self.no_index
            || self.offline
            || self.index_url.is_some()
            || !self.find_links.is_empty()
            || !self.extra_index_url.is_empty()
    }

    /// `--find-links` with local directories made absolute.
    pub fn find_links(&self) -> Vec<String> {
        self.find_links
            .iter()
            .map(|l| match std::path::absolute(l) {
                Ok(p) if !l.contains("://") => p.display().to_string(),
                _ => l.clone(),
            })
            .collect()
    }
}

/// Arguments of `env list`.
#[derive(Debug, Args)]
pub struct EnvListArgs {
    /// Only this level.
    #[arg(long)]
    pub level: Option<IsolationLevel>,
    /// Only this status.
    #[arg(long)]
    pub status: Option<EnvironmentStatus>,
    /// Only environments with this label, repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,
    /// Only the environment whose root is this directory.
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// An environment name or id, with `--json`.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// Environment name or id.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `env stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Environment name or id.
    pub name: String,
    /// Print JSON (one object per reading with --watch).
    #[arg(long)]
    pub json: bool,
    /// Keep reading every second until Ctrl-C.
    #[arg(long, short)]
    pub watch: bool,
}

/// Arguments of `env exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Environment name or id.
    pub name: String,
    /// Kill the command's whole tree after this long (e.g. 30s); exit code 124.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Extra variable KEY=VALUE, repeatable.
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub env: Vec<(String, String)>,
    /// Capture the output and print the result (exit code, stdout, stderr, times) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Working directory, relative to the workspace (or absolute inside the root); one that
    /// leads out of the root is refused (exit 2).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Arguments of `env rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Environment names or ids.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Remove every environment (except cleanup policy `never`, unless --force).
    #[arg(long)]
    pub all: bool,
    /// Kill running processes first; also remove under the `never` policy.
    #[arg(long, short)]
    pub force: bool,
    /// Print a JSON report.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events of this environment (name or id; works after it is removed).
    #[arg(long)]
    pub env: Option<String>,
    /// Keep printing new events as they happen (Ctrl-C to stop).
    #[arg(long, short)]
    pub follow: bool,
    /// Only the last N events.
    #[arg(long, short = 'n')]
    pub limit: Option<u32>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Also remove every `on_shutdown` environment (run this when the host shuts down).
    #[arg(long)]
    pub shutdown: bool,
    /// Keep running: collect what is due every --interval (a `scheduled` environment soon
    /// after its TTL) and watch the `[monitor]` thresholds, until SIGINT or SIGTERM. Prints
    /// each removal as it happens (one JSON object per line with --json).
    #[arg(long, conflicts_with = "shutdown")]
    pub watch: bool,
    /// How often --watch sweeps (e.g. 10s).
    #[arg(long, value_parser = parse_duration, default_value = "10s", requires = "watch")]
    pub interval: Duration,
    /// Print a JSON report.
    #[arg(long)]
    pub json: bool,
}

/// `ptest config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration and where each value came from.
    Show(JsonArg),
    /// Check config files: FILE, or every file that applies here.
    Validate {
        /// A config.toml or ptest.toml to check.
        file: Option<PathBuf>,
    },
}

fn parse_network(s: &str) -> Result<NetworkMode, String> {
    match s {
        "host" => Ok(NetworkMode::Host),
        "loopback" => Ok(NetworkMode::Loopback),
        "none" => Ok(NetworkMode::None),
        "bridge" => Ok(NetworkMode::Bridge),
        _ => Err(format!(
            "unknown network mode {s:?}; expected host, loopback, none or bridge"
        )),
    }
}

/// A Kubernetes namespace name (a DNS label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, 63 at most).
fn parse_dns_label(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid namespace {s:?}: lowercase letters, digits and '-', at most 63, starting \
             and ending with a letter or digit"
        ))
    }
}

pub(crate) fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    ptest_core::duration::parse(s)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
