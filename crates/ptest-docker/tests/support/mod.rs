//! Set-up shared by the docker engine's tests: a reachable engine (or a printed reason to
//! skip, which fails under `PTEST_REQUIRE_ALL=1`), the busybox test image built locally from
//! `support/Dockerfile` (no registry needed), and a manager on a temporary home.

#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;
use std::sync::{Arc, OnceLock};

use bollard::Docker;
use ptest_core::*;
use ptest_docker::{DockerEngine, LABEL_HOME};

/// The test image: busybox alone, `FROM scratch`.
pub const TEST_IMAGE: &str = "ptest-test-busybox:latest";

/// A temporary home with a manager holding the docker engine, and a client for checking.
pub struct Fixture {
    pub manager: Manager,
    pub engine: Arc<DockerEngine>,
    pub docker: Docker,
    pub home: tempfile::TempDir,
}

impl Fixture {
    /// A spec for the docker level running the test image.
    pub fn spec(&self, name: &str) -> EnvironmentSpec {
        let mut spec =
            EnvironmentSpec::new(IsolationLevel::Docker).name(EnvName::new(name).unwrap());
        spec.docker = Some(DockerSpec {
            image: Some(TEST_IMAGE.to_owned()),
            build: None,
        });
        spec
    }

    /// Runs `sh -c script` in `env` and returns the result.
    pub async fn sh(&self, env: &Environment, script: &str) -> ProcessResult {
        self.manager
            .execute_command(env, ExecRequest::new(["sh", "-c", script]))
            .await
            .unwrap()
    }

    /// Whether a container with this name exists on the engine.
    pub async fn container_exists(&self, name: &str) -> bool {
        self.docker.inspect_container(name, None).await.is_ok()
    }
}

impl Drop for Fixture {
    /// Whatever a failed test left behind on the engine under this home's label goes.
    fn drop(&mut self) {
        let label = format!("label={LABEL_HOME}={}", self.engine.home_hash());
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
        {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f", "-v"])
                    .args(&ids)
                    .output();
            }
        }
        // The home's network and every run's.
        if let Ok(out) = Command::new("docker")
            .args(["network", "ls", "-q", "--filter", &label])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["network", "rm", id]).output();
            }
        }
    }
}

/// A fixture, or `None` (with the reason printed) when no Docker engine is reachable. Under
/// `PTEST_REQUIRE_ALL=1` an unreachable engine fails the test instead.
pub async fn fixture() -> Option<Fixture> {
    let docker = match connect().await {
        Ok(d) => d,
        Err(why) => {
            skip(&format!(
                "no Docker engine: {why} (run scripts/start-dockerd)"
            ));
            return None;
        }
    };
    if let Err(why) = test_image() {
        skip(&format!("cannot build the test image: {why}"));
        return None;
    }
    let home = tempfile::tempdir().unwrap();
    let engine = Arc::new(DockerEngine::new(home.path()));
    let mut engines = EngineRegistry::new();
    engines.register(engine.clone());
    let manager = Manager::open(Home::at(home.path()), Config::default(), engines).unwrap();
    Some(Fixture {
        manager,
        engine,
        docker,
        home,
    })
}

fn skip(why: &str) {
    ptest_testkit::skip::<()>(why);
}

async fn connect() -> Result<Docker, String> {
    let docker = Docker::connect_with_defaults().map_err(|e| e.to_string())?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| e.to_string())?;
    docker.ping().await.map_err(|e| e.to_string())?;
    Ok(docker)
}

/// Builds [`TEST_IMAGE`] once per test process (with the classic builder, which needs no
/// registry for `FROM scratch`) from ptest-testkit's busybox context.
pub fn test_image() -> Result<String, String> {
    static BUILT: OnceLock<Result<String, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(why) = ptest_testkit::busybox::missing() {
                return Err(why);
            }
            let context = tempfile::tempdir().map_err(|e| e.to_string())?;
            ptest_testkit::busybox::write_context(context.path()).map_err(|e| e.to_string())?;
            let out = Command::new("docker")
                .args(["build", "-q", "-t", TEST_IMAGE])
                .arg(context.path())
                .env("DOCKER_BUILDKIT", "0")
                .output()
                .map_err(|e| format!("docker build: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "docker build failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(TEST_IMAGE.to_owned())
        })
        .clone()
}
