//! `ptest pkg ...`.

use std::process::ExitCode;

use ptest_core::Manager;
use ptest_python::{InstallOutcome, InstallRequest, TreeDisplay};

use crate::Failure;
use crate::cli::PkgCommand;
use crate::output::{self, Table};

/// Runs one `pkg` subcommand.
pub async fn run(manager: &Manager, cmd: PkgCommand) -> Result<ExitCode, Failure> {
    let env_name = match &cmd {
        PkgCommand::Install(a) => &a.env,
        PkgCommand::Uninstall { env, .. }
        | PkgCommand::Show { env, .. }
        | PkgCommand::Freeze { env }
        | PkgCommand::Tree { env, .. } => env,
        PkgCommand::List(a) | PkgCommand::Check(a) => &a.name,
    };
    let packages = manager.packages(manager.get_environment(env_name)?)?;
    match cmd {
        PkgCommand::Install(args) => {
            let absolute = |paths: Vec<std::path::PathBuf>| {
                paths
                    .into_iter()
                    .map(|p| std::path::absolute(&p).unwrap_or(p))
                    .collect()
            };
            let outcome = packages
                .install(InstallRequest {
                    requirements: args.specs,
                    requirement_files: absolute(args.requirements),
                    constraint_files: absolute(args.constraints),
                    find_links: args.index.find_links(),
                    no_index: args.index.no_index,
                    index_url: args.index.index_url.clone(),
                    extra_index_urls: args.index.extra_index_url.clone(),
                    offline: args.index.offline,
                    no_deps: args.no_deps,
                    upgrade: args.upgrade,
                    ..InstallRequest::default()
                })
                .await?;
            report(&outcome, args.json);
        }
        PkgCommand::Uninstall { names, json, .. } => {
            let outcome = packages.uninstall(&names).await?;
            report(&outcome, json);
        }
        PkgCommand::List(args) => {
            let dists = packages.list()?;
            if args.json {
                output::json(&dists);
            } else {
                let mut table = Table::new(vec!["NAME", "VERSION", "SUMMARY"]);
                for d in &dists {
                    table.row(vec![
                        d.display_name.clone(),
                        d.version.clone(),
                        d.summary.clone().unwrap_or_default(),
                    ]);
                }
                table.print();
            }
        }
        PkgCommand::Show { package, json, .. } => {
            let d = packages.show(&package)?;
            if json {
                output::json(&d);
            } else {
                println!("name        {}", d.display_name);
                println!("version     {}", d.version);
                if let Some(s) = &d.summary {
                    println!("summary     {s}");
                }
                println!("location    {}", d.location.display());
                for r in &d.requires_dist {
                    println!("requires    {r}");
                }
            }
        }
        PkgCommand::Freeze { .. } => {
            for line in packages.freeze()? {
                println!("{line}");
            }
        }
        PkgCommand::Tree { package, json, .. } => {
            let tree = packages.tree(package.as_deref())?;
            if json {
                output::json(&tree);
            } else {
                print!("{}", TreeDisplay(&tree));
            }
        }
        PkgCommand::Check(args) => {
            let conflicts = packages.check()?;
            if args.json {
                output::json(&conflicts);
            } else if conflicts.is_empty() {
                println!("No broken requirements found.");
            } else {
                for c in &conflicts {
                    println!("{c}");
                }
            }
            if !conflicts.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(outcome: &InstallOutcome, json: bool) {
    if json {
        output::json(outcome);
        return;
    }
    for change in &outcome.changes {
        match (&change.before, &change.after) {
            (None, Some(v)) => println!("+ {}=={v}", change.name),
            (Some(v), None) => println!("- {}=={v}", change.name),
            (Some(a), Some(b)) => println!("~ {} {a} -> {b}", change.name),
            (None, None) => {}
        }
    }
    eprintln!(
        "{} in {:.2}s ({} change(s))",
        outcome.tool,
        outcome.duration.as_secs_f64(),
        outcome.changes.len()
    );
}
