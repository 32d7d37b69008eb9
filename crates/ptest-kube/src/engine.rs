//! [`KubernetesEngine`]: the `kubernetes` level's [`Engine`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use ptest_core::config::LevelDefaults;
use ptest_core::{
    Engine, EngineContext, Environment, EnvironmentSpec, Error, ExecRequest, Finding,
    IsolationEvent, IsolationLevel, ProcessInfo, Removal, ResourceUsage, Result, RunningProcess,
    blocking, root,
};

use crate::api_error::{Call, is_not_found};
use crate::connect::{Cluster, Clusters, Lookup};
use crate::forward::Forwards;
use crate::gc::{self, Target, Targets};
use crate::labels::object_name;
use crate::manifest::{self, Manifests};
use crate::ready::{self, Verdict};
use crate::{copy, doctor, exec, metrics, policy};

/// How long `env create` waits for a pod to be Ready by default: room for an image pull.
pub const READY_TIMEOUT: Duration = Duration::from_secs(300);

const CREATE_POD: Call = Call {
    action: "create the pod",
    verb: "create",
    resource: "pods",
};
const CREATE_POLICY: Call = Call {
    action: "create the network policy",
    verb: "create",
    resource: "networkpolicies",
};
const DELETE_POD: Call = Call {
    action: "delete the pod",
    verb: "delete",
    resource: "pods",
};
const DELETE_POLICY: Call = Call {
    action: "delete the network policy",
    verb: "delete",
    resource: "networkpolicies",
};
const GET_POD: Call = Call {
    action: "read the pod",
    verb: "get",
    resource: "pods",
};

/// Environments as pods on a Kubernetes cluster, one per environment.
///
/// Built with the `PTEST_HOME` path it serves: its hash labels every object, so two homes on
/// one cluster never touch each other's. The cluster is reached on first use.
pub struct KubernetesEngine {
    home: PathBuf,
    home_hash: String,
    clusters: Clusters,
    ready_timeout: Duration,
    forwards: Forwards,
}

impl KubernetesEngine {
    /// The engine for the home at `home`, reaching clusters through the kubeconfig (or
    /// in-cluster). Never fails: nothing is read before it is needed.
    pub fn new(home: &Path) -> Self {
        Self::with_clusters(home, Clusters::Config(Default::default()))
    }

    /// The engine for the home at `home`, reaching `cluster` whatever context a spec names (a
    /// program with a client of its own; tests, with kube's mock service).
    pub fn with_cluster(home: &Path, cluster: Cluster) -> Self {
        Self::with_clusters(home, Clusters::Fixed(cluster))
    }

    fn with_clusters(home: &Path, clusters: Clusters) -> Self {
        let home = std::path::absolute(home).unwrap_or_else(|_| home.to_owned());
        Self {
            home_hash: ptest_core::Home::at(&home).hash(),
            home,
            clusters,
            ready_timeout: READY_TIMEOUT,
            forwards: Forwards::default(),
        }
    }

    /// Waits this long for a pod to be Ready (default [`READY_TIMEOUT`]).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// The hash of the home, as found on the `ptest.home` label of its objects.
    pub fn home_hash(&self) -> &str {
        &self.home_hash
    }

    /// What `env create --dry-run` prints for `spec`: the manifests of the environment it
    /// would make (the level's `defaults` applied), as YAML. Nothing is recorded and no
    /// cluster is asked; the namespace is the spec's, else the kubeconfig context's (read from
    /// the file), else `default`.
    pub async fn dry_run(&self, spec: EnvironmentSpec, defaults: &LevelDefaults) -> Result<String> {
        self.check(&spec)?;
        let image = manifest::image(&spec)?.to_owned();
        let asked = spec.kubernetes.as_ref().and_then(|k| k.namespace.clone());
        let namespace = match asked {
            Some(ns) => ns,
            None => {
                let context = spec.kubernetes.as_ref().and_then(|k| k.context.as_deref());
                match Lookup::from_env().config(context).await {
                    Ok((config, _)) => config.default_namespace,
                    Err(_) if context.is_none() => "default".to_owned(),
                    Err(e) => return Err(e),
                }
            }
        };
        let env = manifest::planned(spec, defaults);
        Manifests::new(&env, &image, &namespace, &self.home_hash).to_yaml()
    }

    /// The context `env` was made in: as recorded at creation, else as its spec asks.
    fn context_of(env: &Environment) -> Option<String> {
        env.details
            .get("context")
            .and_then(|c| c.as_str())
            .filter(|c| *c != "in-cluster" && !c.is_empty())
            .map(str::to_owned)
            .or_else(|| env.spec.kubernetes.as_ref()?.context.clone())
    }

    /// The cluster and namespace of `env`.
    async fn target(&self, env: &Environment) -> Result<(Cluster, String)> {
        let cluster = self.clusters.get(Self::context_of(env).as_deref()).await?;
        let recorded = env.details.get("namespace").and_then(|n| n.as_str());
        let asked = env
            .spec
            .kubernetes
            .as_ref()
            .and_then(|k| k.namespace.as_deref());
        let namespace = cluster.namespace(recorded.or(asked));
        Ok((cluster, namespace))
    }

