//! Mistakes in ptest.toml name the file, line and column, and what to do.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;
use std::sync::Arc;

use ptest_runner::{Project, ProjectError, ProjectMode};

/// Loads `text` as a ptest.toml and returns (line, column, message, help).
fn error_of(text: &str) -> (usize, usize, String, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ptest.toml");
    std::fs::write(&file, text).unwrap();
    where_refused(&file, Project::load(dir.path()).unwrap_err())
}

/// Loads `text` as a ptest.toml, which parses, and returns where ptest's engines refuse it.
fn engine_error_of(text: &str) -> (usize, usize, String, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ptest.toml");
    std::fs::write(&file, text).unwrap();
    let home = ptest_core::Home::at(dir.path().join("home"));
    let mut engines = ptest_core::EngineRegistry::new();
    engines.register(Arc::new(ptest_local::DirectoryEngine::new()));
    engines.register(Arc::new(ptest_local::VirtualenvEngine::new(&home)));
    engines.register(Arc::new(ptest_docker::DockerEngine::new(home.path())));
    let project = Project::load(dir.path()).unwrap();
    where_refused(&file, project.check_engines(&engines).unwrap_err())
}

/// (line, column, message, help) of a refusal of `file`.
fn where_refused(file: &Path, err: ProjectError) -> (usize, usize, String, Option<String>) {
    assert_eq!(err.kind(), ptest_core::ErrorKind::Usage);
    let ProjectError::File(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.path, file.display().to_string());
    assert!(
        err.to_string()
            .starts_with(&format!("{}:{}:{}: ", file.display(), e.line, e.column)),
        "{err}"
    );
    (e.line, e.column, e.message.clone(), e.help.clone())
}

#[test]
fn unknown_key_points_at_the_key() {
    let (line, column, message, help) =
        error_of("[[suite]]\nname = \"a\"\nrun = \"true\"\n  retires = 2\n");
    assert_eq!((line, column), (4, 3), "{message}");
    assert!(message.contains("unknown field `retires`"), "{message}");
    assert!(help.unwrap().contains("spelling"));
}

#[test]
fn bad_duration_points_at_the_value() {
    let (line, column, message, _) =
        error_of("[[suite]]\nname = \"a\"\nrun = \"true\"\ntimeout = \"5 parsecs\"\n");
    assert_eq!((line, column), (4, 11), "{message}");
    assert!(
        message.contains("invalid duration \"5 parsecs\""),
        "{message}"
    );
}

#[test]
fn unknown_template_points_at_the_reference() {
    let (line, column, message, help) = error_of(
        "[env.py]\npython = \"3\"\n\n[[suite]]\nname = \"a\"\nenv = \"pyy\"\nrun = \"true\"\n",
    );
    assert_eq!((line, column), (6, 7), "{message}");
    assert!(
        message.contains("unknown environment template \"pyy\""),
        "{message}"
    );
    assert!(help.unwrap().contains("basic, py"));
}

#[test]
fn dependency_cycle_is_refused_with_its_path() {
    let (line, column, message, _) = error_of(
        "[[suite]]\nname = \"a\"\nrun = \"true\"\ndepends_on = [\"b\"]\n\n\
         [[suite]]\nname = \"b\"\nrun = \"true\"\ndepends_on = [\"c\"]\n\n\
         [[suite]]\nname = \"c\"\nrun = \"true\"\ndepends_on = [\"a\"]\n",
    );
    assert_eq!((line, column), (4, 15), "{message}");
    assert!(message.contains("a -> b -> c -> a"), "{message}");
}

#[test]
fn unknown_dependency_is_refused() {
    let (line, _, message, _) =
        error_of("[[suite]]\nname = \"a\"\nrun = \"true\"\ndepends_on = [\"ghost\"]\n");
    assert_eq!(line, 4);
    assert!(
        message.contains("\"ghost\", which is not a suite"),
        "{message}"
    );
}

#[test]
fn a_service_key_that_does_not_exist_points_at_it() {
    let (line, column, message, _) = error_of(
        "[[suite]]\nname = \"a\"\nrun = \"true\"\nservices = [{ name = \"db\", run = \"postgres\", ready_prot = \"5432\" }]\n",
    );
    assert_eq!(line, 4, "{message}");
    assert!(message.contains("ready_prot"), "{message} at {column}");
}

/// A suite `s` with one `[[suite.services]]` table of `keys` (from line 5 on).
fn service(keys: &str) -> String {
    format!("[[suite]]\nname = \"s\"\nrun = \"true\"\n\n[[suite.services]]\nname = \"db\"\n{keys}")
}

