//! Resolving a pyenv shim to the binary it would run without running it.
//!
//! A shim is a bash script that starts `pyenv exec`, which costs about 50 ms of CPU a call.
//! pyenv picks the binary from the version names in `PYENV_VERSION`, else the nearest
//! `.python-version` file above `PYENV_DIR` (default: the working directory), else
//! `$PYENV_ROOT/version`, and takes the first `$PYENV_ROOT/versions/<name>/bin/<command>`
//! that is executable. That common case is followed here; anything that needs pyenv's own
//! logic (the `system` version, a version prefix to expand, a hook that may change the
//! answer) is left to the shim itself, so the answer is never different from pyenv's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::interpreter::is_executable;

/// Hook scripts known not to change which binary a Python command runs: pyenv's
/// `exec/pip-rehash.bash` acts on pip commands only and pyenv-virtualenv's `which` hooks only
/// when the version has no such command.
const HARMLESS_HOOKS: &[&str] = &[
    "exec/pip-rehash.bash",
    "which/conda.bash",
    "which/python-config.bash",
    "which/system-site-packages.bash",
];

/// The binary the pyenv shim at `path` would run in this process's environment and working
/// directory, or `None` when `path` is not a shim or only pyenv can tell.
pub fn resolve_shim(path: &Path) -> Option<PathBuf> {
    resolve_shim_in(path, &Lookup::from_process())
}

/// What pyenv reads from its environment to pick a version.
#[derive(Debug, Default)]
struct Lookup {
    /// `PYENV_VERSION` (empty: unset).
    version: String,
    /// `PYENV_DIR`.
    dir: Option<PathBuf>,
    /// The working directory as the shell spells it.
    cwd: Option<PathBuf>,
    /// `PYENV_HOOK_PATH`.
    hook_path: Option<OsString>,
}

impl Lookup {
    fn from_process() -> Lookup {
        Lookup {
            version: std::env::var("PYENV_VERSION").unwrap_or_default(),
            dir: std::env::var_os("PYENV_DIR").map(PathBuf::from),
            cwd: logical_cwd(),
            hook_path: std::env::var_os("PYENV_HOOK_PATH"),
        }
    }
}

fn resolve_shim_in(path: &Path, lookup: &Lookup) -> Option<PathBuf> {
    let shim = Shim::read(path)?;
    let names = version_names(&shim.root, lookup)?;
    if has_unknown_hooks(&shim, lookup) {
        return None;
    }
    for name in names {
        if name == "system" || name == ".." || name.contains('/') {
            return None;
        }
        let versions = shim.root.join("versions");
        let dir = [name.as_str(), name.strip_prefix("python-").unwrap_or(&name)]
            .into_iter()
            .map(|n| versions.join(n))
            .find(|d| d.is_dir())?;
        let binary = dir.join("bin").join(&shim.program);
        if is_executable(&binary) {
            tracing::debug!(shim = %path.display(), binary = %binary.display(), "resolved pyenv shim");
            return Some(binary);
        }
    }
    None
}

/// What a shim script says about its pyenv.
struct Shim {
    /// The command the shim stands for: its file name as invoked.
    program: String,
    /// `PYENV_ROOT` as the shim exports it.
    root: PathBuf,
    /// Where pyenv itself is installed (the shim runs `<prefix>/libexec/pyenv exec`).
    prefix: PathBuf,
}

impl Shim {
    fn read(path: &Path) -> Option<Shim> {
        // Shims are a few hundred bytes; a Python binary is never read whole.
        if std::fs::metadata(path).ok()?.len() > 4096 {
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        if !text.starts_with("#!") {
            return None;
        }
        let root = text.lines().find_map(|line| {
            let value = line.trim().strip_prefix("export PYENV_ROOT=")?;
            Some(value.trim_matches('"').trim_end_matches('/').to_owned())
        })?;
        let prefix = text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("exec \"")?;
            let (pyenv, args) = rest.split_once('"')?;
            args.trim_start()
                .starts_with("exec \"$program\"")
                .then_some(())?;
            Some(Path::new(pyenv.strip_suffix("/libexec/pyenv")?).to_owned())
        })?;
        Some(Shim {
            program: path.file_name()?.to_str()?.to_owned(),
            root: PathBuf::from(root),
            prefix,
        })
    }
}

