//! The coordinator that answers requests: set while this process leads.

use tokio::sync::watch;
use tonic::Status;

use std::sync::Arc;

use crate::service::Coordinator;

/// The coordinator that answers requests: set while this process leads,
/// empty while it stands by. Cheap to clone; clones share the slot.
#[derive(Clone)]
pub struct LeaderSlot {
    current: Arc<watch::Sender<Option<Coordinator>>>,
}

impl Default for LeaderSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl LeaderSlot {
    /// An empty slot (standby).
    pub fn new() -> Self {
        Self {
            current: Arc::new(watch::Sender::new(None)),
        }
    }

    /// A slot holding `coordinator` (single-process mode).
    pub fn leading(coordinator: Coordinator) -> Self {
        let slot = Self::new();
        slot.promote(coordinator);
        slot
    }

    /// This process now leads with `coordinator`.
    pub fn promote(&self, coordinator: Coordinator) {
        self.current.send_replace(Some(coordinator));
    }

    /// This process no longer leads: requests fail with `UNAVAILABLE`.
    pub fn demote(&self) {
        self.current.send_replace(None);
    }

    /// The leading coordinator, if this process leads.
    pub fn get(&self) -> Option<Coordinator> {
        self.current.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.current.borrow().is_some()
    }

    /// Changes of leadership (`true` while leading).
    pub fn subscribe(&self) -> watch::Receiver<Option<Coordinator>> {
        self.current.subscribe()
    }

    pub(super) fn require(&self) -> Result<Coordinator, Status> {
        self.get().ok_or_else(|| {
            Status::unavailable("this coordinator is a standby (not the leader); retry")
        })
    }
}
