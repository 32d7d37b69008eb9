//! `ptest gc`.

use std::process::ExitCode;

use ptest_core::{GcOptions, Manager};

use crate::Failure;
use crate::cli::GcArgs;
use crate::output;

/// Removes what is due and reports each removal; with `--watch`, again every interval (and
/// watches the thresholds) until told to stop.
pub async fn run(manager: &Manager, args: GcArgs) -> Result<ExitCode, Failure> {
    if args.watch {
        return watch(manager, &args).await;
    }
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

/// `gc --watch`: a sweep every interval; a failed sweep is reported and the next one tried.
async fn watch(manager: &Manager, args: &GcArgs) -> Result<ExitCode, Failure> {
    let mut monitor = ptest_core::monitor::Monitor::default();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| ptest_core::Error::io("watching", "SIGTERM", e))?;
    loop {
        match manager.gc(GcOptions { shutdown: false }).await {
            Ok(removals) => {
                for r in &removals {
                    if args.json {
                        println!("{}", serde_json::to_string(r).expect("removals serialize"));
                    } else {
                        match &r.error {
                            None => println!("{} {} ({})", r.action, r.name, r.reason),
                            Some(e) => eprintln!("not {} {} ({}): {e}", r.action, r.name, r.reason),
                        }
                    }
                }
            }
            Err(e) => output::error(&e),
        }
        if let Err(e) = monitor.sweep(manager).await {
            output::error(&e);
        }
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = term.recv() => return Ok(ExitCode::SUCCESS),
        }
    }
}
