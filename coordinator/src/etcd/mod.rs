//! Everything etcd, for distributed mode: the connection (endpoints,
//! credentials, TLS: [`connect`]), what a client error means ([`errors`]:
//! decided once for the store and the election), leader election
//! ([`election`]) and the fence of a leader's term ([`Fence`]). The store
//! on top of it is `crate::store::EtcdStore`.

pub mod connect;
pub mod election;
pub mod errors;
mod fence;

pub use fence::Fence;
