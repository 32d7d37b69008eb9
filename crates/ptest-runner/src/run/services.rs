//! A suite's `[[suite.services]]`, started before its setup and stopped after its teardown.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ptest_core::Environment;

use crate::config::Suite;

use super::Shared;
use super::executor::argv_in;

/// Starts the suite's services in its environment and waits until each is ready; the reason
/// (with the service's last output lines) when one is not.
pub(super) async fn start_services(
    shared: &Shared,
    suite: &Suite,
    env: &Environment,
    dir: &Path,
    in_workspace: bool,
    vars: &BTreeMap<String, String>,
) -> Result<(), String> {
    if suite.services.is_empty() {
        return Ok(());
    }
    let Some(exe) = &shared.options.supervisor else {
        return Err("services need ptest's supervisor executable (RunOptions::supervisor)".into());
    };
    for service in &suite.services {
        let mut env_vars: Vec<(String, String)> = vars.clone().into_iter().collect();
        env_vars.extend(service.env_vars.clone());
        let spec = ptest_core::ServiceSpec {
            name: service.name.clone(),
            argv: argv_in(&service.run, dir, in_workspace),
            env: env_vars,
            restart: ptest_core::RestartPolicy::No,
            ready: ptest_core::Readiness {
                port: service.ready_port.clone(),
                log: service.ready_log.clone(),
                http: service.ready_http.clone(),
                cmd: service.ready_cmd.clone(),
                timeout: service.ready_timeout.unwrap_or(Duration::from_secs(60)),
            },
        };
        match ptest_supervisor::start(&shared.manager, env, spec, exe).await {
            Ok(_) => {}
            Err(ptest_supervisor::StartFailure::NotReady { reason, tail, .. }) => {
                return Err(format!(
                    "service {:?} {reason}; its last output:\n{tail}",
                    service.name
                ));
            }
            Err(ptest_supervisor::StartFailure::Ptest(e)) => {
                return Err(format!("service {:?}: {e}", service.name));
            }
        }
    }
    Ok(())
}

/// Stops the suite's services (the environment's removal would end them too; a kept one
/// should not keep serving).
pub(super) async fn stop_services(shared: &Shared, suite: &Suite, env: &Environment) {
    for service in &suite.services {
        let stopped = ptest_supervisor::stop(
            &shared.manager,
            env,
            &service.name,
            ptest_supervisor::Signal::TERM,
            Duration::from_secs(10),
        )
        .await;
        if let Err(e) = stopped {
            tracing::debug!("stopping service {} of {}: {e}", service.name, suite.name);
        }
    }
}
