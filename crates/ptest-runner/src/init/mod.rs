//! `ptest init`: a commented starter `ptest.toml` for the project in a directory, from what
//! the project already says about its tests. [`Inferred::in_dir`] reads `pyproject.toml` (does
//! the project install itself, its test extras and dependency groups, pytest's configuration),
//! `requirements*.txt`, `tox.ini` or `tox.toml` (each environment becomes a template and a
//! suite that run the same) and `noxfile.py` (session names only: ptest does not
//! run Python to read it); [`starter`] writes the file, and [`Inferred::found`] and
//! [`Inferred::untranslated`] say what was taken from where and what was not.

mod pyproject;
mod tox;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use pyproject::Pyproject;
use tox::{Tox, ToxEnv};

/// What `ptest init` found in a project directory.
#[derive(Debug, Default)]
pub struct Inferred {
    /// `pyproject.toml` (with `[project]` or a build system), `setup.py` or `setup.cfg`.
    installable: bool,
    /// Test dependencies for the default Python template.
    test_deps: Vec<String>,
    /// The extra that holds them (installed with the project as `.[test]`), when one does.
    test_extra: Option<String>,
    /// Requirements files for the default Python template, relative to the directory.
    requirements: Vec<String>,
    /// Translated tox environments.
    tox: Vec<ToxEnv>,
    /// What was taken from where, one line each.
    pub found: Vec<String>,
    /// What could not be translated, one line each.
    pub untranslated: Vec<String>,
}

impl Inferred {
    /// Looks at `dir`.
    pub fn in_dir(dir: &Path) -> Inferred {
        let mut out = Inferred::default();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        if let Some(text) = read("pyproject.toml") {
            match Pyproject::parse(&text) {
                Ok(p) => out.take_pyproject(p),
                Err(e) => out.untranslated.push(format!(
                    "pyproject.toml is not valid TOML ({e}); it was not read"
                )),
            }
        }
        if dir.join("setup.py").is_file() || dir.join("setup.cfg").is_file() {
            out.installable = true;
        }
        out.requirements = requirement_files(dir);
        if !out.requirements.is_empty() {
            out.found.push(format!(
                "requirements files: {}",
                out.requirements.join(", ")
            ));
        }
        let tox = match (read("tox.toml"), read("tox.ini")) {
            (Some(text), _) => Some(("tox.toml", Tox::from_toml(&text))),
            (None, Some(text)) => Some(("tox.ini", Ok(Tox::from_ini(&text)))),
            (None, None) => None,
        };
        match tox {
            Some((file, Ok(tox))) => out.take_tox(file, tox),
            Some((file, Err(e))) => out
                .untranslated
                .push(format!("{file} is not valid TOML ({e}); it was not read")),
            None => {}
        }
        if let Some(text) = read("noxfile.py") {
            let sessions = nox_sessions(&text);
            out.untranslated.push(format!(
                "noxfile.py sessions {}: not translated (ptest does not run Python to read \
                 them); add a [[suite]] for each you want",
                if sessions.is_empty() {
                    "(none found)".to_owned()
                } else {
                    sessions.join(", ")
                }
            ));
        }
        out
    }

    fn take_pyproject(&mut self, p: Pyproject) {
        if p.installable {
            self.installable = true;
            self.found
                .push("pyproject.toml: the project installs itself (-e .)".to_owned());
        }
        if let Some(found) = p.test_deps {
            self.found.push(format!(
                "pyproject.toml: test dependencies from {}: {}",
                found.from,
                found.deps.join(", ")
            ));
            self.test_deps = found.deps;
            self.test_extra = found.extra;
        }
        if p.pytest_config {
            self.found.push(
                "pyproject.toml: pytest configuration ([tool.pytest.ini_options]), which \
                 pytest reads itself"
                    .to_owned(),
            );
        }
    }

    fn take_tox(&mut self, file: &str, tox: Tox) {
        let mut envs = Vec::new();
        for env in tox.envs {
            if env.commands.is_empty() {
                self.untranslated.push(format!(
                    "{file}: environment {} has no command ptest could translate; left out",
                    env.name
                ));
                continue;
            }
            envs.push(env);
        }
        self.untranslated
            .extend(tox.untranslated.into_iter().map(|u| format!("{file}: {u}")));
        if !envs.is_empty() {
            let names: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
            self.found.push(format!(
                "{file}: environments {} (deps, commands, setenv) as suites of the same names",
                names.join(", ")
            ));
        }
        self.tox = envs;
    }

    /// Whether it is a Python project.
    pub fn python(&self) -> bool {
        self.installable
            || !self.requirements.is_empty()
            || !self.test_deps.is_empty()
            || !self.tox.is_empty()
    }
}

