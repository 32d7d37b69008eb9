//! Readiness checks of a started background process (testcontainers' wait strategies): a
//! port accepting connections, a line in its output, an HTTP answer, a command succeeding.
//! Network checks run inside the environment's network namespace: a thread of their own
//! joins the namespace of the process (`setns` changes only the calling thread).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::Duration;

use ptest_core::{Environment, Error, ExecRequest, Manager, Readiness, Result, ServiceInfo};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The checks of a [`Readiness`], parsed once.
pub(crate) struct Checks {
    port: Option<u16>,
    log: Option<regex::Regex>,
    http: Option<(String, u16, String, Option<u16>)>,
    cmd: Option<String>,
}

impl Checks {
    /// Parses `ready` against `env` (port names are its leases).
    pub(crate) fn parse(env: &Environment, ready: &Readiness) -> Result<Self> {
        let port = ready
            .port
            .as_deref()
            .map(|p| match p.parse::<u16>() {
                Ok(n) => Ok(n),
                Err(_) => env
                    .ports
                    .iter()
                    .find(|(name, _)| name.as_str() == p)
                    .map(|(_, port)| *port)
                    .ok_or_else(|| {
                        Error::Usage(format!(
                            "--ready-port {p:?}: not a port number nor a port of {}",
                            env.name
                        ))
                    }),
            })
            .transpose()?;
        let log = ready
            .log
            .as_deref()
            .map(|r| {
                regex::Regex::new(r).map_err(|e| Error::Usage(format!("--ready-log {r:?}: {e}")))
            })
            .transpose()?;
        let http = ready.http.as_deref().map(parse_http).transpose()?;
        Ok(Self {
            port,
            log,
            http,
            cmd: ready.cmd.clone(),
        })
    }

    /// Whether every check passes now; `Err` only for ptest's own failures.
    pub(crate) async fn pass(
        &self,
        manager: &Manager,
        env: &Environment,
        service: &ServiceInfo,
    ) -> Result<bool> {
        if let Some(re) = &self.log {
            let mut found = false;
            for log in [&service.stdout_log, &service.stderr_log] {
                // A log replaced by a link is refused, never matched: no oracle on what it
                // points to.
                let text = super::logs::tail(&env.root, log, None)?;
                found = found || text.lines().any(|line| re.is_match(line));
            }
            if !found {
                return Ok(false);
            }
        }
        let pid = service.process.pid;
        if let Some(port) = self.port
            && !in_netns(pid, move || {
                TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), CONNECT_TIMEOUT).is_ok()
            })
            .await
        {
            return Ok(false);
        }
        if let Some((host, port, path, status)) = self.http.clone()
            && !in_netns(pid, move || http_ok(&host, port, &path, status)).await
        {
            return Ok(false);
        }
        if let Some(cmd) = &self.cmd {
            let request =
                ExecRequest::new(["sh", "-c", cmd.as_str()]).timeout(Duration::from_secs(10));
            if !manager.execute_command(env, request).await?.success() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// `http://HOST[:PORT][/PATH][=STATUS]`.
fn parse_http(spec: &str) -> Result<(String, u16, String, Option<u16>)> {
    let bad = |why: &str| Error::Usage(format!("--ready-http {spec:?}: {why}"));
    let (url, status) = match spec.rsplit_once('=') {
        Some((url, s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            (url, Some(s.parse().map_err(|_| bad("bad status"))?))
        }
        _ => (spec, None),
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs are checked"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((host.to_owned(), port, path.to_owned(), status))
}

/// One GET; true when the status is `want` (or any 2xx without one).
fn http_ok(host: &str, port: u16, path: &str, want: Option<u16>) -> bool {
    let Some(addr) = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match stream.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..got]);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    match (status, want) {
        (Some(s), Some(w)) => s == w,
        (Some(s), None) => (200..300).contains(&s),
        (None, _) => false,
    }
}

/// Runs `f` on a thread inside the network namespace of `pid` (when it differs from ours).
async fn in_netns(pid: u32, f: impl FnOnce() -> bool + Send + 'static) -> bool {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let ns = format!("/proc/{pid}/ns/net");
        let differs = std::fs::metadata(&ns)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            != std::fs::metadata("/proc/self/ns/net")
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        if pid != 0 && differs {
            let Ok(file) = std::fs::File::open(&ns) else {
                let _ = tx.send(false);
                return;
            };
            // SAFETY: setns takes a valid open namespace fd and a namespace type; it changes
            // only this thread, which ends when `f` returns.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let _ = tx.send(false);
                return;
            }
        }
        let _ = tx.send(f());
    });
    rx.await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_specs_parse() {
        assert_eq!(
            parse_http("http://localhost:8080/health=204").unwrap(),
            ("localhost".into(), 8080, "/health".into(), Some(204))
        );
        assert_eq!(
            parse_http("http://127.0.0.1/x?a=b").unwrap(),
            ("127.0.0.1".into(), 80, "/x?a=b".into(), None)
        );
        assert!(parse_http("https://x").is_err());
    }
}
