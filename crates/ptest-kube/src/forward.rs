//! Port-forwards: `PTEST_PORT_<NAME>` reached from this host, as it is at the docker level.
//!
//! Each port `P` leased to an environment is a container port `P` of its pod ([`crate::pod`]);
//! the engine listens on `127.0.0.1:P` of this host and carries each connection it accepts to
//! port `P` of the pod through a portforward subresource stream of its own (what `kubectl
//! port-forward` does), bytes both ways until either side closes.
//!
//! There is no ptest daemon: a forward is kept by the process that activated the environment
//! (`ptest run` for its suites' environments, a program using the library or the Python
//! package), from activation until the environment is stopped or removed or that process
//! ends. A lease made later (`Manager::allocate_port`) is forwarded by that same process. An
//! environment made by `ptest env create` has no forward once that command has returned.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use ptest_core::{Error, IsolationLevel, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::api_error::chain;
use crate::connect::Cluster;

/// The forwards this process keeps, by environment id.
#[derive(Default)]
pub(crate) struct Forwards(Mutex<HashMap<String, Held>>);

/// The forwards of one environment, and where its pod is.
struct Held {
    api: Api<Pod>,
    pod: String,
    ports: Vec<Listening>,
}

/// One port listened on; the listener and its connections end when this is dropped.
struct Listening {
    port: u16,
    task: JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Forwards {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forwards each of `ports` from this host to `pod` (replacing what this process forwarded
    /// for `env` before). Must be called within a tokio runtime.
    pub(crate) fn start(
        &self,
        env: &str,
        cluster: &Cluster,
        namespace: &str,
        pod: &str,
        ports: impl IntoIterator<Item = u16>,
    ) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
        let mut listening = Vec::new();
        for port in ports {
            listening.push(listen(&api, pod, port)?);
        }
        self.held().insert(
            env.to_owned(),
            Held {
                api,
                pod: pod.to_owned(),
                ports: listening,
            },
        );
        Ok(())
    }

    /// Forwards `port` too, where this process forwards `env`'s ports; whether it does.
    pub(crate) fn add(&self, env: &str, port: u16) -> Result<bool> {
        let mut held = self.held();
        let Some(held) = held.get_mut(env) else {
            return Ok(false);
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(forward_error(
                port,
                "no tokio runtime in this thread to keep the forward in",
            ));
        }
        let listening = listen(&held.api, &held.pod, port)?;
        held.ports.push(listening);
        Ok(true)
    }

    /// Stops forwarding `port` of `env`.
    pub(crate) fn remove(&self, env: &str, port: u16) {
        if let Some(held) = self.held().get_mut(env) {
            held.ports.retain(|l| l.port != port);
        }
    }

    /// Stops every forward of `env`.
    pub(crate) fn stop(&self, env: &str) {
        self.held().remove(env);
    }
}

fn forward_error(port: u16, why: impl std::fmt::Display) -> Error {
    Error::Engine {
        level: IsolationLevel::Kubernetes,
        action: "forward a port",
        source: format!("127.0.0.1:{port}: {why}").into(),
    }
}

/// Listens on `127.0.0.1:port` and forwards what connects there to `port` of `pod`.
fn listen(api: &Api<Pod>, pod: &str, port: u16) -> Result<Listening> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(TcpListener::from_std)
        .map_err(|e| forward_error(port, e))?;
    let task = tokio::spawn(serve(listener, api.clone(), pod.to_owned(), port));
    Ok(Listening { port, task })
}

/// Accepts connections on `listener` and relays each to `port` of `pod`, until aborted
/// (which ends the relays too).
async fn serve(listener: TcpListener, api: Api<Pod>, pod: String, port: u16) {
    let mut relays = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((conn, _)) => {
                    let (api, pod) = (api.clone(), pod.clone());
                    relays.spawn(async move {
                        if let Err(e) = relay(conn, &api, &pod, port).await {
                            tracing::warn!("port-forward to {pod}:{port}: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("port-forward 127.0.0.1:{port}: accepting: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = relays.join_next(), if !relays.is_empty() => {}
        }
    }
}

/// Carries `conn` to `port` of `pod` through a portforward stream of its own, bytes both ways,
/// until either side closes or the API server reports the port unusable.
pub async fn relay(mut conn: TcpStream, api: &Api<Pod>, pod: &str, port: u16) -> Result<()> {
    let mut forwarder = api
        .portforward(pod, &[port])
        .await
        .map_err(|e| forward_error(port, format!("{pod}: {}", chain(&e))))?;
    let mut upstream = forwarder
        .take_stream(port)
        .expect("the stream of the one port asked for");
    let error = forwarder
        .take_error(port)
        .expect("the errors of the one port asked for");
    let outcome = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut conn, &mut upstream) => {
            copied.map(drop).map_err(|e| forward_error(port, format!("{pod}: {e}")))
        }
        Some(said) = error => Err(forward_error(port, format!("{pod}: {said}"))),
    };
    drop(upstream);
    let _ = forwarder.join().await;
    outcome
}
