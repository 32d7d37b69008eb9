//! The data ptest manages: environments, processes, events, resource readings.

mod enums;
mod environment;
mod event;
mod process;

pub use enums::{
    CleanupPolicy, EnvironmentStatus, IsolationEvent, IsolationLevel, NetworkStatus, ProcessStatus,
    ResourceType, SecurityLevel, UnknownValue,
};
pub use environment::{Environment, EnvironmentSpec, Labels, ResourceUsage};
pub use event::Event;
pub use process::{ProcessInfo, ProcessResult};
