//! `ptest doctor`.

use std::process::ExitCode;

use ptest_core::{Finding, IsolationLevel, Manager};
use serde::Serialize;

use crate::Failure;
use crate::cli::JsonArg;

#[derive(Serialize)]
struct LevelReport {
    level: IsolationLevel,
    available: bool,
    detail: String,
    checks: Vec<Finding>,
}

/// Reports each isolation level: whether this build and host support it, and why not.
pub fn run(manager: &Manager, args: JsonArg) -> Result<ExitCode, Failure> {
    let reports: Vec<LevelReport> = IsolationLevel::ALL
        .iter()
        .map(|&level| match manager.engine_capabilities(level) {
            Some(checks) => LevelReport {
                level,
                available: checks.iter().all(|c| c.ok),
                detail: match level {
                    IsolationLevel::Basic => {
                        "directory environments (no namespaces or cgroups in this build)".into()
                    }
                    _ => String::new(),
                },
                checks,
            },
            None => LevelReport {
                level,
                available: false,
                detail: "no engine for this level in this build of ptest".into(),
                checks: Vec::new(),
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
    println!("home      {}", manager.home().path().display());
    for r in &reports {
        println!(
            "{:<11}{}  {}",
            r.level,
            if r.available {
                "available  "
            } else {
                "unavailable"
            },
            r.detail
        );
        for c in &r.checks {
            println!(
                "  {} {:<8}{}",
                if c.ok { "ok  " } else { "FAIL" },
                c.check,
                c.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
