//! Workers and leases: registration, acquiring and reserving trials,
//! heartbeats, releases and lease expiry.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::state::WorkerInfo;
use super::*;
use crate::scheduler::{Capacity, Holder, RenewOutcome};

impl Coordinator {
    /// Registers a worker; a known worker id gets a new generation and its
    /// old leases are fenced off.
    pub fn register(&self, name: &str, caps: WorkerCaps) -> Result<Registration> {
        if caps.gpus.len() > MAX_WORKER_GPUS
            || caps.trials_per_gpu as usize > MAX_WORKER_GPUS
            || caps.backend.len() > MAX_BACKEND_NAME
            || caps.backend.chars().any(char::is_control)
        {
            return Err(CoordinatorError::Invalid(format!(
                "a worker registers at most {MAX_WORKER_GPUS} GPUs, {MAX_WORKER_GPUS} trials per \
                 GPU and a backend name of at most {MAX_BACKEND_NAME} printable bytes"
            )));
        }
        let mut state = self.state();
        let known = !name.is_empty() && state.workers.contains_key(name);
        if !known && state.workers.len() >= MAX_WORKERS {
            return Err(CoordinatorError::Full(format!(
                "the coordinator knows {MAX_WORKERS} workers, the most it holds; idle ones are \
                 forgotten after {}s: try again later",
                FORGET_IDLE_WORKERS_AFTER.as_secs()
            )));
        }
        let generation = state.next_generation;
        state.next_generation += 1;
        let worker_id = if name.is_empty() {
            format!("worker-{generation}")
        } else {
            name.to_string()
        };
        let fenced = state.scheduler.fence(&worker_id, generation);
        // Sweeps whose watchers were told why nothing starts, and which this
        // worker may change (checked in O(1) each: registrations can come
        // in storms).
        let capacity = caps.capacity();
        let waiting: Vec<String> = state
            .sweeps
            .iter()
            .filter(|(_, s)| s.state == SweepRunState::Running)
            .filter(|(_, s)| match &s.watch.borrow().waiting {
                Some(Waiting::NoWorker) => true,
                Some(Waiting::NoneFits(_)) => capacity.fits_need(
                    s.spec.resources.gpus_per_trial,
                    s.spec.resources.trials_per_gpu,
                ),
                None => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        state.workers.insert(
            worker_id.clone(),
            WorkerInfo {
                generation,
                caps,
                last_seen: Instant::now(),
            },
        );
        for lease in &fenced {
            state.note_requeued(&lease.trial.trial_id);
            state.note_lost(lease);
        }
        drop(state);
        if !fenced.is_empty() {
            self.inner.work_available.notify_waiters();
        }
        for id in &waiting {
            self.publish(id);
        }
        tracing::info!(worker = %worker_id, generation, "worker registered");
        Ok(Registration {
            worker_id,
            generation,
        })
    }

    /// Forgets the workers not heard from for [`FORGET_IDLE_WORKERS_AFTER`]
    /// (or ten lease TTLs, if longer) that hold no lease; returns how many.
    pub fn forget_idle_workers(&self) -> usize {
        let after = FORGET_IDLE_WORKERS_AFTER.max(self.inner.config.lease_ttl * 10);
        let mut guard = self.state();
        let state = &mut *guard;
        let holders: std::collections::HashSet<&str> = state
            .scheduler
            .leases()
            .map(|l| l.holder.worker_id.as_str())
            .collect();
        let before = state.workers.len();
        state
            .workers
            .retain(|id, w| holders.contains(id.as_str()) || w.last_seen.elapsed() <= after);
        before - state.workers.len()
    }

    /// Tells the watchers of sweeps that wait for a worker when a worker
    /// fell silent (its last call now older than the lease TTL) since the
    /// last look: a sweep its trials could start on waits again, and
    /// nothing else would say so (a registration, a lease ending or a
    /// completion does). Returns how many sweeps' watchers were told.
    pub fn tell_silent_workers(&self) -> usize {
        let ttl = self.inner.config.lease_ttl;
        let changed: Vec<String> = {
            let mut state = self.state();
            let (since, now) = (state.silence_checked, Instant::now());
            state.silence_checked = now;
            let fell_silent = state.workers.values().any(|w| {
                let line = w.last_seen + ttl;
                since < line && line <= now
            });
            if !fell_silent {
                return 0;
            }
            state
                .sweeps
                .iter()
                .filter(|(_, s)| s.state == SweepRunState::Running)
                .filter(|(_, s)| s.watch.borrow().waiting != state.progress_of(s, ttl).waiting)
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in &changed {
            self.publish(id);
        }
        changed.len()
    }

    /// Keeps the declarations of the models a registering worker can train
    /// beyond the built-in ones (whose declarations the coordinator has
    /// itself), so that sweeps for them are checked at submit. The latest
    /// declaration of a name wins; at most [`MAX_DECLARED_MODELS`] are kept.
    pub fn declare_models(&self, models: &[sigsweep_types::ModelDecl]) -> Result<()> {
        let custom: Vec<&sigsweep_types::ModelDecl> = models
            .iter()
            .filter(|m| sigsweep_types::params::model(&m.name).is_none())
            .collect();
        let mut state = self.state();
        let new = custom
            .iter()
            .filter(|m| !state.declared.contains_key(m.name.as_ref()))
            .count();
        if state.declared.len() + new > MAX_DECLARED_MODELS {
            return Err(CoordinatorError::Invalid(format!(
                "the coordinator keeps the declarations of at most {MAX_DECLARED_MODELS} models besides the built-in ones"
            )));
        }
        for m in custom {
            state.declared.insert(m.name.to_string(), m.clone());
        }
        Ok(())
    }

    /// Checks that `worker_id` is registered with `generation`, notes that it
    /// is alive, and returns it as a lease holder.
    pub(super) fn check_worker(
        state: &mut State,
        worker_id: &str,
        generation: u64,
    ) -> Result<Holder> {
        let info = state
            .workers
            .get_mut(worker_id)
            .ok_or_else(|| CoordinatorError::UnknownWorker(worker_id.to_string()))?;
        if info.generation != generation {
            return Err(CoordinatorError::StaleGeneration {
                worker: worker_id.to_string(),
                got: generation,
                current: info.generation,
            });
        }
        info.last_seen = Instant::now();
        Ok(Holder {
            worker_id: worker_id.to_string(),
            generation,
        })
    }

    /// Leases a trial to a worker, waiting up to `wait` for one.
    pub async fn acquire(
        &self,
        worker_id: &str,
        generation: u64,
        wait: Duration,
    ) -> Result<Option<Assignment>> {
        let deadline = Instant::now() + wait.min(self.inner.config.max_acquire_wait);
        loop {
            let notified = self.inner.work_available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(a) = self.try_acquire(worker_id, generation)? {
                return Ok(Some(a));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    /// Like [`Coordinator::acquire`], but may return up to `max` trials:
    /// further seeds of the same configuration when the sweep fuses seeds.
    pub async fn acquire_many(
        &self,
        worker_id: &str,
        generation: u64,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Assignment>> {
        let deadline = Instant::now() + wait.min(self.inner.config.max_acquire_wait);
        loop {
            let notified = self.inner.work_available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.try_acquire_many(worker_id, generation, max.max(1))?;
            if !got.is_empty() {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    pub(super) fn try_acquire(
        &self,
        worker_id: &str,
        generation: u64,
    ) -> Result<Option<Assignment>> {
        Ok(self
            .try_acquire_many(worker_id, generation, 1)?
            .into_iter()
            .next())
    }

    pub(super) fn try_acquire_many(
        &self,
        worker_id: &str,
        generation: u64,
        max: usize,
    ) -> Result<Vec<Assignment>> {
        self.lease_for(worker_id, generation, max, false)
    }

    /// Leases the trials a busy worker will start after its running ones (a
    /// reservation: see [`crate::scheduler`]); never waits. The worker
    /// heartbeats a reservation like any lease, and marks it started with
    /// its first heartbeat after starting it.
    pub fn reserve(&self, worker_id: &str, generation: u64, max: usize) -> Result<Vec<Assignment>> {
        self.lease_for(worker_id, generation, max.max(1), true)
    }

    pub(super) fn lease_for(
        &self,
        worker_id: &str,
        generation: u64,
        max: usize,
        reserve: bool,
    ) -> Result<Vec<Assignment>> {
        let mut state = self.state();
        let holder = Self::check_worker(&mut state, worker_id, generation)?;
        let capacity = state
            .workers
            .get(worker_id)
            .map_or(Capacity::gpus(0), |w| w.caps.capacity());
        let now = Instant::now();
        let leases = if reserve {
            state.scheduler.reserve_group(holder, capacity, max, now)
        } else {
            state.scheduler.acquire_group(holder, capacity, max, now)
        };
        let mut out = Vec::with_capacity(leases.len());
        for lease in leases {
            let entry = state
                .trials
                .get_mut(&lease.trial.trial_id)
                .ok_or_else(|| CoordinatorError::UnknownTrial(lease.trial.trial_id.to_string()))?;
            // An attempt counts when it starts: now, or for a reservation
            // when its worker starts it (`renew_lease`).
            let taken_over = lease.taken_from.is_some();
            if !reserve {
                entry.attempts += 1;
            }
            out.push(Assignment {
                lease_id: lease.lease_id.clone(),
                attempt: entry.attempts + u32::from(reserve),
                sweep_id: lease.trial.sweep_id.to_string(),
                spec: entry.spec.clone(),
                trial: entry.plan.clone(),
            });
            if !taken_over {
                state.note_started(&lease.trial.trial_id);
            }
        }
        Ok(out)
    }

    /// Marks leases of a reservation as started (the worker's first
    /// heartbeat for them). Returns the ones that are gone or cancelled.
    pub fn start_reserved(
        &self,
        worker_id: &str,
        generation: u64,
        lease_ids: &[String],
    ) -> Result<Vec<String>> {
        if lease_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut state = self.state();
        let holder = Self::check_worker(&mut state, worker_id, generation)?;
        let now = Instant::now();
        Ok(lease_ids
            .iter()
            .filter(|id| {
                !matches!(
                    Self::renew_lease(&mut state, id, &holder, true, now),
                    RenewOutcome::Renewed { cancelled: false }
                )
            })
            .cloned()
            .collect())
    }

    /// Renews a lease; `started` marks a reservation as started, which is
    /// when its trial's attempt counts.
    fn renew_lease(
        state: &mut State,
        lease_id: &str,
        holder: &Holder,
        started: bool,
        now: Instant,
    ) -> RenewOutcome {
        let starting = state
            .scheduler
            .lease_by_id(lease_id)
            .filter(|l| started && l.reserved && &l.holder == holder)
            .map(|l| l.trial.trial_id.clone());
        let outcome = state.scheduler.renew(lease_id, holder, started, now);
        if let (Some(trial_id), RenewOutcome::Renewed { .. }) = (starting, &outcome)
            && let Some(entry) = state.trials.get_mut(&trial_id)
        {
            entry.attempts += 1;
        }
        outcome
    }

    /// Renews a lease. Returns `(lease_valid, cancel)`. A worker that kept
    /// running through a coordinator restart re-adopts its trial here.
    /// `reserved` is true while the lease is a reservation the worker has
    /// not started.
    pub fn heartbeat(
        &self,
        worker_id: &str,
        generation: u64,
        lease_id: &str,
        trial_id: &str,
        reserved: bool,
    ) -> Result<(bool, bool)> {
        let mut state = self.state();
        let holder = Self::check_worker(&mut state, worker_id, generation)?;
        let now = Instant::now();
        match Self::renew_lease(&mut state, lease_id, &holder, !reserved, now) {
            RenewOutcome::Renewed { cancelled } => Ok((true, cancelled)),
            RenewOutcome::NotHolder => Ok((false, false)),
            RenewOutcome::Unknown => {
                if !trial_id.is_empty() && state.scheduler.adopt(trial_id, lease_id, holder, now) {
                    state.note_started(trial_id);
                    // Its worker was not lost after all (a partition, not
                    // a crash): the loss its expiry counted is taken back.
                    if let Some(entry) = state.trials.get_mut(trial_id) {
                        entry.lost = entry.lost.saturating_sub(1);
                    }
                    tracing::info!(worker = %worker_id, trial = %trial_id, "lease re-adopted");
                    Ok((true, false))
                } else {
                    Ok((false, false))
                }
            }
        }
    }

    /// Hands a trial back without counting a failure (a draining worker).
    pub fn release(&self, worker_id: &str, generation: u64, trial_id: &str) -> Result<()> {
        {
            let mut state = self.state();
            let holder = Self::check_worker(&mut state, worker_id, generation)?;
            // Only the lease's holder hands it back: a worker whose
            // reservation was taken over releases nothing of the new holder's.
            if !state.scheduler.holds(trial_id, &holder) {
                tracing::debug!(trial = %trial_id, worker = %worker_id, "release of a lease this worker does not hold; ignored");
                return Ok(());
            }
            if state.scheduler.requeue(trial_id) {
                state.note_requeued(trial_id);
            }
            state.release_trial(trial_id);
        }
        self.inner.work_available.notify_waiters();
        Ok(())
    }

    /// Expires overdue leases; returns how many trials went back to the queue.
    pub fn expire_leases(&self) -> usize {
        let expired = {
            let mut state = self.state();
            let expired = state.scheduler.expire(Instant::now());
            for l in &expired {
                state.note_requeued(&l.trial.trial_id);
                state.note_lost(l);
                state.release_trial(&l.trial.trial_id);
                tracing::warn!(trial = %l.trial.trial_id, worker = %l.holder.worker_id, "lease expired; trial re-queued");
            }
            expired.len()
        };
        if expired > 0 {
            self.inner.work_available.notify_waiters();
            let sweeps: Vec<Arc<str>> = self
                .state()
                .sweeps
                .keys()
                .map(|k| Arc::from(k.as_str()))
                .collect();
            for s in sweeps {
                self.publish(&s);
            }
        }
        expired
    }

    /// Runs lease expiry until `shutdown`.
    pub async fn run_expiry(self, shutdown: CancellationToken) {
        let period = (self.inner.config.lease_ttl / 4).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    self.expire_leases();
                    self.tell_silent_workers();
                    self.forget_idle_workers();
                    if let Err(e) = self.fail_lost().await {
                        tracing::warn!(error = %e, "storing a trial that lost its workers failed; will retry");
                    }
                    if let Err(e) = self.time_out_trials().await {
                        tracing::warn!(error = %e, "failing an attempt past its trial_timeout failed; will retry");
                    }
                }
            }
        }
    }

    /// Number of workers seen within the last lease TTL.
    pub fn live_workers(&self) -> usize {
        let ttl = self.inner.config.lease_ttl;
        self.state()
            .workers
            .values()
            .filter(|w| w.last_seen.elapsed() <= ttl)
            .count()
    }
}
