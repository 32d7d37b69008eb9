//! A background process in a pod, as a supervisor runs one (`proc start`): its output goes to
//! the descriptors the supervisor's log writers read, as it comes, and its exit code comes
//! from the exec's status channel, against a local server speaking the API server's exec
//! protocol.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use ptest_core::{Engine, ExecRequest, OutputMode};
use serde_json::json;
use support::websocket::{V4, accept, active_env, engine, send};

/// A pipe: (read end, write end).
fn pipe() -> (std::io::PipeReader, OwnedFd) {
    let (read, write) = std::io::pipe().unwrap();
    (read, OwnedFd::from(write))
}

#[tokio::test]
async fn a_background_processs_output_reaches_its_log_pipes_and_its_exit_code_is_kept() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let engine = engine(&listener, home.path());
    let env = active_env(home.path());
    let status = json!({
        "metadata": {}, "status": "Failure",
        "message": "command terminated with non-zero exit code: exit code 7",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}
    });
    let server = tokio::spawn(async move {
        let (target, mut ws) = accept(&listener, V4).await;
        send(&mut ws, 1, b"serving on 8080\n").await;
        send(&mut ws, 2, b"warning: no config\n").await;
        send(&mut ws, 1, b"stopping\n").await;
        send(&mut ws, 3, &serde_json::to_vec(&status).unwrap()).await;
        ws.close(None).await.unwrap();
        target
    });
    let (mut out_log, out) = pipe();
    let (mut err_log, err) = pipe();
    let request = ExecRequest {
        output: OutputMode::Fds {
            stdout: Arc::new(out),
            stderr: Arc::new(err),
        },
        ..ExecRequest::new(["sh", "-c", "serve; exit 7"])
    };
    let process = engine.spawn(&env, request).await.unwrap();
    let result = process.wait().await.unwrap();
    assert_eq!(result.exit_code, Some(7));
    // The output went to the pipes, not into the result.
    assert!(
        result.stdout.is_empty() && result.stderr.is_empty(),
        "{result:?}"
    );
    let target = server.await.unwrap();
    assert!(target.contains("/exec?"), "{target}");
    // Both write ends are gone with the process: the logs read to their end.
    let mut stdout = String::new();
    out_log.read_to_string(&mut stdout).unwrap();
    let mut stderr = String::new();
    err_log.read_to_string(&mut stderr).unwrap();
    assert_eq!(stdout, "serving on 8080\nstopping\n");
    assert_eq!(stderr, "warning: no config\n");
}
