//! Running one command in an environment's pod through the exec subresource, and killing its
//! process tree.
//!
//! The API server streams the command's stdout and stderr on channels of their own (kept
//! apart) and, when it ends, a Status on the error channel: `Success`, or `Failure` with reason
//! `NonZeroExitCode` and the code as a cause ([`exit_code`]). A command killed by signal N
//! ends with 128+N, as the runtime reports it.
//!
//! Kubernetes has no call that kills an exec'd command, and closing the stream does not end
//! it. So every command runs under a small wrapper ([`WRAPPER`]) that writes its pid to
//! `/ptest/run/exec-<token>.pid` and then becomes the command (`exec`), in its working
//! directory and with the environment's variables as they are now (a port leased since the
//! pod was made included) and the request's. `kill` runs [`KILL_TREE`] in the pod, which stops
//! and kills that process, its process group and every descendant (found through `/proc`,
//! which the pod's shared PID namespace shows). A command has no pid on ptest's host: ptest records
//! pid 0, and the token (random, 63 bits) in the start time's place, which is all a later
//! `kill` needs. The pid file is in the environment's own volume: a command can change it,
//! and with it only which of its own pod's processes gets killed. A request's variable whose
//! value is a path beneath the environment's root on this host is given as the same path
//! beneath the root in the pod ([`in_pod`]).

use std::path::PathBuf;
use std::time::Instant;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Api;
use kube::api::{AttachParams, AttachedProcess};
use ptest_core::captured::BoundedOutput;
use ptest_core::{
    Environment, Error, ExecRequest, IsolationLevel, OutputMode, OutputSink, ProcessInfo,
    ProcessResult, Result, RunningProcess, pass_on,
};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::api_error::{Call, chain};
use crate::connect::Cluster;
use crate::pod::{CONTAINER, POD_ROOT, POD_WORKSPACE, command_env};

/// Runs as `sh -c WRAPPER sh PIDFILE CWD VAR=VALUE... COMMAND ARG...`: records its pid, moves
/// to the working directory and becomes the command with its variables.
pub const WRAPPER: &str =
    r#"mkdir -p "${1%/*}" && echo $$ > "$1" && cd "$2" && shift 2 && exec env "$@""#;

/// Runs as `sh -c KILL_TREE sh PIDFILE`: kills the command whose pid the wrapper wrote there.
pub const KILL_TREE: &str = include_str!("kill_tree.sh");

const EXEC: Call = Call {
    action: "run a command",
    verb: "create",
    resource: "pods/exec",
};

/// Where the wrapper of the command with `token` writes its pid.
pub fn pid_file(token: u64) -> String {
    format!("{POD_ROOT}/run/exec-{token:016x}.pid")
}

/// The argv the pod runs for `request` under the wrapper, with `vars` set: the
/// environment's (its ports leased since the pod was made among them) and the request's.
pub fn wrapped_argv(vars: &[(String, String)], request: &ExecRequest, token: u64) -> Vec<String> {
    let cwd = match &request.cwd {
        Some(rel) => format!("{POD_ROOT}/{}", rel.display()),
        None => POD_WORKSPACE.to_owned(),
    };
    ["sh", "-c", WRAPPER, "sh"]
        .into_iter()
        .map(str::to_owned)
        .chain([pid_file(token), cwd])
        .chain(vars.iter().map(|(k, v)| format!("{k}={v}")))
        .chain(request.argv.iter().cloned())
        .collect()
}

/// The exit code a finished exec's Status (from the status channel) reports.
pub fn exit_code(status: &Status) -> Result<i32> {
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    let code = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter().flatten())
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.parse().ok());
    match (status.reason.as_deref(), code) {
        (Some("NonZeroExitCode"), Some(code)) => Ok(code),
        _ => Err(Error::Engine {
            level: IsolationLevel::Kubernetes,
            action: "run a command",
            source: format!(
                "the exec ended with {} {}: {}",
                status.code.unwrap_or_default(),
                status.reason.as_deref().unwrap_or("no reason"),
                status.message.as_deref().unwrap_or("no message")
            )
            .into(),
        }),
    }
}

