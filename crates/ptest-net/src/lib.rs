//! A fault-injecting TCP proxy, the job Toxiproxy does: put it in front of a service and make
//! the connections to it slow, jittery, narrow, cut short, reset, stalled or refused — and
//! change which at run time, with no traffic-control qdisc (`netem`) and no daemon.
//!
//! - [`Faults`] says what the proxy does to traffic; [`Bandwidth`] is its rate limit.
//! - [`Proxy`] serves one listening address and one upstream, following a `watch` channel of
//!   [`Setting`]s (faults plus a generation) and acknowledging each one once it is in force.
//! - [`ControlFile`] and [`serve_file`] drive a proxy in another process through a JSON file:
//!   a writer calls [`ControlFile::update`] and [`ControlFile::wait_applied`]; the proxy
//!   process runs [`serve_file`], which watches the file with inotify.
//!
//! A typical flow (as `ptest net fault` does it): write the configuration, start a process
//! running `serve_file` on it, wait until its generation is applied; later update the faults
//! and wait again. The crate knows nothing of ptest's environments.

mod control;
mod faults;
mod proxy;

pub use control::{ControlFile, ProxyConfig, serve_file};
pub use faults::{Bandwidth, Faults};
pub use proxy::{Proxy, Setting};