/// The version names pyenv would use, in order; `None` when a version file holds a name
/// pyenv would check or reject (one with `/` or `..`).
fn version_names(root: &Path, lookup: &Lookup) -> Option<Vec<String>> {
    let names = if lookup.version.is_empty() {
        read_version_file(&version_file(root, lookup))?
    } else {
        vec![lookup.version.clone()]
    };
    let names: Vec<String> = names
        .iter()
        .flat_map(|n| n.split(':'))
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    (!names.is_empty()).then_some(names)
}

/// `.python-version` in `PYENV_DIR` or the working directory or above, else
/// `$PYENV_ROOT/version`.
fn version_file(root: &Path, lookup: &Lookup) -> PathBuf {
    let cwd = lookup.cwd.as_deref();
    let dir = match (&lookup.dir, cwd) {
        (Some(d), Some(c)) => Some(c.join(d)),
        (Some(d), None) => Some(d.clone()),
        (None, c) => c.map(Path::to_owned),
    };
    let nearest = |start: &Path| {
        start
            .ancestors()
            .map(|d| d.join(".python-version"))
            .find(|f| f.is_file())
    };
    dir.as_deref()
        .and_then(nearest)
        .or_else(|| cwd.and_then(nearest))
        .unwrap_or_else(|| root.join("version"))
}

/// The working directory as the shell spells it (`$PWD`, which may go through symbolic
/// links, as pyenv walks it) when that names the real working directory.
fn logical_cwd() -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let real = std::env::current_dir().ok()?;
    let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    match std::env::var_os("PWD").map(PathBuf::from) {
        Some(pwd) if pwd.is_absolute() && same(&pwd, &real) => Some(pwd),
        _ => Some(real),
    }
}

/// The first word of each line that is not empty or a comment, as `pyenv version-file-read`
/// reads it; an empty list when the file is missing or empty.
fn read_version_file(file: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut names = Vec::new();
    for word in text.lines().filter_map(|l| l.split_whitespace().next()) {
        if word.starts_with('#') {
            continue;
        }
        if word == ".." || word.contains('/') {
            return None;
        }
        names.push(word.to_owned());
    }
    Some(names)
}