/// A command started by [`spawn`].
pub(crate) struct PodProcess {
    attached: AttachedProcess,
    token: u64,
    mode: OutputMode,
    command: Vec<String>,
    root: PathBuf,
    started_at: Timestamp,
    started: Instant,
}

/// Starts `request` in `pod`.
pub(crate) async fn spawn(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    env: &Environment,
    request: ExecRequest,
) -> Result<PodProcess> {
    if request.argv.is_empty() {
        return Err(Error::Usage("no command given".into()));
    }
    let token = token()?;
    let vars: Vec<(String, String)> = command_env(env)
        .into_iter()
        .chain(
            request
                .env
                .iter()
                .map(|(k, v)| (k.clone(), in_pod(&env.root, v))),
        )
        .collect();
    let (started_at, started) = (Timestamp::now(), Instant::now());
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let params = AttachParams::default()
        .container(CONTAINER)
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let attached = api
        .exec(pod, wrapped_argv(&vars, &request, token), &params)
        .await
        .map_err(|e| exec_error(e, namespace, pod, cluster))?;
    Ok(PodProcess {
        attached,
        token,
        mode: request.output,
        command: request.argv,
        root: env.root.clone(),
        started_at,
        started,
    })
}

/// A variable's `value` as the pod sees it: a path beneath the environment's root on this
/// host (`ptest run`'s `PTEST_PROJECT_DIR`) names the same file beneath [`POD_ROOT`], where the
/// root's volume is; any other value is left as it is.
pub fn in_pod(root: &std::path::Path, value: &str) -> String {
    match std::path::Path::new(value).strip_prefix(root) {
        Ok(rel) if root.is_absolute() && rel.as_os_str().is_empty() => POD_ROOT.to_owned(),
        Ok(rel) if root.is_absolute() => format!("{POD_ROOT}/{}", rel.display()),
        _ => value.to_owned(),
    }
}

/// A fresh token: 63 random bits (it is stored as a start time, a signed 64-bit integer).
fn token() -> Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::Engine {
        level: IsolationLevel::Kubernetes,
        action: "run a command",
        source: format!("no random source: {e}").into(),
    })?;
    Ok(u64::from_le_bytes(bytes) >> 1)
}

/// An exec that could not start: kube reports the upgrade's refusal by status code only.
pub(crate) fn exec_error(e: kube::Error, namespace: &str, pod: &str, cluster: &Cluster) -> Error {
    use kube::client::UpgradeConnectionError::ProtocolSwitch;
    match &e {
        kube::Error::UpgradeConnection(ProtocolSwitch(code)) if code.as_u16() == 403 => {
            Error::Usage(format!(
                "forbidden by RBAC: ptest may not {} {} in namespace {namespace:?} (context \
                 {}); ask for a Role that grants it",
                EXEC.verb, EXEC.resource, cluster.context
            ))
        }
        kube::Error::UpgradeConnection(ProtocolSwitch(code)) if code.as_u16() == 404 => {
            Error::Missing(format!(
                "the environment's pod {pod} is gone from namespace {namespace:?}; remove the \
                 environment (`ptest env rm`)"
            ))
        }
        kube::Error::UpgradeConnection(_) => Error::Engine {
            level: IsolationLevel::Kubernetes,
            action: EXEC.action,
            source: format!("{pod}: {}", chain(&e)).into(),
        },
        _ => EXEC.error(e, namespace, cluster),
    }
}

/// Where one stream goes: captured, or passed on as it comes.
enum Destination {
    Capture(BoundedOutput),
    Pass(OutputSink),
}

