//! Arguments of `ptest net ...`.

use std::time::Duration;

use clap::{Args, Subcommand};
use ptest_core::{ByteSize, PortName};
use ptest_net::Bandwidth;

use super::parse_duration;

/// `ptest net ...`.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Put a proxy in front of an environment's port and give it faults (added to the ones it
    /// has). Clients that connect to the proxy's port (PTEST_PORT_<NAME>_PROXY) get them.
    ///
    /// Latency and jitter apply to each direction. The change is in force for new connections
    /// when this returns, and for open ones at their next chunk of data.
    Fault(FaultArgs),
    /// Remove faults: the proxy passes traffic untouched again (it keeps running, so its port
    /// stays valid until `env rm`).
    Clear(ClearArgs),
    /// List fault proxies: environment, port, upstream and proxy ports, status, faults.
    #[command(alias = "ls")]
    List(NetListArgs),
}

/// Arguments of `net fault`.
#[derive(Debug, Args)]
pub struct FaultArgs {
    /// Environment name or id.
    pub env: String,
    /// The environment's port lease to put the proxy in front of.
    #[arg(value_name = "PORT_NAME")]
    pub port: PortName,
    /// Delay every chunk by this long, in each direction (e.g. 200ms).
    #[arg(long, value_parser = parse_duration, help_heading = "Faults")]
    pub latency: Option<Duration>,
    /// Vary each chunk's delay by up to this much either way (e.g. 50ms).
    #[arg(long, value_parser = parse_duration, help_heading = "Faults")]
    pub jitter: Option<Duration>,
    /// Limit each direction of each connection to this rate: bits (64kbit, 10mbit) or bytes
    /// per second (8K, 1M).
    #[arg(long, value_name = "RATE", help_heading = "Faults")]
    pub bandwidth: Option<Bandwidth>,
    /// Close a connection once this many bytes passed through it, both directions counted
    /// (e.g. 1000, 64K).
    #[arg(long, value_name = "BYTES", help_heading = "Faults")]
    pub drop_after: Option<ByteSize>,
    /// Reset connections (RST): open ones at once, new ones as soon as they are accepted.
    #[arg(long, help_heading = "Faults")]
    pub reset: bool,
    /// Accept connections but pass nothing either way until `net clear`.
    #[arg(long, help_heading = "Faults")]
    pub timeout: bool,
    /// Stop listening: connecting is refused and open connections are closed.
    #[arg(long, help_heading = "Faults")]
    pub down: bool,
    /// Print the proxy as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `net clear`.
#[derive(Debug, Args)]
pub struct ClearArgs {
    /// Environment name or id.
    pub env: String,
    /// Only this port's proxy (default: every proxy of the environment).
    #[arg(value_name = "PORT_NAME")]
    pub port: Option<PortName>,
    /// Print the proxies as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `net list`.
#[derive(Debug, Args)]
pub struct NetListArgs {
    /// Only this environment's.
    pub env: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
