//! Networks on the host: the reconciler that makes this node's bridges and VLAN devices match
//! the state ([`reconcile`]).

pub mod reconcile;
