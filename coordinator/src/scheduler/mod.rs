//! The scheduler: which trial a worker gets next and when a lease expires.
//!
//! A pure state machine with no I/O and no clock of its own: every operation
//! takes `now`, so lease expiry is tested deterministically. The async
//! service around it only moves data in and out.
//!
//! Invariants (checked by the property test below):
//! - a trial is either queued, leased to exactly one worker, or neither
//!   (finished or dropped) — never both, never leased twice;
//! - an expired lease puts its trial back at the front of the queue, so no
//!   trial is lost when a worker dies;
//! - a lease is renewed or finished only by the worker and generation that
//!   hold it.
//!
//! Reservations: a busy worker may lease the trial it will start next
//! ([`Scheduler::reserve_group`]), so that it never waits for the
//! coordinator between trials. A reservation is a lease flagged `reserved`
//! until the worker's first heartbeat for it as a started trial. An idle
//! worker that finds the queue empty takes over a reservation that has not
//! started yet (the reserving worker learns it at its next heartbeat), so
//! reservations never leave a worker idle while a trial waits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// A trial as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrialRef {
    pub sweep_id: Arc<str>,
    pub trial_id: Arc<str>,
    /// GPUs the trial needs (0 = CPU only).
    pub gpus: u32,
    /// How many trials may share one of its GPUs (the sweep's
    /// `trials_per_gpu`; 1 = a GPU of its own).
    pub share: u32,
    /// Trials of one group (the seeds of one configuration) may be leased
    /// together to a worker that fuses them into one model.
    pub group: Arc<str>,
}

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub worker_id: String,
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub lease_id: String,
    pub trial: TrialRef,
    pub holder: Holder,
    pub expires_at: Instant,
    /// When the trial started under this lease (for a reservation, when
    /// its worker started it).
    pub started_at: Instant,
    pub cancelled: bool,
    /// Leased ahead to a busy worker and not started yet.
    pub reserved: bool,
    /// Set on a lease that took over another worker's reservation.
    pub taken_from: Option<Holder>,
}

/// What a worker may take: its GPUs (0 for a CPU worker) and how many
/// trials share each of them (a worker process that is one of k slots
/// packed on a GPU has `sharers = k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub gpu_slots: u32,
    pub sharers: u32,
}

impl Capacity {
    /// A worker with `gpu_slots` GPUs of its own.
    pub const fn gpus(gpu_slots: u32) -> Self {
        Self {
            gpu_slots,
            sharers: 1,
        }
    }

    /// Whether a trial may run on this worker: CPU trials anywhere; GPU
    /// trials on a worker with enough GPUs, shared by no more trials than
    /// the sweep allows.
    pub fn fits(self, t: &TrialRef) -> bool {
        self.fits_need(t.gpus, t.share)
    }

    /// [`Capacity::fits`] for a trial needing `gpus` GPUs, each shared by
    /// at most `share` trials.
    pub fn fits_need(self, gpus: u32, share: u32) -> bool {
        gpus == 0 || (gpus <= self.gpu_slots && self.sharers <= share.max(1))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    Renewed {
        cancelled: bool,
    },
    /// No such lease (expired, finished, or never existed).
    Unknown,
    /// The lease belongs to another worker or generation.
    NotHolder,
}

#[derive(Debug)]
pub struct Scheduler {
    ttl: Duration,
    queue: VecDeque<TrialRef>,
    queued: HashSet<Arc<str>>,
    leases: HashMap<String, Lease>,
    running: HashMap<Arc<str>, String>,
    next_lease: u64,
    /// Leases ended against their holder's will (a trial past its time
    /// limit): their holder may not re-adopt the trial ([`Scheduler::adopt`]).
    revoked: HashSet<String>,
}

impl Scheduler {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            leases: HashMap::new(),
            running: HashMap::new(),
            next_lease: 1,
            revoked: HashSet::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn queued_len(&self) -> usize {
        self.queued.len()
    }

    pub fn running_len(&self) -> usize {
        self.running.len()
    }

    pub fn is_queued(&self, trial_id: &str) -> bool {
        self.queued.contains(trial_id)
    }

