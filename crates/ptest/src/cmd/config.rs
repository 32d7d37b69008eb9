//! `ptest config show|validate`.

use std::process::ExitCode;

use ptest_core::EngineRegistry;
use ptest_core::config::{ConfigError, LoadedConfig, validate_file};

use ptest_runner::{PROJECT_FILE, Project, ProjectError, Run, Selection};

use crate::Failure;
use crate::cli::ConfigCommand;
use crate::output::{self, Table};

/// Checks a project the way `ptest run --list` does: its file (templates, suites, limits with
/// their ranges) and the plan of every suite (dependencies, cycles, services' ports).
fn validate_project(
    project: Result<Project, ProjectError>,
    engines: &EngineRegistry,
) -> Result<(), Failure> {
    let diagnostic = |e| Failure::Diagnostic(miette::Report::new(e));
    let project = project.map_err(diagnostic)?;
    project.check_engines(engines).map_err(diagnostic)?;
    Run::new(project, &Selection::default())
        .map_err(|e| Failure::Diagnostic(miette::Report::new(e)))?;
    Ok(())
}

/// Runs one `config` subcommand; `load` reads every layer that applies here.
pub fn run(
    cmd: &ConfigCommand,
    load: impl FnOnce() -> Result<LoadedConfig, ConfigError>,
    engines: impl FnOnce() -> Result<EngineRegistry, Failure>,
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
            if file.file_name() == Some(PROJECT_FILE.as_ref()) {
                validate_project(Project::load(file), &engines()?)?;
            }
            println!("{}: ok", file.display());
        }
        ConfigCommand::Validate { file: None } => {
            load()?;
            let cwd = std::env::current_dir().unwrap_or_default();
            match Project::discover(&cwd) {
                Err(ProjectError::NotFound { .. }) => {}
                found => validate_project(found, &engines()?)?,
            }
            println!("configuration ok");
        }
    }
    Ok(ExitCode::SUCCESS)
}
