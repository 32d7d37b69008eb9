//! The `ptest` binary: parses the command line, calls the libraries, prints. Errors become
//! messages and exit codes in one place, [`exit_code`].

mod cli;
mod cmd;
mod holder;
mod holder_build;
mod output;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ptest_core::config::{ConfigError, ConfigSources, LoadedConfig};
use ptest_core::{EngineRegistry, ErrorKind, Home, Manager};

use crate::cli::{Cli, Command, Deferred};

/// Why `ptest` itself failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Core(#[from] ptest_core::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A usage error with a source location to show (ptest.toml, suite selection).
    #[error("{0}")]
    Diagnostic(miette::Report),
}

/// ptest's own exit codes (README "Exit codes"): 2 usage or config, 3 state, 125 internal.
fn exit_code(failure: &Failure) -> u8 {
    match failure {
        Failure::Config(_) | Failure::Diagnostic(_) => 2,
        Failure::Core(e) => match e.kind() {
            ErrorKind::Usage => 2,
            ErrorKind::State => 3,
            ErrorKind::Internal => 125,
        },
    }
}

fn main() -> ExitCode {
    // A pod holder that re-executed this program ([`holder::hold_pods_in_a_fresh_image`])
    // serves its pod from here on.
    ptest_sandbox::serve_if_holder();
    // `ptest --version` alone, as clap would print it, before clap builds anything: the
    // question tools ask most often of an installed binary needs nothing else.
    let mut args = std::env::args_os().skip(1);
    if let (Some(flag), None) = (args.next(), args.next())
        && (flag == "--version" || flag == "-V")
    {
        println!("ptest {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse();
    if cli.command.only_prints() {
        // Rust ignores SIGPIPE, so a closed reader would make the next print panic: end
        // quietly instead, like `ls | head`.
        // SAFETY: signal(2) with SIG_DFL, before any other thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // A supervisor's stderr is its process's log: it logs nothing of its own there.
    if !matches!(cli.command, Command::Supervise { .. }) {
        init_logging(cli.verbose);
    }
    // Messages keep their lines whole, so they can be searched and copied.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(failure) => {
            let code = exit_code(&failure);
            match failure {
                // miette draws the file, line and column with a pointer at the mistake.
                Failure::Config(e) => eprintln!("{:?}", miette::Report::new(e)),
                Failure::Diagnostic(report) => eprintln!("{report:?}"),
                Failure::Core(e) => output::error(&e),
            }
            ExitCode::from(code)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // kube's client logs each failed connection as an error of its own; ptest's error says it.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PTEST_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default},kube_client::client::builder=off"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Loads the layered configuration with the command line's `--config` flags on top.
fn load_config(cli: &Cli) -> Result<LoadedConfig, ConfigError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut sources = ConfigSources::discover(&cwd);
    sources.flags = cli.config.clone();
    LoadedConfig::load(&sources)
}

/// Every engine this build has, for environments in `home`.
fn engines(home: &Home) -> EngineRegistry {
    let mut engines = EngineRegistry::new();
    engines.register(Arc::new(ptest_local::DirectoryEngine::new()));
    engines.register(Arc::new(ptest_local::VirtualenvEngine::new(home)));
    engines.register(Arc::new(ptest_docker::DockerEngine::new(home.path())));
    engines.register(Arc::new(ptest_kube::KubernetesEngine::new(home.path())));
    engines
}

/// Opens the manager on `$PTEST_HOME` with every engine this build has.
fn open_manager(config: ptest_core::Config) -> Result<Manager, Failure> {
    let home = Home::from_env()?;
    holder::hold_pods_in_a_fresh_image();
    let engines = engines(&home);
    Ok(Manager::open(home, config, engines)?)
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        cli::build_eagerly();
        clap_complete::generate(shell, &mut Cli::command(), "ptest", &mut std::io::stdout());
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Config(Deferred(cmd)) = &cli.command {
        return cmd::config::run(
            cmd,
            || load_config(&cli),
            || Ok(engines(&Home::from_env()?)),
        );
    }
    if let Command::Init(Deferred(args)) = &cli.command {
        return cmd::init::run(args);
    }
    // A proxy runs inside its environment's sandbox, where ptest's home is hidden.
    if let Command::Proxy { control } = &cli.command {
        return cmd::net::serve(control).await;
    }
    if let Command::Doctor(Deferred(args)) = &cli.command
        && args.repair
    {
        return cmd::doctor::repair(args.json);
    }
    let loaded = load_config(&cli)?;
    let manager = open_manager(loaded.config)?;
    match cli.command {
        Command::Run(Deferred(args)) => cmd::run::run(manager, args).await,
        Command::Env(Deferred(cmd)) => cmd::env::run(&manager, cmd).await,
        Command::Port(Deferred(cmd)) => cmd::port::run(&manager, cmd),
        Command::Proc(Deferred(cmd)) => cmd::proc::run(&manager, cmd).await,
        Command::Ps(Deferred(args)) => {
            cmd::proc::run(&manager, cli::proc::ProcCommand::List(args)).await
        }
        Command::Supervise { id } => cmd::proc::supervise(&manager, id).await,
        Command::Net(Deferred(cmd)) => cmd::net::run(&manager, cmd).await,
        Command::Pkg(Deferred(cmd)) => cmd::pkg::run(&manager, cmd).await,
        Command::Events(Deferred(args)) => cmd::events::run(&manager, args).await,
        Command::Gc(Deferred(args)) => cmd::gc::run(&manager, args).await,
        Command::Doctor(Deferred(args)) => cmd::doctor::run(&manager, args),
        Command::Status(Deferred(args)) => cmd::status::run(&manager, args),
        Command::Config(_)
        | Command::Completions { .. }
        | Command::Init(_)
        | Command::Proxy { .. } => {
            unreachable!("handled above")
        }
    }
}
