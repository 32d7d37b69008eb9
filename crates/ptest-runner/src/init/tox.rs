//! `tox.ini` and `tox.toml` translated for `ptest init`: each environment of the env list (or
//! each `[testenv:NAME]` / `[env.NAME]`) becomes a template and a suite that runs the same
//! commands with the same dependencies and variables. tox's `{posargs}` means the same in
//! ptest; what has no counterpart (other substitutions, negated factors) is left out and
//! said so.

use std::collections::BTreeMap;

use toml::Value;

/// One tox environment, as ptest will run it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ToxEnv {
    /// The tox name (`py311`, `lint`).
    pub name: String,
    /// From a `pyXY` factor or `basepython`.
    pub python: Option<String>,
    /// `deps` (other than `-r`/`-c` lines).
    pub deps: Vec<String>,
    /// `-r FILE` lines of `deps`.
    pub requirements: Vec<String>,
    /// `-c FILE` lines of `deps`.
    pub constraints: Vec<String>,
    /// `extras`.
    pub extras: Vec<String>,
    /// How the project is installed: `None` (skip_install), `Some(false)` (`.`), `Some(true)`
    /// (`-e .`, usedevelop).
    pub install: Option<bool>,
    /// `commands`, each a shell line.
    pub commands: Vec<String>,
    /// `setenv` / `set_env`.
    pub env_vars: BTreeMap<String, String>,
}

/// The environments of a tox configuration and what could not be translated.
#[derive(Debug, Default)]
pub(crate) struct Tox {
    pub envs: Vec<ToxEnv>,
    pub untranslated: Vec<String>,
}

/// Where `{envtmpdir}` goes: a directory of its own under the environment's `TMPDIR` (tox
/// empties it, and so may the command, as pytest's `--basetemp` does), made before the
/// commands run.
pub(crate) const ENVTMPDIR: &str = "$TMPDIR/envtmpdir";

/// tox's substitutions that have a ptest counterpart; any other `{...}` is left out.
fn substitute(text: &str, env: &str, untranslated: &mut Vec<String>) -> Option<String> {
    let out = text
        .replace("{toxinidir}/", "")
        .replace("{toxinidir}", "$PTEST_PROJECT_DIR")
        .replace("{envpython}", "python")
        .replace("{envbindir}/", "")
        .replace("{envtmpdir}", ENVTMPDIR)
        .replace("{/}", "/");
    // `{posargs}` and `{posargs:DEFAULT}` mean the same in ptest; anything else does not.
    let mut rest = out.as_str();
    while let Some(at) = rest.find('{') {
        let after = &rest[at..];
        if !after.starts_with("{posargs") {
            let end = after.find('}').map_or(after.len(), |e| e + 1);
            untranslated.push(format!("{env}: {} in {text:?}", &after[..end]));
            return None;
        }
        rest = &after[1..];
    }
    Some(out)
}

/// A tox command as a shell line: one starting with `-` has its exit code ignored, as tox
/// does.
fn command(line: String) -> String {
    match line.strip_prefix('-') {
        Some(rest) if !rest.starts_with('-') => format!("{} || true", rest.trim_start()),
        _ => line,
    }
}

/// `py311` → `3.11`, `py3` → `3`, `py39` → `3.9`, `pypy310` → `pypy3.10`; tox 4's `3.12` as
/// it is.
fn python_of(factor: &str) -> Option<String> {
    if let Some(pypy) = factor.strip_prefix("pypy") {
        return Some(match python_of(&format!("py{pypy}")) {
            Some(version) => format!("pypy{version}"),
            None => "pypy3".to_owned(),
        });
    }
    let version = factor.split('.').count() == 2
        && factor
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if version {
        return Some(factor.to_owned());
    }
    let digits = factor.strip_prefix("py")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match digits.split_at(1) {
        (major, "") => major.to_owned(),
        (major, minor) => format!("{major}.{minor}"),
    })
}

/// `py{39,310}-lint` → `py39-lint`, `py310-lint`.
fn expand(pattern: &str) -> Vec<String> {
    let Some(open) = pattern.find('{') else {
        return vec![pattern.to_owned()];
    };
    let Some(close) = pattern[open..].find('}').map(|c| c + open) else {
        return vec![pattern.to_owned()];
    };
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    pattern[open + 1..close]
        .split(',')
        .flat_map(|alt| expand(&format!("{head}{}{tail}", alt.trim())))
        .collect()
}

/// The env list: comma- or line-separated, braces expanded.
fn env_list(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut item = String::new();
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && (c == ',' || c == '\n') {
            out.extend(expand(item.trim()).into_iter().filter(|s| !s.is_empty()));
            item.clear();
        } else {
            item.push(c);
        }
    }
    out.extend(expand(item.trim()).into_iter().filter(|s| !s.is_empty()));
    out
}

