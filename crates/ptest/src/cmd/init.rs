//! `ptest init`: writes a commented starter ptest.toml in the current directory.

use std::process::ExitCode;

use ptest_runner::config::PROJECT_FILE;
use ptest_runner::init::{Inferred, starter};

use crate::Failure;
use crate::cli::InitArgs;

/// Writes `./ptest.toml` from what the project says about its tests, and prints what it
/// inferred and what it could not translate; refuses to overwrite one (exit 2) unless
/// `--force`.
pub fn run(args: &InitArgs) -> Result<ExitCode, Failure> {
    let dir = std::env::current_dir().map_err(|e| ptest_core::Error::io("reading", ".", e))?;
    let file = dir.join(PROJECT_FILE);
    if file.exists() && !args.force {
        return Err(ptest_core::Error::Usage(format!(
            "{} already exists; use --force to overwrite it",
            file.display()
        ))
        .into());
    }
    let inferred = Inferred::in_dir(&dir);
    std::fs::write(&file, starter(&inferred))
        .map_err(|e| ptest_core::Error::io("writing", &file, e))?;
    for found in &inferred.found {
        eprintln!("inferred: {found}");
    }
    for left in &inferred.untranslated {
        eprintln!("not translated: {left}");
    }
    let kind = if inferred.python() {
        "a Python project: virtualenv templates and their suites"
    } else {
        "nothing Python found: a shell suite to fill in"
    };
    eprintln!("wrote {} ({kind}); try `ptest run --list`", file.display());
    Ok(ExitCode::SUCCESS)
}
