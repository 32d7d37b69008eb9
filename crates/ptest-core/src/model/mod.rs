//! The data ptest manages: environments, processes, events, resource readings.

mod allow;
mod enums;
mod environment;
mod event;
pub mod image_ref;
mod lease;
pub mod limit_range;
mod process;
mod removal;
mod service;
mod socket;

pub use allow::{AllowHost, AllowRule};
pub use enums::{
    CleanupPolicy, EnvironmentStatus, IsolationEvent, IsolationLevel, MEDIUM_CAP_DROP,
    NetworkStatus, ProcessStatus, ResourceType, SecurityLevel, UnknownValue,
};
pub use environment::{
    ContainerArgs, DockerSpec, ENV_LABEL, EnvSummary, Environment, EnvironmentSpec, HOME_LABEL,
    KubernetesSpec, Labels, Limits, NetworkMode, OverlaySpec, ProjectWheel, RUN_LABEL,
    RUN_OWNER_LABEL, ResourceUsage, VirtualenvSpec,
};
pub use event::Event;
pub use lease::AddressLease;
pub use process::{ProcessInfo, ProcessResult};
pub use removal::Removal;
pub use service::{ProcessStats, Readiness, RestartPolicy, ServiceInfo, ServiceSpec};
pub use socket::ExposedSocket;
