//! Script hooks (`[[hooks]]` in the configuration): a shell command run for each event of the
//! kinds it names, by whichever ptest process records the event (the CLI, a supervisor, a
//! program using the library), synchronously but never longer than its timeout. The event is
//! the command's standard input as JSON and in `PTEST_EVENT_*` variables. A hook that fails,
//! times out or cannot start is recorded as `hook_failed`; hooks never run for that event, so
//! a failing hook cannot feed itself.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::model::{Event, IsolationEvent};

/// One `[[hooks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// The events it runs for.
    pub on: Vec<IsolationEvent>,
    /// Only events of the environment with this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Only events of environments carrying this label, `KEY=VALUE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The command, run by `sh -c`.
    pub run: String,
    /// How long it may run; it is killed (its process group) after that.
    #[serde(default = "default_timeout", with = "duration::text")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl HookConfig {
    /// Whether the hook runs for `event` of an environment with `labels` (looked up only
    /// when the hook filters on a label).
    fn wants(&self, event: &Event, labels: impl FnOnce() -> Vec<(String, String)>) -> bool {
        if event.event == IsolationEvent::HookFailed || !self.on.contains(&event.event) {
            return false;
        }
        if let Some(env) = &self.env
            && event.env_name.as_deref() != Some(env.as_str())
        {
            return false;
        }
        match self.label.as_deref().and_then(|l| l.split_once('=')) {
            Some((key, value)) => labels().iter().any(|(k, v)| k == key && v == value),
            None => self.label.is_none(),
        }
    }
}

/// Runs every hook of `hooks` that wants `event`; returns, for each that failed, its command
/// and why (for the caller to record as `hook_failed`).
pub(crate) fn run(
    hooks: &[HookConfig],
    event: &Event,
    labels: impl Fn() -> Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for hook in hooks.iter().filter(|h| h.wants(event, &labels)) {
        if let Err(why) = run_one(hook, event) {
            failed.push((hook.run.clone(), why));
        }
    }
    failed
}

fn run_one(hook: &HookConfig, event: &Event) -> Result<(), String> {
    let json = serde_json::to_string(event).expect("events serialize");
    let mut command = Command::new("sh");
    command
        .args(["-c", &hook.run])
        .env("PTEST_EVENT", event.event.as_str())
        .env("PTEST_EVENT_ID", event.id.to_string())
        .env("PTEST_EVENT_TIME", event.time.to_string())
        .env("PTEST_EVENT_ENV", event.env_name.as_deref().unwrap_or(""))
        .env("PTEST_EVENT_ENV_ID", event.env_id.as_deref().unwrap_or(""))
        .env("PTEST_EVENT_DETAILS", event.details.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = command.spawn().map_err(|e| format!("cannot start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input is not a failure.
        let _ = stdin.write_all(json.as_bytes());
    }
    let deadline = Instant::now() + hook.timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("it ended with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                // The whole group: whatever the hook started goes with it.
                let _ = rustix::process::kill_process_group(
                    rustix::process::Pid::from_child(&child),
                    rustix::process::Signal::KILL,
                );
                let _ = child.wait();
                return Err(format!(
                    "it ran past its timeout of {} and was killed",
                    humantime::format_duration(hook.timeout)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    }
}