    /// Waits (up to the ready timeout) until pod `name` no longer exists.
    async fn wait_gone(&self, cluster: &Cluster, namespace: &str, name: &str) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        loop {
            match api.get_opt(name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Ok(Some(_)) => {
                    return Err(Error::Engine {
                        level: IsolationLevel::Kubernetes,
                        action: "create the pod",
                        source: format!(
                            "{namespace}/{name} exists and was still there after {}s",
                            self.ready_timeout.as_secs()
                        )
                        .into(),
                    });
                }
                Err(e) => return Err(GET_POD.error(e, namespace, cluster)),
            }
        }
    }

    /// Records where `env`'s objects are, once the cluster has made one: what `cleanup`
    /// deletes from.
    fn note_target(ctx: &dyn EngineContext, cluster: &Cluster, namespace: &str) -> Result<()> {
        ctx.note("context", serde_json::json!(cluster.context))?;
        ctx.note("namespace", serde_json::json!(namespace))
    }
}

#[async_trait]
impl Engine for KubernetesEngine {
    async fn manifests(
        &self,
        spec: EnvironmentSpec,
        defaults: &LevelDefaults,
    ) -> Option<Result<String>> {
        Some(KubernetesEngine::dry_run(self, spec, defaults).await)
    }

    fn level(&self) -> IsolationLevel {
        IsolationLevel::Kubernetes
    }

    fn traits(&self) -> ptest_core::EngineTraits {
        // The workspace is a volume of the pod, on a node: `ptest run` copies the project in,
        // and a suite's JUnit report out.
        ptest_core::EngineTraits {
            copies_in: true,
            copies_out: true,
            ..ptest_core::EngineTraits::default()
        }
    }

    fn capabilities(&self) -> Vec<Finding> {
        doctor::findings(&self.clusters)
    }

    fn check(&self, spec: &EnvironmentSpec) -> Result<()> {
        let unsupported = manifest::unsupported(spec);
        if !unsupported.is_empty() {
            return Err(Error::Usage(format!(
                "the kubernetes level cannot apply {}",
                unsupported.join("; ")
            )));
        }
        manifest::image(spec).map(|_| ())
    }

    async fn create(&self, env: &Environment, ctx: &dyn EngineContext) -> Result<()> {
        let (cluster, namespace) = self.target(env).await?;
        // Before anything exists there, so that `gc` looks there even if this ptest dies.
        let targets = Targets::of_home(&self.home);
        let target = Target {
            context: Some(cluster.context.clone()).filter(|c| c != "in-cluster"),
            namespace: namespace.clone(),
        };
        blocking(move || targets.add(&target)).await?;
        let (root_path, id) = (env.root.clone(), env.id.clone());
        blocking(move || root::create(&root_path, &id)).await?;
        ctx.note("pod", serde_json::json!(object_name(env)))?;
        let Some(policy) = policy::network_policy(env, &namespace, &self.home_hash) else {
            return Ok(());
        };
        let name = object_name(env);
        ctx.event(
            IsolationEvent::NetworkAllocating,
            serde_json::json!({ "network_policy": name, "namespace": namespace }),
        )?;
        let api: Api<NetworkPolicy> = Api::namespaced(cluster.client.clone(), &namespace);
        api.create(&PostParams::default(), &policy)
            .await
            .map_err(|e| CREATE_POLICY.error(e, &namespace, &cluster))?;
        Self::note_target(ctx, &cluster, &namespace)?;
        ctx.event(
            IsolationEvent::NetworkAllocated,
            serde_json::json!({ "network_policy": name, "namespace": namespace }),
        )
    }

