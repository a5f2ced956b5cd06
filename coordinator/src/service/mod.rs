//! The coordinator's core: sweeps in memory, the scheduler, and the durable
//! catalog, behind a cheap-to-clone [`Coordinator`] handle.
//!
//! Locking: one `std::sync::Mutex` over the in-memory state, never held
//! across an `.await`; store writes happen outside it. State changes that
//! must be durable (a result, a failure count, a sweep's state) are written
//! to the store before the in-memory state changes, so a crash in between
//! at worst repeats a trial, whose result is then stored once.

mod leases;
mod outcomes;
mod state;
mod sweeps;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::scheduler::Scheduler;
use crate::store::{Catalog, StoreError, SweepRecordState};
use crate::sweep::{SweepError, SweepSpec};
pub use outcomes::{MAX_METRIC_NAME, MAX_METRICS};
use state::State;
pub use state::{SweepProgress, SweepRunState, Waiting, WorkerCaps};
pub use sweeps::results_for;

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// A lease expires this long after its last heartbeat.
    pub lease_ttl: Duration,
    /// Longest an AcquireTrial call waits for work.
    pub max_acquire_wait: Duration,
    /// Accept sweeps that run a training program (`[model] name =
    /// "command"`): whoever can submit then runs code on the workers.
    pub allow_command: bool,
    /// Most trials of running sweeps held at once ([`MAX_LIVE_TRIALS`]).
    pub max_live_trials: usize,
    /// The models' own check of each configuration, run at submit after
    /// the declarations' ([`SweepSpec::check_settings`]); `None` where the
    /// models are not linked in.
    pub check_settings: Option<crate::sweep::SettingsCheck>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            max_acquire_wait: Duration::from_secs(5),
            allow_command: false,
            max_live_trials: MAX_LIVE_TRIALS,
            check_settings: None,
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
    /// The coordinator holds as much of something as it will (workers):
    /// the caller may try again later.
    #[error("{0}")]
    Full(String),
}

pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

/// A worker's registration.
#[derive(Debug, Clone)]
pub struct Registration {
    pub worker_id: String,
    pub generation: u64,
}

/// Most models the coordinator keeps declarations of, beyond the built-in
/// ones (a registration that would exceed it is refused, naming it).
pub const MAX_DECLARED_MODELS: usize = 256;

/// Most workers the coordinator knows at once: a registration past it is
/// refused (`RESOURCE_EXHAUSTED`, which a worker retries) until idle ones
/// are forgotten ([`FORGET_IDLE_WORKERS_AFTER`]). Far above any fleet; it
/// bounds what a client registering in a loop can make the coordinator
/// hold.
pub const MAX_WORKERS: usize = 65_536;

/// A worker not heard from for this long (or ten lease TTLs, if longer) and
/// holding no lease is forgotten; if it comes back, its next call is
/// answered "unknown worker" and it registers again. Autoscaled fleets
/// (a new worker name per pod) and registration loops no longer
/// accumulate.
pub const FORGET_IDLE_WORKERS_AFTER: Duration = Duration::from_secs(300);

/// Most trials of running sweeps the coordinator holds by default
/// ([`CoordinatorConfig::max_live_trials`]): a submission past it is refused (`RESOURCE_EXHAUSTED`: cancel a sweep or let one finish)
/// instead of a client submitting sweeps in a loop growing its memory
/// without bound. Ten sweeps of the largest size a file may have.
pub const MAX_LIVE_TRIALS: usize = 10 * crate::sweep::MAX_TRIALS;

/// Most GPUs a worker may register, and most trials it may share each by
/// (what a sweep may ask for, [`crate::sweep::MAX_GPUS`]).
pub const MAX_WORKER_GPUS: usize = crate::sweep::MAX_GPUS as usize;

/// Longest backend name a worker may register.
pub const MAX_BACKEND_NAME: usize = 64;

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
    /// `predictions/<trial_id>.jsonl` when the worker saved the trial's
    /// predictions in its artifacts directory.
    pub predictions: Option<String>,
    /// `weights/<trial_id>.safetensors` when the worker saved the selected
    /// epoch's weights in its artifacts directory.
    pub weights: Option<String>,
    /// Every epoch's training loss and metrics.
    pub history: Vec<sigsweep_types::EpochRecord>,
    /// The hardware that trained it (the worker's description).
    pub hardware: Option<String>,
    /// True when a training program selected the epoch itself.
    pub program_selected: bool,
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
            coordinator.inner.catalog.outcomes().await?
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
                        state.release(&id);
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
            s.watch
                .send_replace(state.progress_of(s, self.inner.config.lease_ttl));
        }
    }
}

#[cfg(test)]
mod tests;