/// An INI file as tox reads it: sections of keys, continuation lines joined with newlines.
fn ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    let mut key: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
            key = None;
            continue;
        }
        let continued = line.starts_with(char::is_whitespace) && !trimmed.is_empty();
        match (&key, continued) {
            (Some(k), true) => {
                let value = sections
                    .entry(section.clone())
                    .or_default()
                    .entry(k.clone())
                    .or_default();
                value.push('\n');
                value.push_str(trimmed);
            }
            _ => {
                if let Some((k, v)) = trimmed.split_once('=') {
                    let k = k.trim().replace('-', "_");
                    sections
                        .entry(section.clone())
                        .or_default()
                        .insert(k.clone(), v.trim().to_owned());
                    key = Some(k);
                }
            }
        }
    }
    sections
}

/// The lines of `value` that apply to environment `env`: a `factor1,factor2: line` applies
/// when one of the factors is one of the env's.
fn lines_for(value: &str, env: &str, untranslated: &mut Vec<String>) -> Vec<String> {
    let factors: Vec<&str> = env.split('-').collect();
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in value.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // A trailing backslash continues the line.
        if let Some(part) = line.strip_suffix('\\') {
            pending.push_str(part);
            continue;
        }
        let line = std::mem::take(&mut pending) + line;
        let conditional = line.split_once(": ").filter(|(cond, _)| {
            cond.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b",-!_.".contains(&b))
        });
        match conditional {
            Some((cond, _)) if cond.contains('!') => {
                untranslated.push(format!("{env}: the negated factor line {line:?}"));
            }
            Some((cond, rest)) => {
                if cond.split(',').any(|f| factors.contains(&f.trim())) {
                    out.push(rest.trim().to_owned());
                }
            }
            None => out.push(line),
        }
    }
    out
}

