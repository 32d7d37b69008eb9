//! An address leased to an environment on a network: what engines that put environments on
//! a shared network ask the manager for ([`crate::EngineContext::address_leases`]).

use std::net::Ipv4Addr;

use crate::name::{EnvId, EnvName};

/// An address an environment holds on a network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AddressLease {
    /// The network (its name on the host).
    pub network: String,
    /// The address.
    pub address: Ipv4Addr,
    /// The environment holding it.
    pub env_id: EnvId,
    /// Its name.
    pub env_name: EnvName,
}