#[test]
fn container_service_mistakes_point_at_their_key() {
    // (keys after `name = "db"` on line 6, the line and column refused, words of the message)
    let cases = [
        (
            "image = \"redis:7\"\nbuild = \"docker\"\n",
            (8, 9),
            "both `image` and `build`",
        ),
        ("image = \"Redis:7\"\n", (7, 9), "Redis"),
        (
            "run = \"redis-server\"\nports = [6379]\n",
            (8, 9),
            "`ports` are a container service's",
        ),
        (
            "image = \"redis:7\"\nports = [6379, 6379]\n",
            (8, 9),
            "listed twice",
        ),
        (
            "ready_port = \"5432\"\n",
            (6, 8),
            "no `run`, `image` or `build`",
        ),
        ("image = \"redis:7\"\nports = [70000]\n", (8, 10), "70000"),
    ];
    for (keys, at, words) in cases {
        let (line, column, message, _) = error_of(&service(keys));
        assert_eq!((line, column), at, "{keys}: {message}");
        assert!(message.contains(words), "{keys}: {message}");
    }
    // A container service's name becomes a host name and PTEST_PORT_<NAME>.
    let text = "[[suite]]\nname = \"s\"\nrun = \"true\"\n\n[[suite.services]]\nname = \"Db.1\"\nimage = \"redis:7\"\n";
    let (line, column, message, _) = error_of(text);
    assert_eq!((line, column), (6, 8), "{message}");
    assert!(message.contains("[a-z][a-z0-9_-]*"), "{message}");
    // Two services of one name.
    let text = format!(
        "{}\n[[suite.services]]\nname = \"db\"\nrun = \"true\"\n",
        service("run = \"true\"\n")
    );
    let (line, _, message, _) = error_of(&text);
    assert_eq!(line, 10, "{message}");
    assert!(message.contains("two services named \"db\""), "{message}");
}

#[test]
fn a_container_service_without_a_docker_engine_is_refused_at_its_image() {
    let text = service("image = \"redis:7\"\nports = [6379]\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ptest.toml");
    std::fs::write(&file, &text).unwrap();
    let home = ptest_core::Home::at(dir.path().join("home"));
    let mut engines = ptest_core::EngineRegistry::new();
    engines.register(Arc::new(ptest_local::DirectoryEngine::new()));
    engines.register(Arc::new(ptest_local::VirtualenvEngine::new(&home)));
    let project = Project::load(dir.path()).unwrap();
    let (line, column, message, help) =
        where_refused(&file, project.check_engines(&engines).unwrap_err());
    assert_eq!((line, column), (7, 9), "{message}");
    assert!(message.contains("no docker engine"), "{message}");
    assert!(help.unwrap().contains("run = "), "{message}");
    // With one, the same file passes.
    engines.register(Arc::new(ptest_docker::DockerEngine::new(home.path())));
    project.check_engines(&engines).unwrap();
}

#[test]
fn an_overlay_where_no_sandbox_can_be_is_refused_with_the_way_out() {
    for (toml, why) in [
        (
            "[env.o]\nproject = \"overlay\"\nsecurity = \"low\"\n",
            "low",
        ),
        (
            "[env.o]\nproject = \"overlay\"\nimage = \"busybox:1\"\n",
            "docker",
        ),
    ] {
        let (line, column, message, help) = engine_error_of(toml);
        assert_eq!((line, column), (2, 11), "{message}");
        assert!(
            message.contains("project = \"overlay\"") && message.contains(why),
            "{message}"
        );
        assert!(help.unwrap().contains("project = \"copy\""), "{message}");
    }
    // Without a reason known from the file, the host decides at run time.
    let text = "[env.o]\nproject = \"overlay\"\n";
    let project = Project::parse(Path::new("/p/ptest.toml"), Path::new("/p"), text).unwrap();
    assert_eq!(project.templates["o"].project, Some(ProjectMode::Overlay));
}

#[test]
fn suite_names_must_fit_an_environment_name() {
    let (line, _, message, _) = error_of("[[suite]]\nname = \"Unit Tests\"\nrun = \"true\"\n");
    assert_eq!(line, 2);
    assert!(message.contains("[a-z0-9]"), "{message}");
    let (line, _, message, _) =
        error_of("[[suite]]\nname = \"a\"\nrun = \"true\"\n[[suite]]\nname = \"a\"\nrun = \"x\"\n");
    assert_eq!(line, 5);
    assert!(message.contains("already defined"), "{message}");
}

#[test]
fn defaults_table_is_accepted_and_paths_resolve_against_the_project() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ptest.toml"),
        "[defaults]\nmax_environments = 5\n\n\
         [env.py]\npackages = [\".\", \"-e ./sub\", \"requests==2.31\"]\n\
         requirements = [\"req.txt\"]\nfind_links = [\"wheels\", \"https://example.org/w\"]\n\n\
         [[suite]]\nname = \"a\"\nenv = \"py\"\nrun = [\"python\", \"-m\", \"unittest\"]\n",
    )
    .unwrap();
    let project = Project::discover(&dir.path().join("nested/deeper")).unwrap_or_else(|_| {
        std::fs::create_dir_all(dir.path().join("nested/deeper")).unwrap();
        Project::discover(&dir.path().join("nested/deeper")).unwrap()
    });
    let root = dir.path().display().to_string();
    // `.` is the project under test, installed per suite from a wheel (not a package).
    assert_eq!(project.templates["py"].install_project, Some(vec![]));
    let venv = project.templates["py"].virtualenv.clone().unwrap();
    assert_eq!(
        venv.packages,
        [format!("-e {root}/sub"), "requests==2.31".into()]
    );
    assert_eq!(venv.requirements, [dir.path().join("req.txt")]);
    assert_eq!(
        venv.find_links,
        [format!("{root}/wheels"), "https://example.org/w".into()]
    );
    assert_eq!(project.suites[0].run.argv(), ["python", "-m", "unittest"]);
}