impl Destination {
    async fn take(&mut self, bytes: &[u8]) {
        match self {
            Destination::Capture(out) => out.push(bytes),
            Destination::Pass(sink) => pass_on(sink, bytes).await,
        }
    }
}

async fn pump(reader: Option<impl AsyncRead + Unpin>, to: &mut Destination) -> Result<()> {
    let Some(mut reader) = reader else {
        return Ok(());
    };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = reader.read(&mut buf).await.map_err(|e| Error::Engine {
            level: IsolationLevel::Kubernetes,
            action: "read a command's output",
            source: e.into(),
        })?;
        if n == 0 {
            return Ok(());
        }
        to.take(&buf[..n]).await;
    }
}

#[async_trait]
impl RunningProcess for PodProcess {
    fn pid(&self) -> (u32, u64) {
        (0, self.token)
    }

    async fn wait(mut self: Box<Self>) -> Result<ProcessResult> {
        let name = |stream: &str| format!("exec-{:016x}.{stream}.log", self.token);
        let sinks = self.mode.sinks().map_err(|e| Error::Engine {
            level: IsolationLevel::Kubernetes,
            action: "pass a command's output on",
            source: e.into(),
        })?;
        let (mut out, mut err) = match sinks {
            Some((out, err)) => (Destination::Pass(out), Destination::Pass(err)),
            None => (
                Destination::Capture(BoundedOutput::new(&self.root, name("stdout"))),
                Destination::Capture(BoundedOutput::new(&self.root, name("stderr"))),
            ),
        };
        let status = self.attached.take_status();
        let (stdout, stderr) = (self.attached.stdout(), self.attached.stderr());
        let (a, b) = tokio::join!(pump(stdout, &mut out), pump(stderr, &mut err));
        a?;
        b?;
        let status = match status {
            Some(status) => status.await,
            None => None,
        };
        let ended = Instant::now();
        let _ = self.attached.join().await;
        let status = status.ok_or_else(|| Error::Engine {
            level: IsolationLevel::Kubernetes,
            action: "read a command's exit status",
            source: "the exec stream ended without the command's status".into(),
        })?;
        let exit_code = exit_code(&status)?;
        let captured = |d: Destination| match d {
            Destination::Capture(c) => c.finish(),
            Destination::Pass(_) => ptest_core::captured::Captured {
                text: String::new(),
                truncated: false,
                file: None,
            },
        };
        let (stdout, stderr) = (captured(out), captured(err));
        // The exec's Status says nothing of an OOM kill; it shows as exit code 137.
        Ok(ProcessResult {
            exit_code: Some(exit_code),
            ..ProcessResult::captured(
                self.command,
                self.started_at,
                ended - self.started,
                stdout,
                stderr,
            )
        })
    }
}

