//! `ptest gc`.

use std::process::ExitCode;

use ptest_core::{GcOptions, Manager};

use crate::Failure;
use crate::cli::GcArgs;
use crate::output;

/// Removes what is due and reports each removal.
pub async fn run(manager: &Manager, args: GcArgs) -> Result<ExitCode, Failure> {
    let removals = manager
        .gc(GcOptions {
            shutdown: args.shutdown,
        })
        .await?;
    if args.json {
        output::json(&removals);
    } else if removals.is_empty() {
        println!("nothing to collect");
    } else {
        for r in &removals {
            match &r.error {
                None => println!("{} {} ({})", r.action, r.name, r.reason),
                Some(e) => eprintln!("not {} {} ({}): {e}", r.action, r.name, r.reason),
            }
        }
    }
    Ok(if removals.iter().all(|r| r.error.is_none()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(125)
    })
}