    pub fn is_running(&self, trial_id: &str) -> bool {
        self.running.contains_key(trial_id)
    }

    /// Adds a trial at the back of the queue (no-op if queued or running).
    pub fn enqueue(&mut self, trial: TrialRef) {
        if self.queued.contains(&trial.trial_id) || self.running.contains_key(&trial.trial_id) {
            return;
        }
        self.queued.insert(trial.trial_id.clone());
        self.queue.push_back(trial);
    }

    fn enqueue_front(&mut self, trial: TrialRef) {
        if self.queued.contains(&trial.trial_id) || self.running.contains_key(&trial.trial_id) {
            return;
        }
        self.queued.insert(trial.trial_id.clone());
        self.queue.push_front(trial);
    }

    /// Leases the first queued trial that fits `capacity` to `holder`; with
    /// the queue empty, takes over another worker's unstarted reservation.
    pub fn acquire(&mut self, holder: Holder, capacity: Capacity, now: Instant) -> Option<Lease> {
        self.take_queued(&holder, capacity, now)
            .or_else(|| self.take_over_reservation(&holder, capacity, None, now))
    }

    /// Leases the first queued trial that fits `capacity` to `holder`.
    fn take_queued(&mut self, holder: &Holder, capacity: Capacity, now: Instant) -> Option<Lease> {
        // Drop stale entries at the front (finished or adopted trials).
        while let Some(front) = self.queue.front() {
            if self.queued.contains(&front.trial_id) {
                break;
            }
            self.queue.pop_front();
        }
        let index = self
            .queue
            .iter()
            .position(|t| self.queued.contains(&t.trial_id) && capacity.fits(t))?;
        let trial = self.queue.remove(index)?;
        self.queued.remove(&trial.trial_id);
        Some(self.lease(trial, holder.clone(), None, now))
    }

    /// Moves a reservation that has not started (the oldest lease id first,
    /// optionally only one of `group` held by `from`) to `holder`.
    fn take_over_reservation(
        &mut self,
        holder: &Holder,
        capacity: Capacity,
        only: Option<(&Holder, &Arc<str>)>,
        now: Instant,
    ) -> Option<Lease> {
        let victim = self
            .leases
            .values()
            .filter(|l| {
                l.reserved && !l.cancelled && &l.holder != holder && capacity.fits(&l.trial)
            })
            .filter(|l| {
                only.is_none_or(|(from, group)| &l.holder == from && &l.trial.group == group)
            })
            .min_by_key(|l| lease_number(&l.lease_id))?
            .lease_id
            .clone();
        let old = self.leases.remove(&victim)?;
        self.running.remove(&old.trial.trial_id);
        let mut lease = self.lease(old.trial, holder.clone(), None, now);
        self.amend(&mut lease, |l| l.taken_from = Some(old.holder.clone()));
        Some(lease)
    }

    /// Leases the first queued trial that fits, plus up to `max - 1` more
    /// queued trials of the same group (for seed fusion), all to `holder`.
    pub fn acquire_group(
        &mut self,
        holder: Holder,
        capacity: Capacity,
        max: usize,
        now: Instant,
    ) -> Vec<Lease> {
        let first = self.acquire(holder.clone(), capacity, now);
        self.with_group_mates(first, holder, capacity, max, now)
    }

    /// `first` plus up to `max - 1` leases of its group: the rest of a
    /// reservation it took over, or queued seeds of its configuration.
    fn with_group_mates(
        &mut self,
        first: Option<Lease>,
        holder: Holder,
        capacity: Capacity,
        max: usize,
        now: Instant,
    ) -> Vec<Lease> {
        let Some(first) = first else {
            return Vec::new();
        };
        let group = first.trial.group.clone();
        if let Some(from) = first.taken_from.clone() {
            // Took over a reservation: take the rest of its fused group too.
            let mut out = vec![first];
            while out.len() < max {
                match self.take_over_reservation(&holder, capacity, Some((&from, &group)), now) {
                    Some(l) => out.push(l),
                    None => break,
                }
            }
            return out;
        }
        let mut out = vec![first];
        if max > 1 {
            let mates: Vec<usize> = self
                .queue
                .iter()
                .enumerate()
                .filter(|(_, t)| t.group == group && self.queued.contains(&t.trial_id))
                .map(|(i, _)| i)
                .take(max - 1)
                .collect();
            // Remove from the back so earlier indices stay valid.
            let mut taken: Vec<TrialRef> = mates
                .into_iter()
                .rev()
                .filter_map(|i| self.queue.remove(i))
                .collect();
            taken.reverse();
            for t in taken {
                self.queued.remove(&t.trial_id);
                out.push(self.lease(t, holder.clone(), None, now));
            }
        }
        out
    }

