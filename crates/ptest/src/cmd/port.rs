//! `ptest port ...`.

use std::process::ExitCode;

use ptest_core::Manager;

use crate::Failure;
use crate::cli::PortCommand;
use crate::output::{self, Table};

/// Runs one `port` subcommand.
pub fn run(manager: &Manager, cmd: PortCommand) -> Result<ExitCode, Failure> {
    match cmd {
        PortCommand::Alloc { env, name, json } => {
            let env = manager.get_environment(&env)?;
            let port = manager.allocate_port(&env, &name)?;
            if json {
                output::json(&serde_json::json!({
                    "env": env.name, "env_id": env.id, "name": name, "port": port,
                }));
            } else {
                println!("{port}");
            }
        }
        PortCommand::List { env, json } => {
            let env = env.map(|e| manager.get_environment(&e)).transpose()?;
            let leases = manager.port_leases(env.as_ref())?;
            if json {
                output::json(&leases);
            } else {
                let mut table = Table::new(vec!["ENV", "NAME", "PORT", "VARIABLE"]);
                for l in &leases {
                    table.row(vec![
                        l.env.clone(),
                        l.name.to_string(),
                        l.port.to_string(),
                        l.name.env_var(),
                    ]);
                }
                table.print();
            }
        }
        PortCommand::Release { env, name } => {
            let env = manager.get_environment(&env)?;
            let port = manager.release_port(&env, &name)?;
            println!("released {name} ({port})");
        }
    }
    Ok(ExitCode::SUCCESS)
}