impl Tox {
    /// Translates a `tox.ini` (or a `setup.cfg`'s `[tox:tox]`-style sections).
    pub(crate) fn from_ini(text: &str) -> Tox {
        let sections = ini(text);
        let empty = BTreeMap::new();
        let base = sections.get("testenv").unwrap_or(&empty);
        let tox = sections
            .get("tox")
            .or_else(|| sections.get("tox:tox"))
            .unwrap_or(&empty);
        let mut names = tox
            .get("envlist")
            .or_else(|| tox.get("env_list"))
            .map(|l| env_list(l))
            .unwrap_or_default();
        if names.is_empty() {
            names = sections
                .keys()
                .filter_map(|s| s.strip_prefix("testenv:"))
                .map(str::to_owned)
                .collect();
        }
        if names.is_empty() && sections.contains_key("testenv") {
            names.push("py".to_owned());
        }
        let mut out = Tox::default();
        for name in names {
            let own = sections.get(&format!("testenv:{name}")).unwrap_or(&empty);
            let get = |key: &str| own.get(key).or_else(|| base.get(key)).cloned();
            let mut env = ToxEnv {
                name: name.clone(),
                ..ToxEnv::default()
            };
            let lines = |key: &str, untranslated: &mut Vec<String>| {
                get(key)
                    .map(|v| lines_for(&v, &name, untranslated))
                    .unwrap_or_default()
            };
            let deps = lines("deps", &mut out.untranslated);
            let commands = lines("commands", &mut out.untranslated);
            let setenv = lines("setenv", &mut out.untranslated);
            let extras: Vec<String> = get("extras")
                .map(|e| {
                    e.split([',', '\n'])
                        .map(|x| x.trim().to_owned())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let flag = |key: &str| get(key).is_some_and(|v| v.eq_ignore_ascii_case("true"));
            env.install = if flag("skip_install") || get("package").as_deref() == Some("skip") {
                None
            } else {
                Some(flag("usedevelop") || get("package").as_deref() == Some("editable"))
            };
            env.python = get("basepython").or_else(|| name.split('-').find_map(python_of));
            env.extras = extras;
            for setting in setenv {
                if let Some((k, v)) = setting.split_once('=')
                    && let Some(v) = substitute(v.trim(), &name, &mut out.untranslated)
                {
                    env.env_vars.insert(k.trim().to_owned(), v);
                }
            }
            fill(&mut env, deps, commands, &mut out.untranslated);
            out.envs.push(env);
        }
        out
    }

    /// Translates a `tox.toml` (tox 4.21 and later).
    pub(crate) fn from_toml(text: &str) -> Result<Tox, String> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let empty = toml::Table::new();
        let base = doc
            .get("env_run_base")
            .and_then(Value::as_table)
            .unwrap_or(&empty);
        let envs = doc.get("env").and_then(Value::as_table).unwrap_or(&empty);
        let mut names: Vec<String> = doc
            .get("env_list")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            names = envs.keys().cloned().collect();
        }
        let mut out = Tox::default();
        for name in names {
            let own = envs.get(&name).and_then(Value::as_table).unwrap_or(&empty);
            let get = |key: &str| own.get(key).or_else(|| base.get(key));
            let strings = |key: &str| -> Vec<String> {
                get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            };
            let commands: Vec<String> = get("commands")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_array)
                .map(|argv| {
                    argv.iter()
                        .filter_map(Value::as_str)
                        .map(shell_word)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            let package = get("package").and_then(Value::as_str);
            let skip = get("skip_install").and_then(Value::as_bool) == Some(true);
            let mut env = ToxEnv {
                name: name.clone(),
                python: get("base_python")
                    .and_then(|p| p.as_str().or_else(|| p.as_array()?.first()?.as_str()))
                    .map(str::to_owned)
                    .or_else(|| name.split('-').find_map(python_of)),
                extras: strings("extras"),
                install: if skip || package == Some("skip") {
                    None
                } else {
                    Some(package == Some("editable"))
                },
                ..ToxEnv::default()
            };
            for (k, v) in get("set_env")
                .and_then(Value::as_table)
                .into_iter()
                .flatten()
            {
                if let Some(v) = v
                    .as_str()
                    .and_then(|v| substitute(v, &name, &mut out.untranslated))
                {
                    env.env_vars.insert(k.clone(), v);
                }
            }
            fill(&mut env, strings("deps"), commands, &mut out.untranslated);
            out.envs.push(env);
        }
        Ok(out)
    }
}

/// `word` as one shell word; `{posargs}` stays bare so that it still expands to the arguments.
fn shell_word(word: &str) -> String {
    if word.starts_with("{posargs") && word.ends_with('}') {
        word.to_owned()
    } else {
        crate::config::quote(word)
    }
}

/// Sorts `deps` into packages, requirements and constraints files, and takes `commands`,
/// with tox's substitutions translated.
fn fill(
    env: &mut ToxEnv,
    deps: Vec<String>,
    commands: Vec<String>,
    untranslated: &mut Vec<String>,
) {
    for dep in deps {
        let Some(dep) = substitute(&dep, &env.name, untranslated) else {
            continue;
        };
        if let Some(file) = dep.strip_prefix("-r") {
            env.requirements.push(file.trim().to_owned());
        } else if let Some(file) = dep.strip_prefix("-c") {
            env.constraints.push(file.trim().to_owned());
        } else {
            env.deps.push(dep);
        }
    }
    env.commands = commands
        .iter()
        .filter_map(|c| substitute(c, &env.name, untranslated))
        .map(command)
        .collect();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const INI: &str = "\
[tox]
envlist = py{310,311}, lint

[testenv]
deps =
    pytest>=8
    -r requirements-test.txt
    py311: coverage
extras = test
setenv =
    PYTHONHASHSEED = 0
    DATA = {toxinidir}/data
commands = pytest {posargs:tests} \\
    --tb=short
    - python -c 'print(1)'

[testenv:lint]
skip_install = true
deps = ruff
commands = ruff check {envsitepackagesdir}
";

    #[test]
    fn tox_ini_envs_become_suites_with_their_deps_commands_and_variables() {
        let tox = Tox::from_ini(INI);
        let names: Vec<&str> = tox.envs.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["py310", "py311", "lint"]);
        let py311 = &tox.envs[1];
        assert_eq!(py311.python.as_deref(), Some("3.11"));
        assert_eq!(python_of("pypy310").as_deref(), Some("pypy3.10"));
        assert_eq!(py311.deps, ["pytest>=8", "coverage"]);
        assert_eq!(tox.envs[0].deps, ["pytest>=8"]);
        assert_eq!(py311.requirements, ["requirements-test.txt"]);
        assert_eq!(py311.extras, ["test"]);
        assert_eq!(py311.install, Some(false));
        assert_eq!(
            py311.commands,
            [
                "pytest {posargs:tests} --tb=short",
                "python -c 'print(1)' || true"
            ]
        );
        assert_eq!(py311.env_vars["DATA"], "data");
        assert_eq!(py311.env_vars["PYTHONHASHSEED"], "0");
        let lint = &tox.envs[2];
        assert_eq!(lint.install, None);
        assert!(lint.commands.is_empty());
        assert_eq!(tox.untranslated.len(), 1, "{:?}", tox.untranslated);
        assert!(tox.untranslated[0].contains("{envsitepackagesdir}"));
    }

    #[test]
    fn tox_toml_envs_translate_too() {
        let tox = Tox::from_toml(
            "env_list = ['3.12', 'type']\n\
             [env_run_base]\ndeps = ['pytest']\ncommands = [['pytest', '{posargs}', '-k', 'a b']]\n\
             set_env = { X = '1' }\npackage = 'editable'\n\
             [env.type]\nbase_python = ['python3.12']\ndeps = ['mypy']\n\
             commands = [['mypy', 'src']]\n",
        )
        .unwrap();
        assert_eq!(tox.envs[0].commands, ["pytest {posargs} -k 'a b'"]);
        assert_eq!(tox.envs[0].python.as_deref(), Some("3.12"));
        assert_eq!(tox.envs[0].install, Some(true));
        assert_eq!(tox.envs[0].env_vars["X"], "1");
        assert_eq!(tox.envs[1].python.as_deref(), Some("python3.12"));
        assert_eq!(tox.envs[1].deps, ["mypy"]);
    }
}