#[test]
fn keep_contradicting_a_removing_cleanup_policy_is_refused() {
    let (line, column, message, help) = error_of("[env.e]\nkeep = true\ncleanup = \"immediate\"\n");
    assert_eq!((line, column), (3, 11), "{message}");
    assert!(message.contains("contradicts"), "{message}");
    assert!(help.unwrap().contains("on_request"));
}

#[test]
fn a_bad_allow_rule_points_at_the_rule_and_a_good_one_reaches_the_spec() {
    let (line, column, message, _) =
        error_of("[env.e]\nnetwork = \"bridge\"\nallow = [\"api:http\"]\n");
    assert_eq!(line, 3, "{message}");
    assert!(column >= 9, "{column}: {message}");
    assert!(
        message.contains("invalid --allow rule \"api:http\""),
        "{message}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ptest.toml"),
        "[env.e]\nnetwork = \"bridge\"\nallow = [\"api:8080\", \"10.0.0.0/8\"]\n\n\
         [[suite]]\nname = \"s\"\nenv = \"e\"\nrun = \"true\"\n",
    )
    .unwrap();
    let project = Project::load(dir.path()).unwrap();
    let spec = project.templates["e"].spec("x".parse().unwrap(), Default::default());
    let rules: Vec<String> = spec.allow.iter().map(ToString::to_string).collect();
    assert_eq!(rules, ["api:8080", "10.0.0.0/8"]);
}

#[test]
fn a_python_matrix_that_cannot_expand_points_at_the_list() {
    for (list, problem) in [
        ("[]", "lists no interpreter"),
        ("[\"3.11\", \"3.11\"]", "listed twice"),
        ("[\"3.11\", \"Py 3\"]", "cannot name a suite"),
    ] {
        let (line, column, message, _) = error_of(&format!(
            "[env.py]\npython = {list}\n\n[[suite]]\nname = \"a\"\nenv = \"py\"\nrun = \"true\"\n"
        ));
        assert_eq!((line, column), (2, 10), "{message}");
        assert!(message.contains(problem), "{message}");
    }
}

#[test]
fn a_python_matrix_makes_one_suite_per_entry_and_dependencies_follow() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ptest.toml"),
        r#"
[env.py]
python = ["3.11", "pypy3.10"]
env_vars = { MODE = "test" }

[[suite]]
name = "unit"
env = "py"
run = "true"

[[suite]]
name = "report"
run = "true"
depends_on = ["unit"]
"#,
    )
    .unwrap();
    let project = Project::load(dir.path()).unwrap();
    let names: Vec<&str> = project.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["unit[py3.11]", "unit[pypy3.10]", "report"]);
    let unit = project.suite("unit[py3.11]").unwrap();
    assert_eq!(unit.env_stem(), "unit-py3.11");
    let template = project.template(unit);
    assert_eq!(template.name, "py[py3.11]");
    assert_eq!(
        template.virtualenv.as_ref().unwrap().python.as_deref(),
        Some("3.11")
    );
    assert_eq!(template.env_vars["MODE"], "test");
    assert_eq!(
        project.suite("report").unwrap().depends_on,
        ["unit[py3.11]", "unit[pypy3.10]"]
    );
    let plan = |names: &[&str]| {
        let selection = ptest_runner::Selection {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            ..Default::default()
        };
        selection
            .plan(&project)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(plan(&["unit"]), ["unit[py3.11]", "unit[pypy3.10]"]);
    assert_eq!(plan(&["unit[pypy3.10]"]), ["unit[pypy3.10]"]);
}

#[test]
fn what_only_an_engine_judges_is_refused_where_it_is_written() {
    // An image on a level that runs none: at the template's table.
    let (line, _, message, _) =
        engine_error_of("[env.box]\nlevel = \"basic\"\nimage = \"busybox:1\"\n");
    assert_eq!(line, 1, "{message}");
    assert!(
        message.contains("\"box\"") && message.contains("another level"),
        "{message}"
    );
    // A split whose plugin a container's commands would not see: at the `split` key.
    let (line, column, message, _) = engine_error_of(
        "[env.box]\nimage = \"busybox:1\"\n\n[[suite]]\nname = \"unit\"\nenv = \"box\"\nrun = \"pytest\"\nparallel = 2\nsplit = \"pytest\"\n",
    );
    assert_eq!((line, column), (9, 9), "{message}");
    assert!(
        message.contains("split = \"pytest\"") && message.contains("docker"),
        "{message}"
    );
}
