//! The coordinator's core: sweeps in memory, the scheduler, and the durable
//! catalog, behind a cheap-to-clone [`Coordinator`] handle.
//!
//! Locking: one `std::sync::Mutex` over the in-memory state, never held
//! across an `.await`; store writes happen outside it. State changes that
//! must be durable (a result, a failure count, a sweep's state) are written
//! to the store before the in-memory state changes, so a crash in between
//! at worst repeats a trial, whose result is then stored once.

mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use indexmap::IndexMap;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::scheduler::{Capacity, Holder, RenewOutcome, Scheduler, TrialRef};
use crate::store::{Catalog, ResultRecord, StoreError, SweepRecord, SweepRecordState};
use crate::sweep::{SweepError, SweepSpec};
use state::{State, SweepRuntime, TrialEntry, WorkerInfo};
pub use state::{SweepProgress, SweepRunState};

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// A lease expires this long after its last heartbeat.
    pub lease_ttl: Duration,
    /// Longest an AcquireTrial call waits for work.
    pub max_acquire_wait: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            max_acquire_wait: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Sweep(#[from] SweepError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown sweep `{0}`")]
    UnknownSweep(String),
    #[error("unknown worker `{0}`: register first")]
    UnknownWorker(String),
    #[error("worker `{worker}` generation {got} is stale (current {current})")]
    StaleGeneration {
        worker: String,
        got: u64,
        current: u64,
    },
    #[error("unknown trial `{0}`")]
    UnknownTrial(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

/// A worker's registration.
#[derive(Debug, Clone)]
pub struct Registration {
    pub worker_id: String,
    pub generation: u64,
}

/// What a worker reports about itself.
#[derive(Debug, Clone, Default)]
pub struct WorkerCaps {
    pub backend: String,
    pub gpus: Vec<u32>,
    pub trials_per_gpu: u32,
}

/// Most models the coordinator keeps declarations of, beyond the built-in
/// ones (a registration that would exceed it is refused, naming it).
pub const MAX_DECLARED_MODELS: usize = 256;

/// A trial handed to a worker.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub lease_id: String,
    pub attempt: u32,
    pub sweep_id: String,
    pub spec: Arc<SweepSpec>,
    pub trial: crate::sweep::TrialPlan,
}

/// A finished trial as reported by a worker.
#[derive(Debug, Clone)]
pub struct Completion {
    pub worker_id: String,
    pub generation: u64,
    pub lease_id: String,
    pub trial_id: String,
    pub test_metrics: BTreeMap<String, f64>,
    pub valid_metrics: BTreeMap<String, f64>,
    pub selected_epoch: u32,
    pub seconds: f64,
}

/// Result of a submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub sweep_id: String,
    pub total_trials: u32,
    pub created: bool,
}

struct Inner {
    catalog: Catalog,
    config: CoordinatorConfig,
    state: Mutex<State>,
    work_available: Notify,
}

