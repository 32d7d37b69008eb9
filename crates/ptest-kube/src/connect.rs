//! Reaching a cluster: the kubeconfig (`KUBECONFIG`, else `~/.kube/config`) with the context
//! asked for (else its current one), or, with no kubeconfig and no context asked for, the
//! service account of the pod ptest runs in (in-cluster). A client per context is made on
//! first use and kept; constructing the engine never touches the cluster.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use ptest_core::{Error, IsolationLevel, Result};
use tokio::sync::Mutex;

/// A client and what it talks to.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: Client,
    /// The API server's URL, for messages.
    pub server: String,
    /// The kubeconfig context, or `in-cluster`.
    pub context: String,
}

impl Cluster {
    /// A cluster reached through `client` (kube's own, or a test's mock service behind
    /// [`kube::Client::new`]), named `server` and `context` in messages.
    pub fn new(client: Client, server: &str, context: &str) -> Self {
        Self {
            client,
            server: server.to_owned(),
            context: context.to_owned(),
        }
    }

    /// The namespace of `asked`, else the context's (else `default`).
    pub fn namespace(&self, asked: Option<&str>) -> String {
        asked
            .map(str::to_owned)
            .unwrap_or_else(|| self.client.default_namespace().to_owned())
    }
}

/// Where clients come from.
pub(crate) enum Clusters {
    /// From the kubeconfig or in-cluster config, one per context asked for.
    Config(Mutex<HashMap<Option<String>, Cluster>>),
    /// Always this one (tests, and programs that made their own client).
    Fixed(Cluster),
}

impl Clusters {
    /// The cluster of `context` (`None`: the current one), connecting first if needed. A
    /// failed attempt is not kept: the next call tries again.
    pub(crate) async fn get(&self, context: Option<&str>) -> Result<Cluster> {
        match self {
            Clusters::Fixed(cluster) => Ok(cluster.clone()),
            Clusters::Config(cache) => {
                let mut cache = cache.lock().await;
                let key = context.map(str::to_owned);
                if let Some(cluster) = cache.get(&key) {
                    return Ok(cluster.clone());
                }
                let cluster = connect(context).await?;
                cache.insert(key, cluster.clone());
                Ok(cluster)
            }
        }
    }
}

/// Where a client config is looked for: what the environment says, read once, so that a
/// test can say otherwise.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// `KUBECONFIG`: kubeconfig files, `:`-separated, merged as kubectl does.
    pub kubeconfig: Option<std::ffi::OsString>,
    /// The home directory (for `~/.kube/config`).
    pub home: Option<PathBuf>,
    /// `KUBERNETES_SERVICE_HOST` is set (ptest runs in a pod).
    pub service_host: bool,
    /// The pod's service account token is mounted.
    pub token: bool,
}

impl Lookup {
    /// What this process's environment says.
    pub fn from_env() -> Self {
        Self {
            kubeconfig: std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()),
            home: std::env::home_dir(),
            service_host: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
            token: std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token")
                .exists(),
        }
    }

    /// The kubeconfig files looked at: those `KUBECONFIG` lists, else `~/.kube/config`.
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.kubeconfig {
            Some(value) => std::env::split_paths(value)
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
            None => self
                .home
                .iter()
                .map(|h| h.join(".kube").join("config"))
                .collect(),
        }
    }

    fn paths_text(&self) -> String {
        let paths: Vec<String> = self
            .paths()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        paths.join(", ")
    }

    /// The client config of `context`, read from the kubeconfig or in-cluster, and the
    /// context's name; nothing is asked of the cluster.
    pub async fn config(&self, context: Option<&str>) -> Result<(kube::Config, String)> {
        let paths = self.paths();
        let kubeconfig_exists = paths.iter().any(|p| p.exists());
        if !kubeconfig_exists && context.is_none() && self.service_host && self.token {
            let config = kube::Config::incluster().map_err(|e| {
                Error::Usage(format!(
                    "the in-cluster configuration (this pod's service account) cannot be \
                     read: {e}"
                ))
            })?;
            return Ok((config, "in-cluster".to_owned()));
        }
        if !kubeconfig_exists {
            return Err(Error::Usage(format!(
                "no kubeconfig: looked for {} ({}) and for an in-cluster service account \
                 ({}); set KUBECONFIG to a kubeconfig file",
                if paths.is_empty() {
                    "~/.kube/config".to_owned()
                } else {
                    self.paths_text()
                },
                if self.kubeconfig.is_some() {
                    "the files KUBECONFIG names; none exists"
                } else {
                    "KUBECONFIG is unset; it does not exist"
                },
                match (self.service_host, self.token) {
                    (false, _) => "KUBERNETES_SERVICE_HOST is unset",
                    (true, false) => "KUBERNETES_SERVICE_HOST is set, but no token is mounted",
                    (true, true) => "not used when a context is asked for",
                },
            )));
        }
        let kubeconfig = paths
            .iter()
            .filter(|p| p.exists() || self.kubeconfig.is_none())
            .try_fold(Kubeconfig::default(), |merged, p| {
                Kubeconfig::read_from(p).and_then(|c| merged.merge(c))
            })
            .map_err(|e| self.kubeconfig_error(e, context))?;
        let contexts: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
        let name = context
            .map(str::to_owned)
            .or_else(|| kubeconfig.current_context.clone())
            .unwrap_or_default();
        let options = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..KubeConfigOptions::default()
        };
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| match e {
                KubeconfigError::LoadContext(_) | KubeconfigError::CurrentContextNotSet => {
                    Error::Usage(format!(
                        "{}; the kubeconfig ({}) has these: {}",
                        match context {
                            Some(c) => format!("no context named {c:?}"),
                            None => "no current context is set (give one with --context)".into(),
                        },
                        self.paths_text(),
                        if contexts.is_empty() {
                            "none".to_owned()
                        } else {
                            contexts.join(", ")
                        }
                    ))
                }
                e => self.kubeconfig_error(e, context),
            })?;
        // An unreachable server should be said within seconds, not kube's 30.
        config.connect_timeout = Some(Duration::from_secs(10));
        Ok((config, name))
    }

    fn kubeconfig_error(&self, e: KubeconfigError, context: Option<&str>) -> Error {
        Error::Usage(format!(
            "the kubeconfig ({}) cannot be used{}: {e}",
            self.paths_text(),
            context
                .map(|c| format!(" with context {c:?}"))
                .unwrap_or_default()
        ))
    }
}

/// Connects (makes the client; no request yet) to the cluster of `context`.
pub async fn connect(context: Option<&str>) -> Result<Cluster> {
    let (config, context) = Lookup::from_env().config(context).await?;
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| Error::LevelUnavailable {
        level: IsolationLevel::Kubernetes,
        reason: format!("cannot make a client for {server} (context {context}): {e}"),
    })?;
    Ok(Cluster {
        client,
        server,
        context,
    })
}
