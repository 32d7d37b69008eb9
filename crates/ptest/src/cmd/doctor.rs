//! `ptest doctor`.

use std::process::ExitCode;

use ptest_core::{Finding, IsolationLevel, Manager};
use serde::Serialize;

use crate::Failure;
use crate::cli::DoctorArgs;

#[derive(Serialize)]
struct LevelReport {
    level: IsolationLevel,
    available: bool,
    detail: String,
    checks: Vec<Finding>,
    features: Vec<Finding>,
}

/// Reports each isolation level: whether this build and host support it, and why not.
pub fn run(manager: &Manager, args: DoctorArgs) -> Result<ExitCode, Failure> {
    let reports: Vec<LevelReport> = IsolationLevel::ALL
        .iter()
        .map(|&level| match manager.engine_capabilities(level) {
            Some((checks, features)) => LevelReport {
                level,
                available: checks.iter().all(|c| c.ok),
                detail: String::new(),
                checks,
                features,
            },
            None => LevelReport {
                level,
                available: false,
                detail: "no engine for this level in this build of ptest".into(),
                checks: Vec::new(),
                features: Vec::new(),
            },
        })
        .collect();
    if args.json {
        crate::output::json(&serde_json::json!({
            "home": manager.home().path(),
            "schema_version": manager.store().schema_version()?,
            "levels": reports,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    // Check names padded to the longest, so no name runs into its detail.
    let width = reports
        .iter()
        .flat_map(|r| r.checks.iter().chain(&r.features))
        .map(|c| c.check.len() + 2)
        .max()
        .unwrap_or(0);
    println!("home      {}", manager.home().path().display());
    for r in &reports {
        let state = if r.available {
            "available"
        } else {
            "unavailable"
        };
        println!("{:<11}{state:<12} {}", r.level, r.detail);
        for c in &r.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            println!("  {mark} {:<width$}{}", c.check, c.detail);
        }
        for c in &r.features {
            let mark = if c.ok { "yes " } else { "no  " };
            println!("  {mark} {:<width$}{}", c.check, c.detail);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ptest doctor --repair`: before any manager opens the home (which a damaged store refuses).
pub fn repair(json: bool) -> Result<ExitCode, Failure> {
    let home = ptest_core::Home::from_env()?;
    let report = ptest_core::repair::repair(&home)?;
    if json {
        crate::output::json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    match (&report.kept_aside, &report.damage) {
        (Some(aside), Some(damage)) => {
            println!("state.db {damage}: kept aside as {}", aside.display());
            println!(
                "recorded {} environment(s) again from their roots:",
                report.recovered.len()
            );
            for r in &report.recovered {
                println!("  {} {}", r.name, r.root.display());
            }
            println!("remove them with `ptest env rm --all --force` (or one by one)");
        }
        _ => println!("state.db is intact: nothing to repair"),
    }
    Ok(ExitCode::SUCCESS)
}