/// `requirements*.txt`, `*-requirements.txt`, `requirements/*.txt` for tests or development
/// (not documentation) and `tests/requirements*.txt`, sorted.
fn requirement_files(dir: &Path) -> Vec<String> {
    let names = |sub: &str| -> Vec<String> {
        std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".txt") && !n.contains("doc"))
            .collect()
    };
    let mut out: Vec<String> = names(".")
        .into_iter()
        .filter(|n| n.starts_with("requirements") || n.ends_with("-requirements.txt"))
        .collect();
    out.extend(
        names("requirements")
            .into_iter()
            .filter(|n| n.contains("test") || n.contains("dev"))
            .map(|n| format!("requirements/{n}")),
    );
    // A test directory's own requirements (packaging keeps its test dependencies there).
    for sub in ["tests", "test"] {
        out.extend(
            names(sub)
                .into_iter()
                .filter(|n| n.starts_with("requirements"))
                .map(|n| format!("{sub}/{n}")),
        );
    }
    out.sort();
    out
}

/// The session names of a `noxfile.py`: each function decorated with `@nox.session` (or
/// `@session`), or the decorator's `name=`.
fn nox_sessions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut decorated: Option<Option<String>> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("@nox.session") || line.starts_with("@session") {
            let named = line.split_once("name=").and_then(|(_, rest)| {
                let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
                rest[1..].split(quote).next().map(str::to_owned)
            });
            decorated = Some(named);
        } else if let (Some(named), Some(rest)) = (&decorated, line.strip_prefix("def ")) {
            let name = rest.split('(').next().unwrap_or(rest).trim().to_owned();
            out.push(named.clone().unwrap_or(name));
            decorated = None;
        }
    }
    out
}

const HEADER: &str = "\
# ptest.toml: the test suites of this project for `ptest run`. Each suite runs in its own
# environment and sees this directory through a copy-on-write layer of its own (a private
# copy where there is no sandbox), so suites never see each other's writes and this tree is
# left as it was.
#
#   ptest run                  # every suite, as many at once as there are cores
#   ptest run --list           # what would run
#   ptest run tests -- -k foo  # arguments after -- go to the test command ({posargs})
#   ptest run -j 4 --retries 1 # four at a time, each failing suite retried once (flaky)
#
# Reports (JSON, JUnit, HTML) go to $PTEST_HOME/reports/<run id>/; --junit/--json/--html PATH
# write copies elsewhere.
";

/// The commented keys a Python template can have, after the ones inferred.
const PYTHON_KEYS: &str = "\
# find_links = [\"wheels/\"]  # local wheels; with no_index = true nothing is downloaded
";

/// The commented keys any template can have.
const TEMPLATE_KEYS: &str = "\
# limits = { memory = \"1G\", cpus = 1.5, pids = 512 }
# cleanup = \"immediate\"    # when environments go: immediate (default: when the suite
#                          # ends), on_shutdown (end of the run), on_request (kept until
#                          # `ptest env rm`), scheduled (with ttl, by `ptest gc`), never
# project = \"copy\"         # overlay (default where sandboxed): a copy-on-write layer over
#                          # this directory; copy: a private copy; bind: the real tree
";

/// Where a translated pytest command writes its JUnit file, in its workspace.
const JUNIT: &str = "reports/ptest-junit.xml";

/// `text` as a TOML string.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// `items` as a TOML array of strings.
fn array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quoted(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// `vars` as a TOML inline table.
fn table(vars: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = vars
        .iter()
        .map(|(k, v)| format!("{} = {}", quoted(k), quoted(v)))
        .collect();
    format!("{{ {} }}", pairs.join(", "))
}

/// A suite name from a tox environment name: lower case, other characters as `-`.
fn suite_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(crate::config::MAX_SUITE_NAME)
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        out.insert(0, 'e');
        out.truncate(crate::config::MAX_SUITE_NAME);
    }
    out
}

/// The starter `ptest.toml` for a project like `inferred`.
pub fn starter(inferred: &Inferred) -> String {
    let mut out = String::from(HEADER);
    if !inferred.tox.is_empty() {
        for env in &inferred.tox {
            tox_suite(&mut out, env);
        }
    } else if inferred.python() {
        python_suite(&mut out, inferred);
    } else {
        let _ = write!(
            out,
            "
# Environment templates are optional: a suite that names none runs in a basic environment
# (its own directories, and a sandbox where the host allows).
# [env.sandboxed]
# security = \"high\"        # low | medium | high
# network = \"none\"         # host | loopback | none
{TEMPLATE_KEYS}
[[suite]]
name = \"test\"
run = \"echo 'replace me with your test command, e.g. make test'\"
timeout = \"10m\"            # kills the suite's whole process tree
# junit = \"reports/junit.xml\"  # per-test results, if the command writes JUnit XML
# retries = 1              # passing on a retry is reported flaky
# depends_on = [\"lint\"]    # runs after lint passed
",
        );
    }
    out
}

