//! The reaper: deletes pods, services and network policies this home labelled for
//! environments that are no longer recorded (a ptest killed mid-create, a record removed by
//! hand). Objects are listed with the label selector `ptest.home=<hash>` and each one's labels
//! are checked again before it is deleted: an object without this home's label, or without an
//! environment label, is never touched.
//!
//! Where to look: every (context, namespace) this home has made an environment in is
//! appended to `$PTEST_HOME/kubernetes-targets` before anything is made there ([`Targets`]),
//! so a home that never used the level makes `gc` ask no cluster anything.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Resource};
use ptest_core::{Error, Removal, Result};
use serde::de::DeserializeOwned;

use crate::api_error::{Call, is_not_found};
use crate::connect::Cluster;
use crate::labels::{LABEL_ENV, LABEL_HOME, home_selector};

/// Where a home has made environments: one `context<TAB>namespace` line each.
pub struct Targets {
    path: PathBuf,
}

/// One place environments were made: a kubeconfig context (`None`: the current one) and a
/// namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// The context asked for.
    pub context: Option<String>,
    /// The namespace.
    pub namespace: String,
}

impl Targets {
    /// The targets file of the home at `home`.
    pub fn of_home(home: &Path) -> Self {
        Self {
            path: home.join("kubernetes-targets"),
        }
    }

    /// Adds `target` (one append of one line: concurrent ptests do not mix their lines).
    pub fn add(&self, target: &Target) -> Result<()> {
        if self.read()?.contains(target) {
            return Ok(());
        }
        let line = format!(
            "{}\t{}\n",
            target.context.as_deref().unwrap_or_default(),
            target.namespace
        );
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| Error::io("recording a kubernetes namespace in", &self.path, e))
    }

    /// Every target recorded, each once.
    pub fn read(&self) -> Result<Vec<Target>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("reading", &self.path, e)),
        };
        let mut out: Vec<Target> = text
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(context, namespace)| Target {
                context: (!context.is_empty()).then(|| context.to_owned()),
                namespace: namespace.to_owned(),
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Deletes what `home` labelled in `namespace` of `cluster` for environments not in `live`.
/// A cluster that cannot be reached is skipped with a warning, as the docker level skips a
/// missing engine: `ptest gc` is no failure on a machine cut off from a cluster it once used.
pub(crate) async fn reap(
    cluster: &Cluster,
    namespace: &str,
    home: &str,
    live: &[String],
) -> Vec<Removal> {
    let mut out = Vec::new();
    let reachable = reap_kind::<Pod>(cluster, namespace, home, live, "pods", &mut out).await;
    if !reachable {
        return out;
    }
    reap_kind::<Service>(cluster, namespace, home, live, "services", &mut out).await;
    reap_kind::<NetworkPolicy>(cluster, namespace, home, live, "networkpolicies", &mut out).await;
    out
}

/// Reaps one kind of object; `false` when the cluster could not be reached.
async fn reap_kind<K>(
    cluster: &Cluster,
    namespace: &str,
    home: &str,
    live: &[String],
    resource: &'static str,
    out: &mut Vec<Removal>,
) -> bool
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(cluster.client.clone(), namespace);
    let list = Call {
        action: "list this home's objects",
        verb: "list",
        resource,
    };
    let delete = Call {
        action: "delete an orphaned object",
        verb: "delete",
        resource,
    };
    let objects = match api
        .list(&ListParams::default().labels(&home_selector(home)))
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            let error = list.error(e, namespace, cluster);
            if matches!(error, Error::LevelUnavailable { .. }) {
                tracing::warn!("gc skipped namespace {namespace}: {error}");
                return false;
            }
            out.push(Removal {
                name: format!("{resource} in {namespace}"),
                id: String::new(),
                action: "removed",
                reason: format!("orphaned kubernetes {resource} of this home"),
                error: Some(error.to_string()),
            });
            return true;
        }
    };
    for object in objects {
        let meta = object.meta();
        let Some(env_id) = orphan(meta.labels.as_ref(), home, live) else {
            continue;
        };
        let name = meta.name.clone().unwrap_or_default();
        let error = match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => None,
            Err(e) if is_not_found(&e) => None,
            Err(e) => Some(delete.error(e, namespace, cluster).to_string()),
        };
        out.push(Removal {
            name: format!("{namespace}/{name}"),
            id: env_id,
            action: "removed",
            reason: format!("orphaned kubernetes {resource} of this home"),
            error,
        });
    }
    true
}

/// The environment id of an object to delete: this home's label and an environment that is
/// not live. Checked here, never on the server's filtering alone.
fn orphan(
    labels: Option<&BTreeMap<String, String>>,
    home: &str,
    live: &[String],
) -> Option<String> {
    let labels = labels?;
    if labels.get(LABEL_HOME).map(String::as_str) != Some(home) {
        return None;
    }
    let env = labels.get(LABEL_ENV)?;
    (!live.contains(env)).then(|| env.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_this_homes_labelled_objects_of_gone_environments_are_orphans() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let live = vec!["live1".to_owned()];
        let gone = labels(&[(LABEL_HOME, "h"), (LABEL_ENV, "gone1")]);
        assert_eq!(orphan(Some(&gone), "h", &live).as_deref(), Some("gone1"));
        let alive = labels(&[(LABEL_HOME, "h"), (LABEL_ENV, "live1")]);
        assert_eq!(orphan(Some(&alive), "h", &live), None);
        let other_home = labels(&[(LABEL_HOME, "x"), (LABEL_ENV, "gone1")]);
        assert_eq!(orphan(Some(&other_home), "h", &live), None);
        let no_env = labels(&[(LABEL_HOME, "h")]);
        assert_eq!(orphan(Some(&no_env), "h", &live), None);
        assert_eq!(orphan(None, "h", &live), None);
    }

    #[test]
    fn targets_are_kept_once_each() {
        let home = tempfile::tempdir().unwrap();
        let targets = Targets::of_home(home.path());
        assert!(targets.read().unwrap().is_empty());
        let t = Target {
            context: Some("kind-ptest".into()),
            namespace: "ci".into(),
        };
        targets.add(&t).unwrap();
        targets.add(&t).unwrap();
        let current = Target {
            context: None,
            namespace: "default".into(),
        };
        targets.add(&current).unwrap();
        assert_eq!(targets.read().unwrap(), vec![current, t]);
    }
}