    /// Like [`Scheduler::acquire_group`] for a worker that is still busy: the
    /// leases are reservations (see the module docs). Never takes over
    /// another worker's reservation.
    pub fn reserve_group(
        &mut self,
        holder: Holder,
        capacity: Capacity,
        max: usize,
        now: Instant,
    ) -> Vec<Lease> {
        let first = self.take_queued(&holder, capacity, now);
        let mut leases = self.with_group_mates(first, holder, capacity, max, now);
        for l in &mut leases {
            self.amend(l, |l| l.reserved = true);
        }
        leases
    }

    /// Number of reservations not started yet.
    pub fn reserved_len(&self) -> usize {
        self.leases.values().filter(|l| l.reserved).count()
    }

    /// Applies `change` to a lease handed out and to its stored copy.
    fn amend(&mut self, lease: &mut Lease, change: impl Fn(&mut Lease)) {
        change(lease);
        if let Some(stored) = self.leases.get_mut(&lease.lease_id) {
            change(stored);
        }
    }

    fn lease(
        &mut self,
        trial: TrialRef,
        holder: Holder,
        id: Option<String>,
        now: Instant,
    ) -> Lease {
        // A fresh id never reuses one in use: after a coordinator restart,
        // re-adopted leases keep the ids an earlier coordinator minted.
        let lease_id = id.unwrap_or_else(|| {
            loop {
                let id = format!("l{}", self.next_lease);
                self.next_lease += 1;
                if !self.leases.contains_key(&id) {
                    break id;
                }
            }
        });
        let lease = Lease {
            lease_id: lease_id.clone(),
            trial: trial.clone(),
            holder,
            expires_at: now + self.ttl,
            started_at: now,
            cancelled: false,
            reserved: false,
            taken_from: None,
        };
        self.running.insert(trial.trial_id, lease_id.clone());
        self.leases.insert(lease_id, lease.clone());
        lease
    }

    /// Renews a lease held by `holder`; `started` marks a reservation as
    /// started (it can no longer be taken over).
    pub fn renew(
        &mut self,
        lease_id: &str,
        holder: &Holder,
        started: bool,
        now: Instant,
    ) -> RenewOutcome {
        match self.leases.get_mut(lease_id) {
            None => RenewOutcome::Unknown,
            Some(l) if &l.holder != holder => RenewOutcome::NotHolder,
            Some(l) => {
                l.expires_at = now + self.ttl;
                if started && l.reserved {
                    l.reserved = false;
                    l.started_at = now;
                }
                RenewOutcome::Renewed {
                    cancelled: l.cancelled,
                }
            }
        }
    }

    /// Lets a worker keep a trial it is already running under a lease this
    /// scheduler does not know (after a coordinator restart): succeeds only
    /// if the trial is queued, i.e. nobody else holds it.
    pub fn adopt(&mut self, trial_id: &str, lease_id: &str, holder: Holder, now: Instant) -> bool {
        if !self.queued.contains(trial_id)
            || self.leases.contains_key(lease_id)
            || self.revoked.contains(lease_id)
        {
            return false;
        }
        let Some(pos) = self.queue.iter().position(|t| &*t.trial_id == trial_id) else {
            return false;
        };
        let Some(trial) = self.queue.remove(pos) else {
            return false;
        };
        self.queued.remove(trial_id);
        // Later fresh ids count on from the adopted one.
        let n = lease_number(lease_id);
        if n != u64::MAX {
            self.next_lease = self.next_lease.max(n + 1);
        }
        self.lease(trial, holder, Some(lease_id.to_string()), now);
        true
    }

