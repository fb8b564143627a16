//! Networks (Neutron): the service the API calls ([`service`]); on the host, the reconciler
//! that makes this node's bridges and VLAN devices match the state ([`reconcile`]), the DHCP
//! servers ([`dhcp`]) and the agent loop driving both ([`agent`]).

pub mod agent;
pub mod dhcp;
pub mod reconcile;
pub mod service;