    async fn activate(&self, env: &Environment, ctx: &dyn EngineContext) -> Result<()> {
        let (cluster, namespace) = self.target(env).await?;
        let image = manifest::image(&env.spec)?;
        let pod = crate::pod::pod(env, image, &namespace, &self.home_hash);
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
        let created = match api.create(&PostParams::default(), &pod).await {
            Ok(created) => created,
            // The pod `env stop` deleted is still terminating (its grace period): once it is
            // gone, make the new one.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                self.wait_gone(&cluster, &namespace, &object_name(env))
                    .await?;
                api.create(&PostParams::default(), &pod)
                    .await
                    .map_err(|e| CREATE_POD.error(e, &namespace, &cluster))?
            }
            Err(e) => return Err(CREATE_POD.error(e, &namespace, &cluster)),
        };
        Self::note_target(ctx, &cluster, &namespace)?;
        ready::wait(&cluster, &namespace, created, self.ready_timeout).await?;
        // Kept by this process while the environment is active (see `forward`).
        self.forwards.start(
            env.id.as_str(),
            &cluster,
            &namespace,
            &object_name(env),
            env.ports.values().copied(),
        )
    }

    fn port_lease_changed(&self, env: &Environment, port: u16, leased: bool) -> Result<()> {
        if leased {
            self.forwards.add(env.id.as_str(), port).map(drop)
        } else {
            self.forwards.remove(env.id.as_str(), port);
            Ok(())
        }
    }

    async fn spawn(
        &self,
        env: &Environment,
        request: ExecRequest,
    ) -> Result<Box<dyn RunningProcess>> {
        let (cluster, namespace) = self.target(env).await?;
        Ok(Box::new(
            exec::spawn(&cluster, &namespace, &object_name(env), env, request).await?,
        ))
    }

    async fn kill(&self, env: &Environment, process: &ProcessInfo) -> Result<()> {
        let (cluster, namespace) = self.target(env).await?;
        exec::kill(&cluster, &namespace, &object_name(env), process).await
    }

    async fn copy_in(&self, env: &Environment, from: &Path, to: &Path) -> Result<()> {
        let (cluster, namespace) = self.target(env).await?;
        copy::copy_in(&cluster, &namespace, &object_name(env), from, to).await
    }

    async fn copy_out(&self, env: &Environment, from: &Path, to: &Path) -> Result<()> {
        let (cluster, namespace) = self.target(env).await?;
        copy::copy_out(&cluster, &namespace, &object_name(env), from, to).await
    }

    async fn validate(&self, env: &Environment) -> Result<Vec<Finding>> {
        let mut out = Vec::new();
        let name = object_name(env);
        match self.target(env).await {
            Err(e) => out.push(Finding {
                check: "cluster".into(),
                ok: false,
                detail: e.to_string(),
            }),
            Ok((cluster, namespace)) => {
                let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
                match api.get(&name).await {
                    Ok(pod) => {
                        out.push(Finding {
                            check: "pod".into(),
                            ok: true,
                            detail: format!("{namespace}/{name} (context {})", cluster.context),
                        });
                        let verdict = ready::judge(&pod);
                        out.push(Finding {
                            check: "ready".into(),
                            ok: verdict == Verdict::Ready,
                            detail: match verdict {
                                Verdict::Ready => "Ready".into(),
                                Verdict::Waiting(why) | Verdict::Failed(why) => why,
                            },
                        });
                        let labels = pod.metadata.labels.unwrap_or_default();
                        out.push(Finding::owner_labels(env, &self.home_hash, |key| {
                            labels.get(key).map(String::as_str)
                        }));
                    }
                    Err(e) if is_not_found(&e) => out.push(Finding {
                        check: "pod".into(),
                        ok: false,
                        detail: format!("{namespace}/{name} does not exist"),
                    }),
                    Err(e) => out.push(Finding {
                        check: "pod".into(),
                        ok: false,
                        detail: GET_POD.error(e, &namespace, &cluster).to_string(),
                    }),
                }
            }
        }
        out.extend(root::check(&env.root, &env.id));
        Ok(out)
    }

    /// Stops this process's port-forwards and deletes the pod (its workspace volume with it);
    /// the network policy stays until `cleanup`, and `activate` makes a new pod.
    async fn deactivate(&self, env: &Environment) -> Result<()> {
        self.forwards.stop(env.id.as_str());
        if !env.details.contains_key("namespace") {
            return Ok(()); // nothing was made on a cluster
        }
        let (cluster, namespace) = self.target(env).await?;
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
        match api
            .delete(&object_name(env), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(DELETE_POD.error(e, &namespace, &cluster)),
        }
    }

    async fn cleanup(&self, env: &Environment) -> Result<()> {
        if env.details.contains_key("namespace") {
            self.deactivate(env).await?;
            if policy::network_policy(env, "", &self.home_hash).is_some() {
                let (cluster, namespace) = self.target(env).await?;
                let api: Api<NetworkPolicy> = Api::namespaced(cluster.client.clone(), &namespace);
                match api
                    .delete(&object_name(env), &DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(DELETE_POLICY.error(e, &namespace, &cluster)),
                }
            }
        }
        let (root_path, id) = (env.root.clone(), env.id.clone());
        blocking(move || {
            if root_path.exists() {
                root::remove(&root_path, &id)
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn resource_usage(&self, env: &Environment) -> Result<ResourceUsage> {
        let (cluster, namespace) = self.target(env).await?;
        metrics::usage(&cluster, &namespace, &object_name(env)).await
    }

    async fn collect_garbage(&self, _home: &ptest_core::Home, live_ids: &[String]) -> Vec<Removal> {
        let targets = match Targets::of_home(&self.home).read() {
            Ok(t) => t,
            Err(e) => {
                return vec![Removal {
                    name: "kubernetes-targets".into(),
                    id: String::new(),
                    action: "removed",
                    reason: "orphaned kubernetes objects of this home".into(),
                    error: Some(e.to_string()),
                }];
            }
        };
        let mut out = Vec::new();
        for target in targets {
            match self.clusters.get(target.context.as_deref()).await {
                Ok(cluster) => out
                    .extend(gc::reap(&cluster, &target.namespace, &self.home_hash, live_ids).await),
                // No kubeconfig (or context) any more: as for an unreachable cluster, there
                // is nothing this machine can look at.
                Err(e) => tracing::warn!(
                    "gc skipped namespace {} of context {}: {e}",
                    target.namespace,
                    target.context.as_deref().unwrap_or("(current)")
                ),
            }
        }
        out
    }
}
