//! `ptest config show|validate`.

use std::process::ExitCode;

use ptest_core::config::{ConfigError, LoadedConfig, validate_file};

use crate::Failure;
use crate::cli::ConfigCommand;
use crate::output::{self, Table};

/// Runs one `config` subcommand; `load` reads every layer that applies here.
pub fn run(
    cmd: &ConfigCommand,
    load: impl FnOnce() -> Result<LoadedConfig, ConfigError>,
) -> Result<ExitCode, Failure> {
    match cmd {
        ConfigCommand::Show(args) => {
            let loaded = load()?;
            if args.json {
                output::json(&loaded.entries);
            } else {
                let mut table = Table::new(vec!["KEY", "VALUE", "FROM"]);
                for e in &loaded.entries {
                    table.row(vec![
                        e.key.clone(),
                        e.value.to_string(),
                        e.origin.to_string(),
                    ]);
                }
                table.print();
            }
        }
        ConfigCommand::Validate { file: Some(file) } => {
            validate_file(file)?;
            println!("{}: ok", file.display());
        }
        ConfigCommand::Validate { file: None } => {
            load()?;
            println!("configuration ok");
        }
    }
    Ok(ExitCode::SUCCESS)
}
