//! `ptest init`: writes a commented starter ptest.toml in the current directory.

use std::process::ExitCode;

use ptest_runner::config::PROJECT_FILE;
use ptest_runner::init::{Detected, starter};

use crate::Failure;
use crate::cli::InitArgs;

/// Writes `./ptest.toml` (a virtualenv suite for a Python project); refuses to overwrite one
/// (exit 2) unless `--force`.
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
    let detected = Detected::in_dir(&dir);
    std::fs::write(&file, starter(&detected))
        .map_err(|e| ptest_core::Error::io("writing", &file, e))?;
    let kind = if detected.python() {
        "a Python project: a virtualenv template and a pytest suite"
    } else {
        "a shell suite to fill in"
    };
    eprintln!("wrote {} ({kind}); try `ptest run --list`", file.display());
    Ok(ExitCode::SUCCESS)
}
