//! Bytecode for templates: the modules a venv's commands imported, compiled in the template
//! it was cloned from, so that the next clone starts with them compiled.
//!
//! uv installs without compiling (pip compiles everything at install), and a clone of a
//! template is thrown away with whatever `__pycache__` its run wrote: without this every run
//! compiled pytest and its plugins again, about 0.2 s of CPU per suite on this machine,
//! which a long-lived venv (tox's) pays once. Compiling all of a template at install costs
//! four times that for the modules no test imports. So the template learns from its
//! clones: when a clone is removed, the modules it had compiled are compiled in the template.
//!
//! What a clone's command wrote is never copied: its bytecode could say anything. Only the
//! names of its `.pyc` files are read, to choose which of the template's own sources ptest
//! compiles, with the base interpreter ptest recorded. The files are written with checked
//! hashes (PEP 552), valid wherever the source's bytes are the same: a clone's copies have
//! new modification times, and a source a command edits in its clone is compiled again.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::installer::run_tool;
use crate::venv::Venv;

/// Directories and `.pyc` names read from a clone before giving up on the rest: a command
/// can make its tree as large as it likes, and this is an optimisation.
const MOST_ENTRIES: usize = 100_000;

/// Compiles in `template` each of its modules that the venv at `used` (a clone of it, whose
/// commands have run) has a `.pyc` for and the template has none, with the interpreter
/// `python` (the template's base, as recorded when it was made, never a venv's own).
/// Returns how many sources were compiled.
pub fn compile_imported(template: &Venv, used: &Path, python: &Path) -> Result<usize> {
    let site = template.site_packages();
    let relative = site
        .strip_prefix(template.root())
        .map_err(|_| Error::NotAVenv {
            path: template.root().to_owned(),
            reason: "its site-packages is outside it".to_owned(),
        })?;
    let mut wanted = Vec::new();
    let mut budget = MOST_ENTRIES;
    collect(site, &used.join(relative), &mut wanted, &mut budget)?;
    if wanted.is_empty() {
        return Ok(0);
    }
    // A run's last removal compiles while nothing else runs: with one compiler per core
    // its wait is shorter (0.30 → 0.2 s for pytest's 101 modules on 2 cores here).
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(wanted.len().div_ceil(FEWEST_PER_COMPILER));
    std::thread::scope(|scope| {
        let compilers: Vec<_> = deal(&wanted, workers)
            .into_iter()
            .map(|share| scope.spawn(move || compile(python, &share)))
            .collect();
        compilers
            .into_iter()
            .try_for_each(|c| c.join().expect("a compiler's thread does not panic"))
    })?;
    tracing::debug!(
        template = %template.root().display(),
        compiled = wanted.len(),
        "compiled what a clone imported"
    );
    Ok(wanted.len())
}

/// Modules below which a second compiler is not worth its interpreter's start (~15 ms).
const FEWEST_PER_COMPILER: usize = 16;

/// `paths` dealt into `hands` shares of about equal bytes: largest first, each to the
/// share with the fewest bytes so far.
fn deal(paths: &[PathBuf], hands: usize) -> Vec<Vec<PathBuf>> {
    let mut sized: Vec<(u64, &PathBuf)> = paths
        .iter()
        .map(|p| (fs::metadata(p).map_or(0, |m| m.len()), p))
        .collect();
    sized.sort_by_key(|(size, _)| std::cmp::Reverse(*size));
    let mut shares = vec![(0u64, Vec::new()); hands.max(1)];
    for (size, path) in sized {
        let lightest = shares
            .iter_mut()
            .min_by_key(|(bytes, _)| *bytes)
            .expect("at least one share");
        lightest.0 += size;
        lightest.1.push(path.clone());
    }
    shares.into_iter().map(|(_, share)| share).collect()
}

/// Compiles `paths` with `python`, a few thousand at a time: argument lists are bounded by
/// the kernel (a quarter of the stack limit).
fn compile(python: &Path, paths: &[PathBuf]) -> Result<()> {
    for chunk in paths.chunks(2000) {
        let mut command = Command::new(python);
        command.args(["-I", "-c", COMPILE_SCRIPT]).args(chunk);
        run_tool(&mut command, "compiling a template's modules")?;
    }
    Ok(())
}

