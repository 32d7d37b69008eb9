//! `ptest init`: a commented starter `ptest.toml` for the project in a directory. A Python
//! project (a `pyproject.toml`, `setup.py` or `requirements.txt`) gets a virtualenv template
//! and a pytest suite; any other project a shell suite to fill in.

use std::path::Path;

/// What [`starter`] found in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Detected {
    /// `pyproject.toml` or `setup.py`: the project installs itself (`-e .`).
    pub installable: bool,
    /// `requirements.txt` exists.
    pub requirements: bool,
    /// `requirements-dev.txt` exists.
    pub dev_requirements: bool,
}

impl Detected {
    /// Looks at `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            installable: dir.join("pyproject.toml").is_file() || dir.join("setup.py").is_file(),
            requirements: dir.join("requirements.txt").is_file(),
            dev_requirements: dir.join("requirements-dev.txt").is_file(),
        }
    }

    /// Whether it is a Python project.
    pub fn python(&self) -> bool {
        self.installable || self.requirements || self.dev_requirements
    }
}

const HEADER: &str = "\
# ptest.toml: the test suites of this project for `ptest run`. Each suite runs in its own
# environment and sees this directory through a copy-on-write layer of its own (a private
# copy where there is no sandbox), so suites never see each other's writes and this tree is
# left as it was.
#
#   ptest run                  # every suite, as many at once as there are cores
#   ptest run --list           # what would run
#   ptest run -j 4 --retries 1 # four at a time, each failing suite retried once (flaky)
#
# Reports (JSON, JUnit, HTML) go to $PTEST_HOME/reports/<run id>/; --junit/--json/--html PATH
# write copies elsewhere.
";

/// The starter `ptest.toml` for a project like `detected`.
pub fn starter(detected: &Detected) -> String {
    let mut out = String::from(HEADER);
    if detected.python() {
        let mut packages = Vec::new();
        if detected.installable {
            packages.push("\"-e .\"");
        }
        packages.push("\"pytest\"");
        let mut requirements = Vec::new();
        if detected.requirements {
            requirements.push("\"requirements.txt\"");
        }
        if detected.dev_requirements {
            requirements.push("\"requirements-dev.txt\"");
        }
        out.push_str(&format!(
            "
# A Python virtual environment, built once per run and cloned for every further suite.
[env.py]
level = \"virtualenv\"
# python = \"3.11\"          # an interpreter version, path or command (default: python3)
packages = [{}]   # paths resolve against this directory
{}# find_links = [\"wheels/\"]  # local wheels; with no_index = true nothing is downloaded
# limits = {{ memory = \"1G\", cpus = 1.5, pids = 512 }}
# cleanup = \"immediate\"    # when environments go: immediate (default: when the suite
#                          # ends), on_shutdown (end of the run), on_request (kept until
#                          # `ptest env rm`), scheduled (with ttl, by `ptest gc`), never
# project = \"copy\"         # overlay (default where sandboxed): a copy-on-write layer over
#                          # this directory; copy: a private copy; bind: the real tree

[[suite]]
name = \"tests\"
env = \"py\"
run = [\"python\", \"-m\", \"pytest\", \"-q\", \"--junitxml\", \"reports/junit.xml\"]
junit = \"reports/junit.xml\"  # per-test results are read from here
timeout = \"10m\"            # kills the suite's whole process tree
# retries = 1              # passing on a retry is reported flaky
# parallel = 2             # two environments; PTEST_SHARD = 0, 1 and PTEST_SHARDS = 2
",
            packages.join(", "),
            if requirements.is_empty() {
                "# requirements = [\"requirements.txt\"]\n".to_owned()
            } else {
                format!("requirements = [{}]\n", requirements.join(", "))
            },
        ));
    } else {
        out.push_str(
            "
# Environment templates are optional: a suite that names none runs in a basic environment
# (its own directories, and a sandbox where the host allows).
# [env.sandboxed]
# security = \"high\"        # low | medium | high
# network = \"none\"         # host | loopback | none
# limits = { memory = \"1G\", cpus = 1.5, pids = 512 }
# cleanup = \"immediate\"    # when environments go: immediate (default: when the suite
#                          # ends), on_shutdown (end of the run), on_request (kept until
#                          # `ptest env rm`), scheduled (with ttl, by `ptest gc`), never
# project = \"copy\"         # overlay (default where sandboxed): a copy-on-write layer over
#                          # this directory; copy: a private copy; bind: the real tree

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Project;

    fn parses(text: &str) -> Project {
        Project::parse(Path::new("/p/ptest.toml"), Path::new("/p"), text)
            .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
    }

    #[test]
    fn a_python_project_gets_a_virtualenv_suite() {
        let d = Detected {
            installable: true,
            requirements: true,
            dev_requirements: false,
        };
        let project = parses(&starter(&d));
        assert_eq!(project.suites[0].env, "py");
        let venv = project.templates["py"].virtualenv.clone().expect("a venv");
        assert_eq!(venv.packages, ["-e /p", "pytest"]);
        assert_eq!(
            venv.requirements,
            [std::path::PathBuf::from("/p/requirements.txt")]
        );
    }

    #[test]
    fn any_other_project_gets_a_shell_suite() {
        let project = parses(&starter(&Detected::default()));
        assert_eq!(project.suites[0].env, "basic");
        assert_eq!(project.suites.len(), 1);
    }
}