    /// Marks `lease_id` so that its holder cannot re-adopt its trial once
    /// the lease ends (its heartbeat then stops the trial): for a lease
    /// ended because its attempt ran too long.
    pub fn revoke(&mut self, lease_id: &str) {
        self.revoked.insert(lease_id.to_string());
    }

    /// Every lease (running trials and reservations).
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// The lease on a trial, if it is running.
    pub fn lease_of(&self, trial_id: &str) -> Option<&Lease> {
        self.running
            .get(trial_id)
            .and_then(|id| self.leases.get(id))
    }

    pub fn lease_by_id(&self, lease_id: &str) -> Option<&Lease> {
        self.leases.get(lease_id)
    }

    /// Removes a trial from the scheduler (finished or dropped): its lease
    /// ends and it leaves the queue. Returns the lease it had, if any.
    pub fn finish(&mut self, trial_id: &str) -> Option<Lease> {
        self.queued.remove(trial_id);
        let lease_id = self.running.remove(trial_id)?;
        self.leases.remove(&lease_id)
    }

    /// Ends a trial's lease and puts the trial back at the front of the
    /// queue (a retry, or a worker draining). A trial without a lease
    /// (already queued again, or finished) stays as it is. Returns whether a
    /// lease ended.
    pub fn requeue(&mut self, trial_id: &str) -> bool {
        let Some(lease_id) = self.running.remove(trial_id) else {
            return false;
        };
        match self.leases.remove(&lease_id) {
            Some(lease) => {
                self.enqueue_front(lease.trial);
                true
            }
            None => false,
        }
    }

    /// Whether `holder` holds the lease of `trial_id` (a report about a
    /// trial from a worker that lost its lease must not end the lease of the
    /// worker that runs it now).
    pub fn holds(&self, trial_id: &str, holder: &Holder) -> bool {
        self.lease_of(trial_id).is_some_and(|l| &l.holder == holder)
    }

    /// Expires every lease past its deadline and re-queues its trial.
    pub fn expire(&mut self, now: Instant) -> Vec<Lease> {
        let expired: Vec<String> = self
            .leases
            .values()
            .filter(|l| l.expires_at <= now)
            .map(|l| l.lease_id.clone())
            .collect();
        let mut out = Vec::with_capacity(expired.len());
        for id in expired {
            if let Some(lease) = self.leases.remove(&id) {
                self.running.remove(&lease.trial.trial_id);
                if !lease.cancelled {
                    self.enqueue_front(lease.trial.clone());
                }
                out.push(lease);
            }
        }
        out
    }

    /// Drops the queued trials of a sweep and flags its running leases as
    /// cancelled (their holders learn it at the next heartbeat).
    pub fn cancel_sweep(&mut self, sweep_id: &str) -> usize {
        let before = self.queued.len();
        let drop: Vec<Arc<str>> = self
            .queue
            .iter()
            .filter(|t| &*t.sweep_id == sweep_id)
            .map(|t| t.trial_id.clone())
            .collect();
        for id in drop {
            self.queued.remove(&id);
        }
        self.queue.retain(|t| &*t.sweep_id != sweep_id);
        for l in self.leases.values_mut() {
            if &*l.trial.sweep_id == sweep_id {
                l.cancelled = true;
            }
        }
        before - self.queued.len()
    }

    /// Ends every lease held by an older generation of `worker_id` (the
    /// worker restarted) and re-queues those trials.
    pub fn fence(&mut self, worker_id: &str, current_generation: u64) -> Vec<Lease> {
        let stale: Vec<String> = self
            .leases
            .values()
            .filter(|l| l.holder.worker_id == worker_id && l.holder.generation < current_generation)
            .map(|l| l.lease_id.clone())
            .collect();
        let mut out = Vec::new();
        for id in stale {
            if let Some(lease) = self.leases.remove(&id) {
                self.running.remove(&lease.trial.trial_id);
                self.enqueue_front(lease.trial.clone());
                out.push(lease);
            }
        }
        out
    }
}

/// The number in a lease id `l<n>` (for oldest-first ordering).
fn lease_number(lease_id: &str) -> u64 {
    lease_id
        .strip_prefix('l')
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
