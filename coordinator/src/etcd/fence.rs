//! The fence of a leader's term: its leader key at the revision etcd
//! created it at. A fenced store makes every write conditional on it.

use tokio_util::sync::CancellationToken;

/// What a leader's writes are conditioned on: its leader key, at the
/// revision etcd created it at (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Fence {
    key: Vec<u8>,
    revision: i64,
    lost: CancellationToken,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("revision", &self.revision)
            .field("deposed", &self.is_deposed())
            .finish()
    }
}

impl Fence {
    /// A fence on `key` at creation revision `revision`; `lost` is
    /// cancelled when the fence is deposed (and deposes it when cancelled).
    pub fn new(key: impl Into<Vec<u8>>, revision: i64, lost: CancellationToken) -> Self {
        Self {
            key: key.into(),
            revision,
            lost,
        }
    }

    /// The leader key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The leader key's creation revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Whether leadership is known to be over (lost, resigned, or a write
    /// was refused).
    pub fn is_deposed(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Records that leadership is over, e.g. because etcd refused a fenced
    /// write: the leader's [`LeaderGuard::lost`](super::election::LeaderGuard::lost) fires.
    pub fn depose(&self) {
        self.lost.cancel();
    }
}