/// A template and a pytest suite for a Python project without tox.
fn python_suite(out: &mut String, inferred: &Inferred) {
    let mut packages = Vec::new();
    match (&inferred.test_extra, inferred.installable) {
        (Some(extra), true) => packages.push(format!("-e .[{extra}]")),
        (None, true) => packages.push("-e .".to_owned()),
        (_, false) => {}
    }
    if inferred.test_extra.is_none() || !inferred.installable {
        packages.extend(inferred.test_deps.iter().cloned());
    }
    let has_pytest = |deps: &[String]| {
        deps.iter().any(|d| {
            d.trim_start()
                .to_ascii_lowercase()
                .strip_prefix("pytest")
                .is_some_and(|rest| !rest.starts_with(['-', '_']))
        })
    };
    if !has_pytest(&packages) && !has_pytest(&inferred.test_deps) {
        packages.push("pytest".to_owned());
    }
    let requirements = if inferred.requirements.is_empty() {
        "# requirements = [\"requirements.txt\"]\n".to_owned()
    } else {
        format!("requirements = {}\n", array(&inferred.requirements))
    };
    let _ = write!(
        out,
        "
# A Python virtual environment, built once per run and cloned for every further suite.
[env.py]
level = \"virtualenv\"
# python = [\"3.11\", \"3.12\"]  # an interpreter, or a list: each suite once per entry
packages = {}   # paths resolve against this directory
{requirements}# env_vars = {{ PYTHONHASHSEED = \"0\" }}  # for every command of its suites
{PYTHON_KEYS}{TEMPLATE_KEYS}
[[suite]]
name = \"tests\"
env = \"py\"
run = [\"python\", \"-m\", \"pytest\", \"{{posargs}}\", \"-q\", \"--junitxml\", \"reports/junit.xml\"]
junit = \"reports/junit.xml\"  # per-test results are read from here
timeout = \"10m\"            # kills the suite's whole process tree
# retries = 1              # passing on a retry is reported flaky
# parallel = 2             # two environments; with split = \"pytest\" each runs half the tests
# split = \"pytest\"
",
        array(&packages),
    );
}

/// A template and a suite for one tox environment.
fn tox_suite(out: &mut String, env: &ToxEnv) {
    let name = suite_name(&env.name);
    let mut packages = Vec::new();
    let extras = if env.extras.is_empty() {
        String::new()
    } else {
        format!("[{}]", env.extras.join(","))
    };
    match env.install {
        Some(true) => packages.push(format!("-e .{extras}")),
        Some(false) => packages.push(format!(".{extras}")),
        None => {}
    }
    packages.extend(env.deps.iter().cloned());
    let _ = writeln!(out, "\n# tox environment {}.", env.name);
    let _ = writeln!(out, "[env.{}]", quoted(&name));
    out.push_str("level = \"virtualenv\"\n");
    if let Some(python) = &env.python {
        let _ = writeln!(out, "python = {}", quoted(python));
    }
    let _ = writeln!(out, "packages = {}", array(&packages));
    if !env.requirements.is_empty() {
        let _ = writeln!(out, "requirements = {}", array(&env.requirements));
    }
    if !env.constraints.is_empty() {
        let _ = writeln!(out, "constraints = {}", array(&env.constraints));
    }
    if !env.env_vars.is_empty() {
        let _ = writeln!(out, "env_vars = {}", table(&env.env_vars));
    }
    // pytest writes JUnit too, for per-test results and split's durations.
    let mut junit = false;
    let mut commands: Vec<String> = env
        .commands
        .iter()
        .map(|c| {
            let words: Vec<&str> = c.split_whitespace().take(3).collect();
            let pytest = matches!(words.as_slice(), ["pytest" | "py.test", ..])
                || words.starts_with(&["python", "-m", "pytest"]);
            if pytest && !junit && !c.contains("--junitxml") && !c.contains("||") {
                junit = true;
                format!("{c} --junitxml={JUNIT}")
            } else {
                c.clone()
            }
        })
        .collect();
    if commands.iter().any(|c| c.contains(tox::ENVTMPDIR)) {
        commands.insert(0, format!("mkdir -p \"{}\"", tox::ENVTMPDIR));
    }
    let _ = write!(
        out,
        "\n[[suite]]\nname = {}\nenv = {}\nrun = {}\n{}timeout = \"10m\"\n",
        quoted(&name),
        quoted(&name),
        quoted(&commands.join(" && ")),
        if junit {
            format!(
                "junit = {}\n# split = \"pytest\"          # shards share the tests\n",
                quoted(JUNIT)
            )
        } else {
            String::new()
        },
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Project;

    fn parses(text: &str) -> Project {
        Project::parse(Path::new("/p/ptest.toml"), Path::new("/p"), text)
            .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
    }

    fn project_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Inferred) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let inferred = Inferred::in_dir(dir.path());
        (dir, inferred)
    }

    #[test]
    fn a_python_project_gets_its_test_dependencies_and_requirements() {
        let (_dir, inferred) = project_with(&[
            (
                "pyproject.toml",
                "[project]\nname = 'x'\n[project.optional-dependencies]\n\
                 test = ['pytest>=8', 'pretend']\n",
            ),
            ("requirements-test.txt", "coverage\n"),
            ("requirements/docs.txt", "sphinx\n"),
            ("requirements/tests.txt", "hypothesis\n"),
            ("tests/requirements.txt", "pretend\n"),
        ]);
        let text = starter(&inferred);
        // The test extra comes with the project; pytest is in it.
        assert!(text.contains(r#"packages = ["-e .[test]"]"#), "{text}");
        let project = parses(&text);
        assert_eq!(project.suites[0].env, "py");
        let template = &project.templates["py"];
        assert_eq!(template.install_project, Some(vec!["test".to_owned()]));
        let venv = template.virtualenv.clone().unwrap();
        assert_eq!(
            venv.requirements,
            [
                std::path::PathBuf::from("/p/requirements-test.txt"),
                std::path::PathBuf::from("/p/requirements/tests.txt"),
                std::path::PathBuf::from("/p/tests/requirements.txt")
            ]
        );
        assert!(
            inferred.found.iter().any(|f| f.contains("pretend")),
            "{:?}",
            inferred.found
        );
    }

    #[test]
    fn tox_environments_become_templates_and_suites() {
        let (_dir, inferred) = project_with(&[
            (
                "pyproject.toml",
                "[project]\nname = 'x'\n[project.optional-dependencies]\ntest = ['pretend']\n",
            ),
            (
                "tox.ini",
                "[tox]\nenvlist = py311, Lint\n[testenv]\nextras = test\ndeps = pytest\n\
                 setenv = MODE = \"a b\"\ncommands = pytest {posargs}\n\
                 [testenv:Lint]\nskip_install = true\ndeps = ruff\ncommands = ruff check .\n",
            ),
            (
                "noxfile.py",
                "import nox\n@nox.session(python=['3.11'])\ndef tests(session):\n    pass\n",
            ),
        ]);
        let text = starter(&inferred);
        assert!(
            text.contains(r#"packages = [".[test]", "pytest"]"#),
            "{text}"
        );
        let project = parses(&text);
        let names: Vec<&str> = project.suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["py311", "lint"]);
        let py = &project.templates["py311"];
        let venv = py.virtualenv.clone().unwrap();
        assert_eq!(venv.python.as_deref(), Some("3.11"));
        assert_eq!(venv.packages, ["pytest"]);
        assert_eq!(py.install_project, Some(vec!["test".to_owned()]));
        assert_eq!(py.env_vars["MODE"], "\"a b\"");
        assert_eq!(
            project.suites[0].run.display(),
            "pytest {posargs} --junitxml=reports/ptest-junit.xml"
        );
        assert_eq!(
            project.suites[0].junit.as_deref(),
            Some(Path::new("reports/ptest-junit.xml"))
        );
        assert_eq!(
            project.templates["lint"]
                .virtualenv
                .clone()
                .unwrap()
                .packages,
            ["ruff"]
        );
        assert!(
            inferred
                .untranslated
                .iter()
                .any(|u| u.contains("noxfile.py sessions tests")),
            "{:?}",
            inferred.untranslated
        );
    }

    #[test]
    fn any_other_project_gets_a_shell_suite() {
        let (_dir, inferred) = project_with(&[]);
        let project = parses(&starter(&inferred));
        assert_eq!(project.suites[0].env, "basic");
        assert_eq!(project.suites.len(), 1);
        assert!(inferred.found.is_empty() && inferred.untranslated.is_empty());
    }

    #[test]
    fn nox_session_names_are_read_without_running_python() {
        let text = "@nox.session\ndef lint(session): ...\n\
                    @nox.session(name='unit-tests', python='3.12')\ndef unit(s): ...\n\
                    def helper(): ...\n";
        assert_eq!(nox_sessions(text), ["lint", "unit-tests"]);
    }
}