/// Whether a hook that could change the answer is installed: any `version-name` hook, or a
/// `which` or `exec` hook not known to be harmless. The directories are pyenv's
/// `PYENV_HOOK_PATH`, built as `libexec/pyenv` builds it.
fn has_unknown_hooks(shim: &Shim, lookup: &Lookup) -> bool {
    let mut dirs: Vec<PathBuf> = lookup
        .hook_path
        .as_ref()
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    dirs.push(shim.root.join("pyenv.d"));
    if shim.prefix != shim.root {
        dirs.push(shim.prefix.join("pyenv.d"));
    }
    for dir in [
        "/usr/etc/pyenv.d",
        "/usr/local/etc/pyenv.d",
        "/etc/pyenv.d",
        "/usr/lib/pyenv/hooks",
    ] {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(plugins) = std::fs::read_dir(shim.root.join("plugins")) {
        dirs.extend(plugins.flatten().map(|p| p.path().join("etc/pyenv.d")));
    }
    dirs.iter().any(|dir| {
        ["version-name", "which", "exec"]
            .into_iter()
            .any(|command| {
                let Ok(scripts) = std::fs::read_dir(dir.join(command)) else {
                    return false;
                };
                scripts.flatten().any(|script| {
                    let name = script.file_name().to_string_lossy().into_owned();
                    name.ends_with(".bash")
                        && !HARMLESS_HOOKS.contains(&&*format!("{command}/{name}"))
                })
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A pyenv root with these versions, each holding the given commands, and a shim for
    /// `python3.11` written as `pyenv rehash` writes it; returns (root, shim).
    fn fake_pyenv(dir: &Path, versions: &[(&str, &[&str])]) -> (PathBuf, PathBuf) {
        let root = dir.join("pyenv");
        for (version, commands) in versions {
            let bin = root.join("versions").join(version).join("bin");
            std::fs::create_dir_all(&bin).expect("mkdir");
            for command in *commands {
                write_executable(&bin.join(command), "#!/bin/sh\n");
            }
        }
        let shims = root.join("shims");
        std::fs::create_dir_all(&shims).expect("mkdir");
        let shim = shims.join("python3.11");
        let root_text = root.display();
        write_executable(
            &shim,
            &format!(
                "#!/usr/bin/env bash\nset -e\n[ -n \"$PYENV_DEBUG\" ] && set -x\n\n\
                 program=\"${{0##*/}}\"\n\nexport PYENV_ROOT=\"{root_text}\"\n\
                 SHIM_PATH=${{0%/*}}\nif [[ $SHIM_PATH != \"{root_text}/shims\" ]]; then\n  \
                 export _PYENV_SHIM_PATH=\"$SHIM_PATH\"\nfi\n\
                 exec \"{root_text}/libexec/pyenv\" exec \"$program\" \"$@\"\n"
            ),
        );
        (root, shim)
    }

    fn write_executable(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn lookup(cwd: &Path, version: &str) -> Lookup {
        Lookup {
            version: version.to_owned(),
            cwd: Some(cwd.to_owned()),
            ..Lookup::default()
        }
    }

    #[test]
    fn a_shim_resolves_as_pyenv_picks_the_version() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (root, shim) = fake_pyenv(
            dir.path(),
            &[
                ("3.10.13", &["python3.10"]),
                ("3.11.7", &["python3.11"]),
                ("3.11.9", &["python3.11"]),
            ],
        );
        let bin = |v: &str| root.join("versions").join(v).join("bin/python3.11");
        let project = dir.path().join("project/sub");
        std::fs::create_dir_all(&project).expect("mkdir");

        // The global version file, then a local one above the working directory, then
        // PYENV_VERSION: each overrides the one before, as in pyenv.
        std::fs::write(root.join("version"), "3.11.9\n").expect("write");
        assert_eq!(
            resolve_shim_in(&shim, &lookup(&project, "")),
            Some(bin("3.11.9"))
        );
        std::fs::write(dir.path().join("project/.python-version"), "3.11.7\n").expect("write");
        assert_eq!(
            resolve_shim_in(&shim, &lookup(&project, "")),
            Some(bin("3.11.7"))
        );
        assert_eq!(
            resolve_shim_in(&shim, &lookup(&project, "3.11.9")),
            Some(bin("3.11.9"))
        );
        // The first version that has the command wins; `python-` prefixes are dropped.
        assert_eq!(
            resolve_shim_in(&shim, &lookup(&project, "3.10.13:python-3.11.9")),
            Some(bin("3.11.9"))
        );

        // What only pyenv can answer is left to the shim.
        for version in ["system", "3.11", "3.12.0", "3.10.13", "../../x"] {
            assert_eq!(
                resolve_shim_in(&shim, &lookup(&project, version)),
                None,
                "{version}"
            );
        }
        let hooks = root.join("pyenv.d/exec");
        std::fs::create_dir_all(&hooks).expect("mkdir");
        write_executable(&hooks.join("pip-rehash.bash"), "");
        assert_eq!(
            resolve_shim_in(&shim, &lookup(&project, "")),
            Some(bin("3.11.7"))
        );
        write_executable(&hooks.join("custom.bash"), "");
        assert_eq!(resolve_shim_in(&shim, &lookup(&project, "")), None);

        // A binary or another script is not a shim.
        assert_eq!(resolve_shim_in(&bin("3.11.7"), &lookup(&project, "")), None);
    }

    #[test]
    fn reads_version_files_as_pyenv_does() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join(".python-version");
        std::fs::write(&file, "# pinned\n3.11.7 trailing words\n\n  3.10.13\r\n").expect("write");
        assert_eq!(
            read_version_file(&file),
            Some(vec!["3.11.7".to_owned(), "3.10.13".to_owned()])
        );
        std::fs::write(&file, "../../etc\n").expect("write");
        assert_eq!(read_version_file(&file), None);
        assert_eq!(read_version_file(&dir.path().join("missing")), Some(vec![]));
    }
}
