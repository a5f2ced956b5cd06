//! The sigsweep coordinator.
//!
//! It turns sweep files into trials, hands trials to workers under leases,
//! keeps durable state, and serves the gRPC API. It never depends on burn:
//! training happens in the worker crate.
//!
//! Layout (a newcomer should find each part by folder name):
//! - [`sweep`]: the sweep file (TOML) — parsing with file/line/key errors,
//!   validation, grid expansion, deterministic trial ids;
//! - [`scheduler`]: the pure scheduling state machine (queue, leases, expiry,
//!   fencing), tested with properties;
//! - [`store`]: the versioned compare-and-swap store trait, the embedded
//!   (redb) implementation and the typed [`store::Catalog`];
//! - [`service`]: the coordinator core ([`Coordinator`]) tying them together;
//! - [`server`]: the tonic services, health and reflection, `serve`;
//! - [`election`]: leader election among coordinators over etcd
//!   (distributed mode, with [`store::EtcdStore`]).

pub mod bench;
pub mod etcd;
pub mod local;
pub mod node;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod store;
pub mod sweep;

pub use etcd::election;
pub use service::{Coordinator, CoordinatorConfig, CoordinatorError};
