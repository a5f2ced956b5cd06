//! Durable state behind one trait.
//!
//! [`Store`] is a small versioned key-value interface with compare-and-swap:
//! every write carries a [`Precondition`] (none, key absent, or the version
//! last read), so read-modify-write cycles retry on conflict instead of
//! overwriting each other. Two implementations share one conformance suite:
//! [`EmbeddedStore`] (redb, the default, one file under the state directory)
//! and [`EtcdStore`] (distributed mode).
//!
//! [`Catalog`] is the coordinator's typed view over a store: sweeps, results
//! by trial id, failure counts.

mod catalog;
mod embedded;
mod etcd;

#[cfg(test)]
pub(crate) mod conformance;

pub use catalog::{
    Catalog, FailureRecord, Outcome, RESULTS_SCAN_PAGE, SweepRecord, SweepRecordState,
};
pub use embedded::EmbeddedStore;
pub use etcd::{
    EtcdCredentials, EtcdOptions, EtcdStore, EtcdTls, MAX_VALUE_BYTES as ETCD_MAX_VALUE_BYTES,
    connect_client as connect_etcd_client, parse_url as parse_etcd_url,
};
pub use sigsweep_types::ResultRecord;

use async_trait::async_trait;

/// A key's version: 1 after the first write, then incremented on every write.
pub type Version = u64;

/// A value and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub version: Version,
    pub value: Vec<u8>,
}

/// What a write requires of the key's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Write unconditionally.
    None,
    /// The key must not exist.
    Absent,
    /// The key must exist at exactly this version.
    Version(Version),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The precondition did not hold.
    #[error("precondition failed for key `{key}`")]
    Conflict { key: String },
    /// The write was refused because this process is no longer the leader
    /// (its election fence no longer holds, see `EtcdStore::with_fence`).
    /// Retrying cannot succeed: the process must stop acting as leader.
    #[error("write to `{key}` refused: this coordinator is no longer the leader (fenced)")]
    Fenced { key: String },
    /// The store cannot be reached right now; retrying may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store returned something it should not have.
    #[error("store error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A versioned key-value store with compare-and-swap writes.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> StoreResult<Option<Versioned>>;
    /// Writes `value` if `precondition` holds and returns the new version.
    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        precondition: Precondition,
    ) -> StoreResult<Version>;
    /// Deletes the key if `precondition` holds (deleting an absent key with
    /// `Precondition::None` is not an error).
    async fn delete(&self, key: &str, precondition: Precondition) -> StoreResult<()>;
    /// Every key starting with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> StoreResult<Vec<(String, Versioned)>>;
    /// At most `limit` keys starting with `prefix` and sorting after
    /// `after` (all of the prefix when `None`), in key order: a scan whose
    /// memory is one page, however much is stored. Pages are read one by
    /// one, so a key written during a scan may or may not be seen.
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Versioned)>>;
    /// A short description for logs, e.g. `embedded:/path` or `etcd://host:2379`.
    fn describe(&self) -> String;
}
