//! The `ptest` binary: parses the command line, calls the libraries, prints. Errors become
//! messages and exit codes in one place, [`exit_code`].

mod cli;
mod cmd;
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
    // A pod holder that re-executed this program ([`hold_pods_in_a_fresh_image`]) serves its
    // pod from here on.
    ptest_sandbox::serve_if_holder();
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

/// Has this process's pod holders execute `ptest-pod-holder` from ptest's own directory (as
/// trusted as ptest itself: whoever can replace one can replace the other), or else ptest
/// again: an idle environment's holder then costs a small process's memory, not a copy of
/// this one's, and the small program less than ptest (whose relocated data alone dirties
/// tens of KiB in each holder). Where neither can be opened, holders fork only.
fn hold_pods_in_a_fresh_image() {
    match holder_program().and_then(|program| ptest_sandbox::hold_pods_in_program(&program)) {
        Ok(()) => return,
        Err(e) => tracing::debug!("pod holders will not execute ptest-pod-holder: {e}"),
    }
    if let Err(e) = ptest_sandbox::hold_pods_in_this_program() {
        tracing::debug!("pod holders will not re-execute ptest: {e}");
    }
}

/// The ELF section in which both binaries carry [`holder_build::HOLDER_BUILD`].
const HOLDER_SECTION: &[u8] = b".ptest_holder_build";

/// `ptest-pod-holder` beside this executable, when its holder code is this build's. `cargo
/// run -p ptest` relinks `ptest` alone: a holder left from before a change to the pod's
/// protocol must not serve this build's pods.
fn holder_program() -> std::io::Result<std::path::PathBuf> {
    let program = std::env::current_exe()?.with_file_name("ptest-pod-holder");
    let theirs = holder_build_of(&program)?;
    if theirs != holder_build::HOLDER_BUILD {
        return Err(std::io::Error::other(format!(
            "{} is of another build of the holder ({} where this ptest has {})",
            program.display(),
            String::from_utf8_lossy(&theirs),
            String::from_utf8_lossy(&holder_build::HOLDER_BUILD),
        )));
    }
    Ok(program)
}

/// The holder build `program` carries, read from its section headers, their names and that
/// one section: four small reads, nothing run.
fn holder_build_of(program: &std::path::Path) -> std::io::Result<[u8; 16]> {
    use object::read::elf::{FileHeader, SectionHeader};
    let invalid = |e: object::Error| std::io::Error::other(format!("{}: {e}", program.display()));
    let file = object::ReadCache::new(std::fs::File::open(program)?);
    let header = object::elf::FileHeader64::<object::Endianness>::parse(&file).map_err(invalid)?;
    let endian = header.endian().map_err(invalid)?;
    let sections = header.sections(endian, &file).map_err(invalid)?;
    // The names in one read (looked up one by one, each would be a read of its own).
    let names = sections
        .section(object::SectionIndex(
            header.shstrndx(endian, &file).map_err(invalid)? as usize,
        ))
        .and_then(|names| names.data(endian, &file))
        .map_err(invalid)?;
    let named = |section: &&object::elf::SectionHeader64<object::Endianness>| {
        names
            .get(section.sh_name(endian) as usize..)
            .and_then(|rest| rest.strip_prefix(HOLDER_SECTION))
            .is_some_and(|rest| rest.first() == Some(&0))
    };
    let section = sections.iter().find(named).ok_or_else(|| {
        std::io::Error::other(format!("{} has no holder build", program.display()))
    })?;
    let data = section.data(endian, &file).map_err(invalid)?;
    data.try_into().map_err(|_| {
        std::io::Error::other(format!(
            "{}: a holder build of {} bytes",
            program.display(),
            data.len()
        ))
    })
}

/// Opens the manager on `$PTEST_HOME` with every engine this build has.
fn open_manager(config: ptest_core::Config) -> Result<Manager, Failure> {
    let home = Home::from_env()?;
    hold_pods_in_a_fresh_image();
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
