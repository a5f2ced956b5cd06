//! Shared test harness: the real etcd launcher lives with the coordinator's
//! tests and is included from there.

#[path = "../../coordinator/tests/common/etcd.rs"]
pub mod etcd;

pub mod proc;
