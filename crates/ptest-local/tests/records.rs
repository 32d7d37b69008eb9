//! The basic engine with records the manager kept from older ptest versions.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::Arc;

use ptest_core::*;

fn manager(home: &std::path::Path) -> Manager {
    let mut engines = EngineRegistry::new();
    engines.register(Arc::new(ptest_local::DirectoryEngine::new()));
    Manager::open(Home::at(home), Config::default(), engines).unwrap()
}

/// An environment whose record has no `isolation` (one made before ptest sandboxed
/// anything) still runs commands: on the host, in its workspace, with its variables.
#[tokio::test]
async fn an_environment_without_an_isolation_record_runs_commands_on_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manager(tmp.path());
    let mut spec =
        EnvironmentSpec::new(IsolationLevel::Basic).name(EnvName::new("unrecorded").unwrap());
    spec.security = Some(SecurityLevel::Low);
    m.create_environment(spec).await.unwrap();
    rusqlite::Connection::open(m.store().path())
        .unwrap()
        .execute(
            "UPDATE environments SET details = json_remove(details, '$.isolation') \
             WHERE name = 'unrecorded'",
            [],
        )
        .unwrap();
    let env = m.get_environment("unrecorded").unwrap();
    assert!(!env.details.contains_key("isolation"));
    let r = m
        .execute_command(
            &env,
            ExecRequest::new(["sh", "-c", "echo $PTEST_ENV_NAME; pwd; exit 5"]),
        )
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(5));
    assert_eq!(
        r.stdout,
        format!("unrecorded\n{}\n", env.workspace().display())
    );
    m.cleanup(&env, RemoveOptions::default()).await.unwrap();
}