/// Compiles each path given, with checked hashes; a source that does not compile is left for
/// the import that needs it to report.
const COMPILE_SCRIPT: &str = r#"
import py_compile, sys
mode = py_compile.PycInvalidationMode.CHECKED_HASH
for path in sys.argv[1:]:
    try:
        py_compile.compile(path, doraise=True, invalidation_mode=mode)
    except Exception:
        pass
"#;

/// Walks the template's directory `ours` beside the clone's `theirs`, adding to `wanted`
/// the template's sources the clone compiled and the template did not. Only the template is
/// walked; of the clone, only `__pycache__` directories are listed (never followed through
/// a link).
fn collect(
    ours: &Path,
    theirs: &Path,
    wanted: &mut Vec<PathBuf>,
    budget: &mut usize,
) -> Result<()> {
    let compiled_there = pyc_stems(&theirs.join("__pycache__"), budget);
    let compiled_here = if compiled_there.is_empty() {
        BTreeSet::new()
    } else {
        // The template's own directory is ours: no budget.
        let mut unbounded = usize::MAX;
        pyc_stems(&ours.join("__pycache__"), &mut unbounded)
    };
    for stem in compiled_there.difference(&compiled_here) {
        let mut name = stem.clone();
        name.push(".py");
        let source = ours.join(name);
        if fs::symlink_metadata(&source).is_ok_and(|m| m.is_file()) {
            wanted.push(source);
        }
    }
    let entries = fs::read_dir(ours).map_err(Error::io("reading", ours))?;
    for entry in entries {
        let entry = entry.map_err(Error::io("reading", ours))?;
        let name = entry.file_name();
        if name == "__pycache__" || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if *budget == 0 {
            return Ok(());
        }
        *budget -= 1;
        let there = theirs.join(&name);
        // A directory the clone does not have (or replaced by a link or a file) holds
        // nothing it compiled.
        if fs::symlink_metadata(&there).is_ok_and(|m| m.is_dir()) {
            collect(&entry.path(), &there, wanted, budget)?;
        }
    }
    Ok(())
}

/// The module names `X` of the `X.<tag>.pyc` files in `dir`, if it is a real directory.
fn pyc_stems(dir: &Path, budget: &mut usize) -> BTreeSet<OsString> {
    let mut stems = BTreeSet::new();
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return stems;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return stems;
    };
    for entry in entries.flatten() {
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        let name = entry.file_name();
        let bytes = name.as_bytes();
        if let Some(stem) = bytes
            .strip_suffix(b".pyc")
            .and_then(|rest| rest.split(|&b| b == b'.').next())
            .filter(|stem| !stem.is_empty())
        {
            stems.insert(OsString::from_vec(stem.to_vec()));
        }
    }
    stems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_module_names_from_pyc_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("__pycache__");
        fs::create_dir(&cache).unwrap();
        for name in [
            "a.cpython-311.pyc",
            "b.cpython-311.opt-1.pyc",
            "c.txt",
            ".pyc",
            "d.pyc",
        ] {
            fs::write(cache.join(name), "").unwrap();
        }
        let stems = pyc_stems(&cache, &mut 100);
        let names: Vec<_> = stems.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", "d"]);
    }

    #[test]
    fn deals_every_path_once_into_shares_of_about_equal_size() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = [900, 500, 400, 300, 100, 100]
            .iter()
            .enumerate()
            .map(|(i, size)| {
                let path = dir.path().join(format!("m{i}.py"));
                fs::write(&path, vec![b'#'; *size]).unwrap();
                path
            })
            .collect();
        let shares = deal(&paths, 2);
        let bytes = |share: &Vec<PathBuf>| -> u64 {
            share.iter().map(|p| fs::metadata(p).unwrap().len()).sum()
        };
        assert_eq!(shares.iter().map(bytes).collect::<Vec<_>>(), [1200, 1100]);
        let mut all: Vec<_> = shares.concat();
        all.sort();
        assert_eq!(all, paths);
        assert_eq!(deal(&paths, 0).concat().len(), paths.len());
    }
}
