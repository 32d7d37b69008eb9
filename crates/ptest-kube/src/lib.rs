//! ptest's `kubernetes` level: every environment is one pod on a Kubernetes cluster, reached
//! through [kube] with the types of [k8s_openapi]. [`KubernetesEngine`] implements
//! [`ptest_core::Engine`]; the manager drives it.
//!
//! A typical life: `check` refuses what a pod cannot apply (a process or file-count limit, a
//! host socket, the host network) and a spec without an image. `create` finds the cluster
//! ([`connect`]: the kubeconfig's context, or in-cluster), records the namespace for `gc`
//! ([`gc::Targets`]), makes the environment's root on this host (its `logs/` keep what
//! overflows a command's captured output) and, where the network is limited, the
//! NetworkPolicy ([`policy`]). `activate` creates the pod ([`pod`]: labels `ptest.env`,
//! `ptest.home`, `ptest.run`; requests and limits; a security context per level; an emptyDir
//! workspace; `activeDeadlineSeconds` from the TTL) and waits for it to be Ready, surfacing
//! the scheduler's and kubelet's reasons when it is not ([`ready`]). `spawn` runs a command
//! through the exec subresource, stdout and stderr apart, its exit code from the status
//! channel; `kill` kills its tree in the pod ([`exec`]). `copy_in` makes a directory of the
//! pod a copy of a host directory, a tar streamed into `tar -x` through an exec's stdin
//! ([`copy`]): how `ptest run` puts the project in; `copy_out` brings one file or directory
//! of the pod to this host, the stdout of `tar -c` unpacked by rules that keep it within the
//! copy (how `ptest run` reads a suite's JUnit report). `deactivate` deletes the pod;
//! `cleanup` the pod, the policy and the root. `collect_garbage` deletes pods, services and
//! network policies labelled with this home whose environment is gone, and never anything
//! unlabelled. The API server's refusals become errors naming what to change
//! (`api_error`).
//!
//! Everything sent to the cluster is built by pure functions ([`manifest::Manifests`]), which
//! is also what `env create --dry-run -o yaml` prints ([`KubernetesEngine::dry_run`]).
//!
//! Once the pod is Ready, `activate` also forwards each leased port from `127.0.0.1` of this
//! host to the pod ([`forward`]), for as long as this process keeps the environment active.
//!
//! Not done yet: a port-forward that outlives the process that started the environment, and
//! `ptest run --resume`.

mod api_error;
pub mod connect;
pub mod copy;
mod doctor;
mod engine;
pub mod exec;
pub mod forward;
pub mod gc;
pub mod labels;
pub mod manifest;
pub mod metrics;
pub mod pod;
pub mod policy;
pub mod ready;

pub use connect::Cluster;
pub use engine::{KubernetesEngine, READY_TIMEOUT};
pub use manifest::Manifests;