/// Cheap-to-clone handle on the coordinator.
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Coordinator {
    /// Loads every running sweep from the catalog and queues the trials that
    /// have no stored result yet.
    pub async fn start(catalog: Catalog, config: CoordinatorConfig) -> Result<Self> {
        // Generations only grow, across restarts too: start from the clock.
        let first_generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let coordinator = Self {
            inner: Arc::new(Inner {
                catalog,
                state: Mutex::new(State::new(
                    Scheduler::new(config.lease_ttl),
                    first_generation,
                )),
                config,
                work_available: Notify::new(),
            }),
        };
        // Every stored sweep is served again: running ones are queued,
        // finished and cancelled ones are listed with their results.
        let sweeps = coordinator.inner.catalog.sweeps().await?;
        let stopped_results = if sweeps.iter().any(|r| r.state != SweepRecordState::Running) {
            coordinator.inner.catalog.results().await?
        } else {
            HashMap::new()
        };
        for record in sweeps {
            match SweepSpec::parse(&record.source, &record.source_name) {
                Ok(spec) if record.state == SweepRecordState::Running => {
                    coordinator.load_sweep(record, spec).await?;
                }
                Ok(spec) => coordinator.list_stopped(record, spec, &stopped_results),
                Err(e) => {
                    tracing::error!(sweep = %record.sweep_id, error = %e, "stored sweep no longer parses; skipped")
                }
            }
        }
        Ok(coordinator)
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.inner.config
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated
        // in a way later calls can't handle, so recover from poisoning.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts a sweep into memory: trials with stored results count as done,
    /// the others are queued.
    async fn load_sweep(&self, record: SweepRecord, spec: SweepSpec) -> Result<()> {
        let plans = spec.trials();
        let mut results = HashMap::new();
        for p in &plans {
            if let Some(r) = self.inner.catalog.result(&p.trial_id).await? {
                results.insert(p.trial_id.clone(), r);
            }
        }
        let spec = Arc::new(spec);
        {
            let mut state = self.state();
            if state.sweeps.contains_key(&record.sweep_id) {
                return Ok(());
            }
            let sweep_id: Arc<str> = Arc::from(record.sweep_id.as_str());
            let gpus = spec.resources.gpus_per_trial;
            let share = spec.resources.trials_per_gpu;
            let fuse = spec.resources.fuse_seeds;
            let mut runtime = SweepRuntime::new(record, spec.clone(), plans.len());
            for plan in plans {
                let trial_id: Arc<str> = Arc::from(plan.trial_id.as_str());
                runtime.trial_ids.push(trial_id.clone());
                if let Some(r) = results.get(&plan.trial_id) {
                    runtime.count_result(r);
                }
                let entry = state
                    .trials
                    .entry(trial_id.clone())
                    .or_insert_with(|| TrialEntry::new(plan.clone(), spec.clone()));
                if !entry.sweeps.contains(&sweep_id) {
                    entry.sweeps.push(sweep_id.clone());
                }
                if results.contains_key(&plan.trial_id) {
                    entry.done = true;
                } else if !entry.done {
                    // Seeds of one configuration form a fusion group (only
                    // when the sweep asks for it: otherwise every trial is
                    // its own group).
                    let group: Arc<str> = if fuse {
                        Arc::from(format!("{sweep_id}/{}", plan.config.key).as_str())
                    } else {
                        trial_id.clone()
                    };
                    state.scheduler.enqueue(TrialRef {
                        sweep_id: sweep_id.clone(),
                        trial_id,
                        gpus,
                        share,
                        group,
                    });
                }
            }
            runtime.running = 0;
            runtime.queued = runtime.total - runtime.completed - runtime.failed;
            state.sweeps.insert(sweep_id.to_string(), runtime);
        }
        self.after_change(None).await;
        self.inner.work_available.notify_waiters();
        Ok(())
    }

    /// Puts a finished or cancelled sweep into memory: listed, watchable
    /// (a watch ends at once) and its results readable; nothing runs.
    fn list_stopped(
        &self,
        record: SweepRecord,
        spec: SweepSpec,
        all: &HashMap<String, ResultRecord>,
    ) {
        let spec = Arc::new(spec);
        let plans = spec.trials();
        let sweep_id = record.sweep_id.clone();
        let mut runtime = SweepRuntime::new(record, spec.clone(), plans.len());
        for p in &plans {
            runtime.trial_ids.push(Arc::from(p.trial_id.as_str()));
            if let Some(r) = all.get(p.trial_id.as_str()) {
                runtime.count_result(r);
            }
        }
        runtime.queued = 0;
        runtime.running = 0;
        let mut state = self.state();
        state.sweeps.entry(sweep_id).or_insert(runtime);
    }

    /// Submits a sweep file. The same file submitted again is the same sweep.
    pub async fn submit(&self, source: &str, source_name: &str) -> Result<Submitted> {
        let spec = SweepSpec::parse(source, source_name)?;
        let declared: Vec<sigsweep_types::ModelDecl> =
            self.state().declared.values().cloned().collect();
        spec.check_declared(&declared)?;
        let sweep_id = spec.sweep_id();
        let total_trials = spec.trials().len() as u32;
        let record = SweepRecord {
            sweep_id: sweep_id.clone(),
            name: spec.name.clone(),
            source: source.to_string(),
            source_name: source_name.to_string(),
            state: SweepRecordState::Running,
            submitted_at: now_unix(),
        };
        let created = self.inner.catalog.create_sweep(&record).await?;
        let known = self.state().sweeps.contains_key(&sweep_id);
        if !known {
            let stored = self.inner.catalog.sweep(&sweep_id).await?.unwrap_or(record);
            if stored.state == SweepRecordState::Running {
                self.load_sweep(stored, spec).await?;
            } else {
                let all = self.inner.catalog.results().await?;
                self.list_stopped(stored, spec, &all);
            }
        }
        tracing::info!(sweep = %sweep_id, trials = total_trials, created, "sweep submitted");
        Ok(Submitted {
            sweep_id,
            total_trials,
            created,
        })
    }

    /// Registers a worker; a known worker id gets a new generation and its
    /// old leases are fenced off.
    pub fn register(&self, name: &str, caps: WorkerCaps) -> Registration {
        let mut state = self.state();
        let generation = state.next_generation;
        state.next_generation += 1;
        let worker_id = if name.is_empty() {
            format!("worker-{generation}")
        } else {
            name.to_string()
        };
        let fenced = state.scheduler.fence(&worker_id, generation);
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
        }
        drop(state);
        if !fenced.is_empty() {
            self.inner.work_available.notify_waiters();
        }
        tracing::info!(worker = %worker_id, generation, "worker registered");
        Registration {
            worker_id,
            generation,
        }
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
    fn check_worker(state: &mut State, worker_id: &str, generation: u64) -> Result<Holder> {
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

    fn try_acquire(&self, worker_id: &str, generation: u64) -> Result<Option<Assignment>> {
        Ok(self
            .try_acquire_many(worker_id, generation, 1)?
            .into_iter()
            .next())
    }

    fn try_acquire_many(
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

    fn lease_for(
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
            .map_or(Capacity::gpus(0), |w| Capacity {
                gpu_slots: w.caps.gpus.len() as u32,
                sharers: w.caps.trials_per_gpu.max(1),
            });
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
            // Taking over a reservation that never started is not an attempt.
            let taken_over = lease.taken_from.is_some();
            if !taken_over {
                entry.attempts += 1;
            }
            out.push(Assignment {
                lease_id: lease.lease_id.clone(),
                attempt: entry.attempts,
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
                    state.scheduler.renew(id, &holder, true, now),
                    RenewOutcome::Renewed { cancelled: false }
                )
            })
            .cloned()
            .collect())
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
        match state.scheduler.renew(lease_id, &holder, !reserved, now) {
            RenewOutcome::Renewed { cancelled } => Ok((true, cancelled)),
            RenewOutcome::NotHolder => Ok((false, false)),
            RenewOutcome::Unknown => {
                if !trial_id.is_empty() && state.scheduler.adopt(trial_id, lease_id, holder, now) {
                    state.note_started(trial_id);
                    tracing::info!(worker = %worker_id, trial = %trial_id, "lease re-adopted");
                    Ok((true, false))
                } else {
                    Ok((false, false))
                }
            }
        }
    }

    /// Stores a completed trial. Returns whether it was stored (false for a
    /// duplicate).
    ///
    /// A completion is checked before anything is stored: its size against
    /// [`MAX_METRICS`] and [`MAX_METRIC_NAME`] (an `Invalid` error naming
    /// the limit), its lease (one that is live for another trial is refused),
    /// and its metrics against the sweep's protocol: every reported metric
    /// and the selection metric must be there, finite, for each split the
    /// protocol uses. A completion that fails the last check fails its trial
    /// for good (the same training would report the same metrics), with a
    /// reason naming the metric, and the call answers `Invalid`.
    pub async fn complete(&self, c: Completion) -> Result<bool> {
        check_metric_bounds("test_metrics", &c.test_metrics)?;
        check_metric_bounds("valid_metrics", &c.valid_metrics)?;
        let protocol_error = {
            let mut state = self.state();
            Self::check_worker(&mut state, &c.worker_id, c.generation)?;
            if let Some(lease) = state.scheduler.lease_by_id(&c.lease_id)
                && &*lease.trial.trial_id != c.trial_id.as_str()
            {
                return Err(CoordinatorError::Invalid(format!(
                    "lease `{}` is held for another trial, not `{}`",
                    c.lease_id, c.trial_id
                )));
            }
            let entry = state
                .trials
                .get(c.trial_id.as_str())
                .ok_or_else(|| CoordinatorError::UnknownTrial(c.trial_id.clone()))?;
            check_protocol_metrics(&entry.spec, &c)
        };
        if let Some(reason) = protocol_error {
            self.fail_with(&c.worker_id, c.generation, &c.trial_id, &reason, false)
                .await?;
            return Err(CoordinatorError::Invalid(format!(
                "completion refused and the trial failed: {reason}"
            )));
        }
        let (result, sweeps) = {
            let mut state = self.state();
            Self::check_worker(&mut state, &c.worker_id, c.generation)?;
            // The lease must be this worker's, or nobody's (expired, or
            // unknown after a coordinator restart).
            if let Some(lease) = state.scheduler.lease_of(&c.trial_id)
                && (lease.holder.worker_id != c.worker_id
                    || lease.holder.generation != c.generation)
            {
                tracing::info!(trial = %c.trial_id, worker = %c.worker_id, "completion from a worker that lost its lease; storing if first");
            }
            let entry = state
                .trials
                .get(c.trial_id.as_str())
                .ok_or_else(|| CoordinatorError::UnknownTrial(c.trial_id.clone()))?;
            let result = ResultRecord {
                trial_id: c.trial_id.clone(),
                sweep_id: entry
                    .sweeps
                    .first()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                config_key: entry.plan.config.key.clone(),
                config: json_config(&entry.plan.config.values),
                seed: entry.plan.seed,
                status: sigsweep_types::TrialStatus::Completed,
                metrics: c.test_metrics.clone(),
                valid_metrics: c.valid_metrics.clone(),
                selected_epoch: Some(c.selected_epoch),
                failure: None,
                attempts: entry.attempts.max(1),
                seconds: c.seconds,
                worker: c.worker_id.clone(),
            };
            (result, entry.sweeps.clone())
        };
        let stored = self.inner.catalog.put_result(&result).await?;
        {
            let mut state = self.state();
            let was_done = state
                .trials
                .get(c.trial_id.as_str())
                .is_some_and(|e| e.done);
            if let Some(e) = state.trials.get_mut(c.trial_id.as_str()) {
                e.done = true;
            }
            let had_lease = state.scheduler.finish(&c.trial_id).is_some();
            if stored && !was_done {
                state.note_finished(&result, had_lease);
            }
        }
        self.after_change(Some(&sweeps)).await;
        Ok(stored)
    }

    /// Records a failed attempt; the trial is retried until `max_retries`,
    /// then stored as failed with its reason. Returns whether it will retry.
    pub async fn fail(
        &self,
        worker_id: &str,
        generation: u64,
        trial_id: &str,
        reason: &str,
    ) -> Result<bool> {
        self.fail_with(worker_id, generation, trial_id, reason, true)
            .await
    }

    /// Like [`Coordinator::fail`]; a failure that is not `retryable` (bad
    /// parameters, a missing file, a wrong format, a divergence from the
    /// same seed: the same attempt would fail the same way) fails the trial
    /// at once, without retries.
    pub async fn fail_with(
        &self,
        worker_id: &str,
        generation: u64,
        trial_id: &str,
        reason: &str,
        retryable: bool,
    ) -> Result<bool> {
        let (max_retries, sweeps) = {
            let mut state = self.state();
            Self::check_worker(&mut state, worker_id, generation)?;
            let entry = state
                .trials
                .get(trial_id)
                .ok_or_else(|| CoordinatorError::UnknownTrial(trial_id.to_string()))?;
            if entry.done {
                return Ok(false);
            }
            (entry.spec.resources.max_retries, entry.sweeps.clone())
        };
        let failures = self.inner.catalog.record_failure(trial_id, reason).await?;
        let retry = retryable && failures.attempts <= max_retries;
        tracing::warn!(trial = %trial_id, worker = %worker_id, attempts = failures.attempts, retry, reason, "trial failed");
        if retry {
            {
                let mut state = self.state();
                state.scheduler.requeue(trial_id);
                state.note_requeued(trial_id);
            }
            self.inner.work_available.notify_waiters();
            self.after_change(Some(&sweeps)).await;
            return Ok(true);
        }
        let result = {
            let state = self.state();
            let entry = state
                .trials
                .get(trial_id)
                .ok_or_else(|| CoordinatorError::UnknownTrial(trial_id.to_string()))?;
            ResultRecord {
                trial_id: trial_id.to_string(),
                sweep_id: entry
                    .sweeps
                    .first()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                config_key: entry.plan.config.key.clone(),
                config: json_config(&entry.plan.config.values),
                seed: entry.plan.seed,
                status: sigsweep_types::TrialStatus::Failed,
                metrics: BTreeMap::new(),
                valid_metrics: BTreeMap::new(),
                selected_epoch: None,
                failure: Some(reason.to_string()),
                attempts: failures.attempts,
                seconds: 0.0,
                worker: worker_id.to_string(),
            }
        };
        let stored = self.inner.catalog.put_result(&result).await?;
        {
            let mut state = self.state();
            let was_done = state.trials.get(trial_id).is_some_and(|e| e.done);
            if let Some(e) = state.trials.get_mut(trial_id) {
                e.done = true;
            }
            let had_lease = state.scheduler.finish(trial_id).is_some();
            if stored && !was_done {
                state.note_finished(&result, had_lease);
            }
        }
        self.after_change(Some(&sweeps)).await;
        Ok(false)
    }

    /// Hands a trial back without counting a failure (a draining worker).
    pub fn release(&self, worker_id: &str, generation: u64, trial_id: &str) -> Result<()> {
        {
            let mut state = self.state();
            Self::check_worker(&mut state, worker_id, generation)?;
            state.scheduler.requeue(trial_id);
            state.note_requeued(trial_id);
        }
        self.inner.work_available.notify_waiters();
        Ok(())
    }

    /// Runs a sweep's failed trials again (after the user fixed the cause):
    /// their failed results and attempt counts are forgotten, the sweep is
    /// running again, and they are queued. Completed trials keep their
    /// results. Returns how many trials were queued again.
    pub async fn retry_failed(&self, sweep_id: &str) -> Result<u32> {
        let (trial_ids, record, spec) = {
            let state = self.state();
            let s = state
                .sweeps
                .get(sweep_id)
                .ok_or_else(|| CoordinatorError::UnknownSweep(sweep_id.to_string()))?;
            (s.trial_ids.clone(), s.record.clone(), s.spec.clone())
        };
        let mut cleared = 0u32;
        for id in &trial_ids {
            if self.inner.catalog.clear_failed(id).await? {
                cleared += 1;
                if let Some(e) = self.state().trials.get_mut(&**id) {
                    e.done = false;
                    e.attempts = 0;
                }
            }
        }
        if cleared == 0 {
            return Ok(0);
        }
        self.inner
            .catalog
            .set_sweep_state(sweep_id, SweepRecordState::Running)
            .await?;
        // Load it again from the store: completed trials count as done,
        // the cleared ones are queued.
        self.state().sweeps.remove(sweep_id);
        let record = SweepRecord {
            state: SweepRecordState::Running,
            ..record
        };
        self.load_sweep(record, (*spec).clone()).await?;
        tracing::info!(sweep = %sweep_id, trials = cleared, "failed trials queued again");
        Ok(cleared)
    }

    /// Cancels a sweep.
    pub async fn cancel(&self, sweep_id: &str) -> Result<SweepProgress> {
        if !self.state().sweeps.contains_key(sweep_id) {
            return Err(CoordinatorError::UnknownSweep(sweep_id.to_string()));
        }
        self.inner
            .catalog
            .set_sweep_state(sweep_id, SweepRecordState::Cancelled)
            .await?;
        {
            let mut state = self.state();
            state.scheduler.cancel_sweep(sweep_id);
            if let Some(s) = state.sweeps.get_mut(sweep_id) {
                s.state = SweepRunState::Cancelled;
                s.queued = 0;
            }
        }
        tracing::info!(sweep = %sweep_id, "sweep cancelled");
        self.after_change(Some(&[Arc::from(sweep_id)])).await;
        self.progress(sweep_id)
    }

    /// Expires overdue leases; returns how many trials went back to the queue.
    pub fn expire_leases(&self) -> usize {
        let expired = {
            let mut state = self.state();
            let expired = state.scheduler.expire(Instant::now());
            for l in &expired {
                state.note_requeued(&l.trial.trial_id);
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
                _ = tick.tick() => { self.expire_leases(); }
            }
        }
    }

    /// Marks sweeps finished when all their trials are, and publishes
    /// progress to watchers.
    async fn after_change(&self, sweeps: Option<&[Arc<str>]>) {
        let ids: Vec<Arc<str>> = match sweeps {
            Some(s) => s.to_vec(),
            None => self
                .state()
                .sweeps
                .keys()
                .map(|k| Arc::from(k.as_str()))
                .collect(),
        };
        for id in ids {
            let finished_now = {
                let mut state = self.state();
                match state.sweeps.get_mut(&*id) {
                    Some(s)
                        if s.state == SweepRunState::Running
                            && s.completed + s.failed >= s.total =>
                    {
                        s.state = SweepRunState::Finished;
                        true
                    }
                    _ => false,
                }
            };
            if finished_now {
                if let Err(e) = self
                    .inner
                    .catalog
                    .set_sweep_state(&id, SweepRecordState::Finished)
                    .await
                {
                    tracing::error!(sweep = %id, error = %e, "cannot record finished sweep; will retry on restart");
                }
                tracing::info!(sweep = %id, "sweep finished");
            }
            self.publish(&id);
        }
    }

    fn publish(&self, sweep_id: &str) {
        let state = self.state();
        if let Some(s) = state.sweeps.get(sweep_id) {
            let p = s.progress();
            s.watch.send_replace(p);
        }
    }

    pub fn progress(&self, sweep_id: &str) -> Result<SweepProgress> {
        self.state()
            .sweeps
            .get(sweep_id)
            .map(SweepRuntime::progress)
            .ok_or_else(|| CoordinatorError::UnknownSweep(sweep_id.to_string()))
    }

    pub fn list(&self) -> Vec<SweepProgress> {
        let state = self.state();
        let mut out: Vec<SweepProgress> =
            state.sweeps.values().map(SweepRuntime::progress).collect();
        out.sort_by(|a, b| a.sweep_id.cmp(&b.sweep_id));
        out
    }

    pub fn watch(&self, sweep_id: &str) -> Result<watch::Receiver<SweepProgress>> {
        self.state()
            .sweeps
            .get(sweep_id)
            .map(|s| s.watch.subscribe())
            .ok_or_else(|| CoordinatorError::UnknownSweep(sweep_id.to_string()))
    }

    /// The spec of a known sweep.
    pub fn spec(&self, sweep_id: &str) -> Result<Arc<SweepSpec>> {
        self.state()
            .sweeps
            .get(sweep_id)
            .map(|s| s.spec.clone())
            .ok_or_else(|| CoordinatorError::UnknownSweep(sweep_id.to_string()))
    }

    /// Stored results of a sweep's trials, in trial order.
    pub async fn results(&self, sweep_id: &str) -> Result<Vec<ResultRecord>> {
        let ids: Vec<Arc<str>> = self
            .state()
            .sweeps
            .get(sweep_id)
            .map(|s| s.trial_ids.clone())
            .ok_or_else(|| CoordinatorError::UnknownSweep(sweep_id.to_string()))?;
        results_for(&self.inner.catalog, &ids).await
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

/// Most metrics one completion may carry per split.
pub const MAX_METRICS: usize = 1024;
/// Longest metric name, in bytes.
pub const MAX_METRIC_NAME: usize = 128;

fn check_metric_bounds(field: &str, metrics: &BTreeMap<String, f64>) -> Result<()> {
    if metrics.len() > MAX_METRICS {
        return Err(CoordinatorError::Invalid(format!(
            "{field} has {} metrics, more than the limit of {MAX_METRICS}",
            metrics.len()
        )));
    }
    if let Some(name) = metrics.keys().find(|k| k.len() > MAX_METRIC_NAME) {
        return Err(CoordinatorError::Invalid(format!(
            "{field}: a metric name of {} bytes is longer than the limit of {MAX_METRIC_NAME} (`{}…`)",
            name.len(),
            name.chars().take(32).collect::<String>()
        )));
    }
    Ok(())
}

/// Why a completion does not satisfy its sweep's protocol, if it does not:
/// a non-finite value, or a reported or selection metric missing from a
/// split the protocol uses (test always; validation when epochs are
/// selected on it).
fn check_protocol_metrics(spec: &SweepSpec, c: &Completion) -> Option<String> {
    let splits: &[(&str, &BTreeMap<String, f64>)] = if spec.metrics.select_split == "test" {
        &[("test", &c.test_metrics), ("valid", &c.valid_metrics)]
    } else {
        &[("valid", &c.valid_metrics), ("test", &c.test_metrics)]
    };
    for (split, metrics) in splits {
        if let Some((name, v)) = metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Some(format!("{split} metric `{name}` is not finite ({v})"));
        }
    }
    let required: Vec<&str> = spec
        .metrics
        .report
        .keys()
        .map(String::as_str)
        .chain(std::iter::once(spec.metrics.select.as_str()))
        .collect();
    let used = if spec.metrics.select_split == "test" {
        &splits[..1]
    } else {
        splits
    };
    for (split, metrics) in used {
        if let Some(missing) = required.iter().find(|m| !metrics.contains_key(**m)) {
            return Some(format!(
                "the {split} metrics lack `{missing}`, which the sweep's [metrics] names"
            ));
        }
    }
    None
}

/// Stored results for `trial_ids`, in that order (missing ones skipped).
pub async fn results_for(catalog: &Catalog, trial_ids: &[Arc<str>]) -> Result<Vec<ResultRecord>> {
    let all = catalog.results().await?;
    Ok(trial_ids
        .iter()
        .filter_map(|id| all.get(&**id).cloned())
        .collect())
}

fn json_config(
    values: &IndexMap<String, crate::sweep::ParamValue>,
) -> IndexMap<String, serde_json::Value> {
    values
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect()
}

#[cfg(test)]
mod tests;
