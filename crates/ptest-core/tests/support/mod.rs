//! A fake engine for the manager's own tests. An environment is its root and nothing else;
//! a command is a plain child process of the test, on the host, in the workspace, with the
//! environment's variables. The manager's records, events, limits on the population and
//! lifecycle are tested with it, apart from any level (ptest-local, ptest-docker and
//! ptest-kube test their engines in their own crates).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::Instant;

use async_trait::async_trait;
use ptest_core::*;

/// The fake engine; with `hang_in_create`, `create` makes the root, writes that file and
/// never returns: half-way through the manager's create, where a parent kills the process.
#[derive(Default)]
pub struct HostEngine {
    pub hang_in_create: Option<std::path::PathBuf>,
}

#[async_trait]
impl Engine for HostEngine {
    fn level(&self) -> IsolationLevel {
        IsolationLevel::Basic
    }
    fn capabilities(&self) -> Vec<Finding> {
        Vec::new()
    }
    fn check(&self, _spec: &EnvironmentSpec) -> Result<()> {
        Ok(())
    }
    async fn create(&self, env: &Environment, _ctx: &dyn EngineContext) -> Result<()> {
        let (root, id) = (env.root.clone(), env.id.clone());
        blocking(move || root::create(&root, &id)).await?;
        if let Some(reached) = &self.hang_in_create {
            std::fs::write(reached, "").unwrap();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
    async fn activate(&self, _env: &Environment, _ctx: &dyn EngineContext) -> Result<()> {
        Ok(())
    }
    async fn spawn(&self, env: &Environment, r: ExecRequest) -> Result<Box<dyn RunningProcess>> {
        if r.timeout.is_some() {
            return Err(Error::Usage("the host engine has no timeouts".into()));
        }
        let child = tokio::process::Command::new(&r.argv[0])
            .args(&r.argv[1..])
            .current_dir(env.workspace())
            .envs(env.command_env())
            .envs(r.env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::io("starting", &r.argv[0], e))?;
        let pid = child.id().unwrap();
        Ok(Box::new(HostProcess {
            ticks: liveness::start_ticks(pid).unwrap_or(0),
            pid,
            child,
            command: r.argv,
            started_at: jiff::Timestamp::now(),
            started: Instant::now(),
        }))
    }
    async fn kill(&self, _env: &Environment, p: &ProcessInfo) -> Result<()> {
        if let Some(pid) = rustix::process::Pid::from_raw(p.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        Ok(())
    }
    async fn validate(&self, _env: &Environment) -> Result<Vec<Finding>> {
        Ok(Vec::new())
    }
    async fn deactivate(&self, _env: &Environment) -> Result<()> {
        Ok(())
    }
    async fn cleanup(&self, env: &Environment) -> Result<()> {
        let (root, id) = (env.root.clone(), env.id.clone());
        blocking(move || root::remove(&root, &id)).await
    }
    async fn resource_usage(&self, _env: &Environment) -> Result<ResourceUsage> {
        Ok(ResourceUsage::default())
    }
}

/// A command of [`HostEngine`]: a child of the test process.
struct HostProcess {
    pid: u32,
    ticks: u64,
    child: tokio::process::Child,
    command: Vec<String>,
    started_at: jiff::Timestamp,
    started: Instant,
}

#[async_trait]
impl RunningProcess for HostProcess {
    fn pid(&self) -> (u32, u64) {
        (self.pid, self.ticks)
    }
    async fn wait(self: Box<Self>) -> Result<ProcessResult> {
        let output = self
            .child
            .wait_with_output()
            .await
            .map_err(|e| Error::io("waiting for", &self.command[0], e))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(ProcessResult {
            command: self.command,
            pid: Some(self.pid),
            exit_code: output.status.code(),
            signal: output.status.signal(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            stdout_truncated: false,
            stdout_file: None,
            stderr_truncated: false,
            stderr_file: None,
            started_at: self.started_at,
            ended_at: jiff::Timestamp::now(),
            duration: self.started.elapsed(),
            timed_out: false,
            oom_killed: false,
        })
    }
}