/// Kills `process` (its token in `start_ticks`) in `pod` with its whole tree.
pub(crate) async fn kill(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    process: &ProcessInfo,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        KILL_TREE.to_owned(),
        "sh".to_owned(),
        pid_file(process.start_ticks),
    ];
    let params = AttachParams::default()
        .container(CONTAINER)
        .stdin(false)
        .stdout(false)
        .stderr(true);
    let mut attached = api
        .exec(pod, argv, &params)
        .await
        .map_err(|e| exec_error(e, namespace, pod, cluster))?;
    let status = attached.take_status();
    // Read what the script says (errors only), so that its stream never fills up.
    let mut said = String::new();
    if let Some(mut stderr) = attached.stderr() {
        let _ = stderr.read_to_string(&mut said).await;
    }
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    let _ = attached.join().await;
    match status {
        Some(s) => exit_code(&s).and_then(|code| match code {
            0 => Ok(()),
            code => Err(Error::Engine {
                level: IsolationLevel::Kubernetes,
                action: "kill a command",
                source: format!(
                    "{pod}: the kill script ended with exit code {code}: {}",
                    said.trim()
                )
                .into(),
            }),
        }),
        None => Err(Error::Engine {
            level: IsolationLevel::Kubernetes,
            action: "kill a command",
            source: format!("{pod}: the exec stream ended without a status").into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn status(json: serde_json::Value) -> Status {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn success_is_exit_code_zero() {
        let s = status(serde_json::json!({"metadata": {}, "status": "Success"}));
        assert_eq!(exit_code(&s).unwrap(), 0);
    }

    #[test]
    fn a_non_zero_exit_code_is_read_from_the_status_causes() {
        // As the kubelet sends it on channel 3 when `sh -c 'exit 3'` ends.
        let s = status(serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}
        }));
        assert_eq!(exit_code(&s).unwrap(), 3);
    }

    #[test]
    fn a_failure_without_an_exit_code_is_an_error_with_the_servers_words() {
        let s = status(serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": "Internal error occurred: error executing command in container: container not running",
            "reason": "InternalError",
            "code": 500
        }));
        let e = exit_code(&s).unwrap_err().to_string();
        assert!(e.contains("container not running"), "{e}");
    }

    /// Runs [`KILL_TREE`] here, on this host's processes, as it runs in a pod.
    #[test]
    fn kill_tree_kills_the_command_its_group_and_descendants_that_left_it() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("exec.pid");
        let pids = dir.path().join("pids");
        // The wrapper's way: record the pid, then become the command. The command starts
        // a child, a grandchild in a session of its own, and waits.
        let script = format!(
            "echo $$ > {pf}; exec sh -c 'sleep 300 & (setsid sleep 300 & echo $! > {p}; wait) & wait'",
            pf = pid_file.display(),
            p = pids.display()
        );
        let mut command = std::process::Command::new("setsid")
            .args(["sh", "-c", &script])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !(pids.exists() && pid_file.exists()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the tree never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let escaped: i32 = std::fs::read_to_string(&pids)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let status = std::process::Command::new("sh")
            .args(["-c", KILL_TREE, "sh"])
            .arg(&pid_file)
            .status()
            .unwrap();
        assert!(status.success());
        let ended = command.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&ended),
            Some(9)
        );
        // The grandchild that left the group is gone too (a zombie at most, until reaped).
        std::thread::sleep(std::time::Duration::from_millis(100));
        let state = std::fs::read_to_string(format!("/proc/{escaped}/stat")).unwrap_or_default();
        assert!(state.is_empty() || state.contains(") Z "), "{state}");
        assert!(!pid_file.exists());
    }

    #[test]
    fn a_value_naming_a_path_beneath_the_root_names_it_in_the_pod() {
        let root = std::path::Path::new("/h/envs/0a1b");
        assert_eq!(in_pod(root, "/h/envs/0a1b/workspace"), "/ptest/workspace");
        assert_eq!(in_pod(root, "/h/envs/0a1b"), "/ptest");
        assert_eq!(
            in_pod(root, "/h/envs/0a1bc/workspace"),
            "/h/envs/0a1bc/workspace"
        );
        assert_eq!(in_pod(root, "workspace"), "workspace");
        assert_eq!(in_pod(root, "1 2"), "1 2");
    }

    #[test]
    fn the_wrapper_gets_cwd_variables_and_command_in_order() {
        let mut request = ExecRequest::new(["python", "-c", "print(1)"]);
        request.cwd = Some("workspace/sub".into());
        let vars = [
            ("PTEST_PORT_HTTP".to_owned(), "20080".to_owned()),
            ("A".to_owned(), "1 2".to_owned()),
        ];
        let argv = wrapped_argv(&vars, &request, 0xab);
        assert_eq!(
            argv,
            [
                "sh",
                "-c",
                WRAPPER,
                "sh",
                "/ptest/run/exec-00000000000000ab.pid",
                "/ptest/workspace/sub",
                "PTEST_PORT_HTTP=20080",
                "A=1 2",
                "python",
                "-c",
                "print(1)"
            ]
        );
    }
}
