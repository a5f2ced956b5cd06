//! In-memory coordinator state (guarded by the coordinator's mutex).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::scheduler::{Capacity, Lease, Scheduler};
use crate::store::{Outcome, ResultRecord, SweepRecord, SweepRecordState};
use crate::sweep::{SweepSpec, TrialPlan};

/// What a worker reports about itself.
#[derive(Debug, Clone, Default)]
pub struct WorkerCaps {
    pub backend: String,
    pub gpus: Vec<u32>,
    pub trials_per_gpu: u32,
}

impl WorkerCaps {
    /// What the scheduler may hand this worker.
    pub fn capacity(&self) -> Capacity {
        Capacity {
            gpu_slots: self.gpus.len() as u32,
            sharers: self.trials_per_gpu.max(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepRunState {
    Running,
    Finished,
    Cancelled,
}

/// A sweep's progress, as shown to users.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepProgress {
    pub sweep_id: String,
    pub name: String,
    pub state: SweepRunState,
    pub total: u32,
    pub completed: u32,
    pub failed: u32,
    pub running: u32,
    pub queued: u32,
    pub mean_trial_seconds: f64,
    /// The sweep file text (shared, not copied, by every progress update).
    pub source: Arc<str>,
    /// Why queued trials start nowhere, when nothing of the sweep runs.
    pub waiting: Option<Waiting>,
}

/// Why a running sweep's queued trials start on no worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// No worker was seen within a lease TTL.
    NoWorker,
    /// Workers are connected but none can ever take these trials: too few
    /// GPUs, or more trials per GPU than the sweep allows. The reason.
    NoneFits(String),
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoWorker => f.write_str("no worker is connected"),
            Self::NoneFits(why) => f.write_str(why),
        }
    }
}

pub(super) struct SweepRuntime {
    pub record: SweepRecord,
    pub source: Arc<str>,
    pub spec: Arc<SweepSpec>,
    pub trial_ids: Vec<Arc<str>>,
    pub state: SweepRunState,
    pub total: u32,
    pub completed: u32,
    pub failed: u32,
    pub running: u32,
    pub queued: u32,
    pub seconds_sum: f64,
    pub watch: watch::Sender<SweepProgress>,
}

impl SweepRuntime {
    pub fn new(record: SweepRecord, spec: Arc<SweepSpec>, total: usize) -> Self {
        let state = match record.state {
            SweepRecordState::Running => SweepRunState::Running,
            SweepRecordState::Finished => SweepRunState::Finished,
            SweepRecordState::Cancelled => SweepRunState::Cancelled,
        };
        let s = Self {
            source: Arc::from(record.source.as_str()),
            record,
            spec,
            trial_ids: Vec::with_capacity(total),
            state,
            total: total as u32,
            completed: 0,
            failed: 0,
            running: 0,
            queued: 0,
            seconds_sum: 0.0,
            watch: watch::Sender::new(SweepProgress {
                sweep_id: String::new(),
                name: String::new(),
                state,
                total: 0,
                completed: 0,
                failed: 0,
                running: 0,
                queued: 0,
                mean_trial_seconds: 0.0,
                source: Arc::from(""),
                waiting: None,
            }),
        };
        s.watch.send_replace(s.progress());
        s
    }

    pub fn count_result(&mut self, r: Outcome) {
        if r.completed {
            self.completed += 1;
            self.seconds_sum += r.seconds;
        } else {
            self.failed += 1;
        }
    }

    pub fn progress(&self) -> SweepProgress {
        SweepProgress {
            sweep_id: self.record.sweep_id.clone(),
            name: self.record.name.clone(),
            state: self.state,
            total: self.total,
            completed: self.completed,
            failed: self.failed,
            running: self.running,
            queued: self.queued,
            mean_trial_seconds: if self.completed > 0 {
                self.seconds_sum / f64::from(self.completed)
            } else {
                0.0
            },
            source: self.source.clone(),
            waiting: None,
        }
    }
}

pub(super) struct TrialEntry {
    pub plan: TrialPlan,
    pub spec: Arc<SweepSpec>,
    /// Sweeps this trial belongs to (an extended grid shares trials).
    pub sweeps: Vec<Arc<str>>,
    /// Attempts started by this coordinator.
    pub attempts: u32,
    /// Times this coordinator saw the trial's worker lost while running it
    /// ([`State::note_lost`]).
    pub lost: u32,
    pub done: bool,
}

impl TrialEntry {
    pub fn new(plan: TrialPlan, spec: Arc<SweepSpec>) -> Self {
        Self {
            plan,
            spec,
            sweeps: Vec::new(),
            attempts: 0,
            lost: 0,
            done: false,
        }
    }
}

pub(super) struct WorkerInfo {
    pub generation: u64,
    pub caps: WorkerCaps,
    pub last_seen: Instant,
}

pub(super) struct State {
    pub sweeps: HashMap<String, SweepRuntime>,
    pub trials: HashMap<Arc<str>, TrialEntry>,
    pub scheduler: Scheduler,
    pub workers: HashMap<String, WorkerInfo>,
    pub next_generation: u64,
    /// Models that registered workers declared beyond the built-in ones,
    /// by name (the latest declaration wins).
    pub declared: std::collections::BTreeMap<String, sigsweep_types::ModelDecl>,
    /// Trials taken out of the queue for losing their worker too often,
    /// with the last worker lost, until they are stored as failed
    /// (`Coordinator::fail_lost`).
    pub lost: Vec<(Arc<str>, String)>,
    /// When [`Coordinator::tell_silent_workers`](super::Coordinator) last
    /// looked for workers that fell silent.
    pub silence_checked: Instant,
}

impl State {
    pub fn new(scheduler: Scheduler, first_generation: u64) -> Self {
        Self {
            sweeps: HashMap::new(),
            trials: HashMap::new(),
            scheduler,
            workers: HashMap::new(),
            next_generation: first_generation,
            declared: std::collections::BTreeMap::new(),
            lost: Vec::new(),
            silence_checked: Instant::now(),
        }
    }

    fn for_sweeps_of(&mut self, trial_id: &str, mut f: impl FnMut(&mut SweepRuntime)) {
        let Some(entry) = self.trials.get(trial_id) else {
            return;
        };
        for s in &entry.sweeps {
            if let Some(rt) = self.sweeps.get_mut(&**s) {
                f(rt);
            }
        }
    }

    /// A sweep's progress, with why its queued trials start nowhere when
    /// nothing of it runs (workers seen within `ttl` count as connected).
    pub fn progress_of(&self, s: &SweepRuntime, ttl: std::time::Duration) -> SweepProgress {
        let mut p = s.progress();
        if s.state == SweepRunState::Running && s.queued > 0 && s.running == 0 {
            p.waiting = self.waiting(&s.spec, ttl);
        }
        p
    }

    fn waiting(&self, spec: &SweepSpec, ttl: std::time::Duration) -> Option<Waiting> {
        let live: Vec<&WorkerCaps> = self
            .workers
            .values()
            .filter(|w| w.last_seen.elapsed() <= ttl)
            .map(|w| &w.caps)
            .collect();
        if live.is_empty() {
            return Some(Waiting::NoWorker);
        }
        let (gpus, share) = (
            spec.resources.gpus_per_trial,
            spec.resources.trials_per_gpu.max(1),
        );
        if live.iter().any(|c| c.capacity().fits_need(gpus, share)) {
            return None;
        }
        let most = live.iter().map(|c| c.gpus.len()).max().unwrap_or(0);
        let mut backends: Vec<&str> = live.iter().map(|c| c.backend.as_str()).collect();
        backends.sort_unstable();
        backends.dedup();
        let why = if most >= gpus as usize {
            let fewest = live
                .iter()
                .filter(|c| c.gpus.len() >= gpus as usize)
                .map(|c| c.trials_per_gpu.max(1))
                .min()
                .unwrap_or(1);
            format!(
                "no connected worker can take its trials: the sweep lets at most {share} \
                 trial(s) share a GPU (resources.trials_per_gpu), and the workers with enough \
                 GPUs run {fewest} or more per GPU"
            )
        } else {
            format!(
                "no connected worker can take its trials: each needs {gpus} GPU(s) \
                 (resources.gpus_per_trial), and the {} connected worker(s) have at most {most} \
                 (backends: {})",
                live.len(),
                backends.join(", ")
            )
        };
        Some(Waiting::NoneFits(why))
    }

    /// Drops the entries of `sweep_id`'s trials once it has stopped
    /// (finished or cancelled): those that no running sweep shares and no
    /// lease holds (a cancelled trial still running keeps its entry until
    /// its worker lets go, [`State::release_trial`]). What is left of a
    /// stopped sweep is its counts and its results in the store, so the
    /// memory of a long-lived coordinator follows the sweeps it runs, not
    /// every trial it ever ran. (A sweep whose failed trials are retried is
    /// loaded again, which makes their entries anew.)
    pub fn release(&mut self, sweep_id: &str) {
        let Some(stopped) = self.sweeps.get(sweep_id) else {
            return;
        };
        let ids: Vec<Arc<str>> = stopped
            .trial_ids
            .iter()
            .filter(|id| self.releasable(id))
            .cloned()
            .collect();
        for id in ids {
            self.trials.remove(&id);
        }
    }

    /// Drops `trial_id`'s entry if no running sweep needs it and no lease
    /// holds it: called wherever a lease ends, for the trial that was still
    /// running when its sweep stopped.
    pub fn release_trial(&mut self, trial_id: &str) {
        if self.releasable(trial_id) {
            self.trials.remove(trial_id);
        }
    }

    fn releasable(&self, trial_id: &str) -> bool {
        self.scheduler.lease_of(trial_id).is_none()
            && !self.lost.iter().any(|(id, _)| &**id == trial_id)
            && self.trials.get(trial_id).is_some_and(|e| {
                !e.sweeps.iter().any(|s| {
                    self.sweeps
                        .get(&**s)
                        .is_some_and(|rt| rt.state == SweepRunState::Running)
                })
            })
    }

    /// A queued trial started running.
    pub fn note_started(&mut self, trial_id: &str) {
        self.for_sweeps_of(trial_id, |s| {
            s.queued = s.queued.saturating_sub(1);
            s.running += 1;
        });
    }

    /// A running trial went back to the queue.
    pub fn note_requeued(&mut self, trial_id: &str) {
        self.for_sweeps_of(trial_id, |s| {
            s.running = s.running.saturating_sub(1);
            if s.state == SweepRunState::Running {
                s.queued += 1;
            }
        });
    }

    /// A started lease ended without its worker (it expired, or the worker
    /// registered again and fenced it) and its trial went back to the
    /// queue ([`State::note_requeued`] first). At the sweep's
    /// `max_lost_workers`-th loss the trial leaves the queue instead and
    /// waits in [`State::lost`] to be stored as failed. Reservations that
    /// never started and cancelled leases do not count.
    pub fn note_lost(&mut self, lease: &Lease) {
        if lease.cancelled || lease.reserved {
            return;
        }
        let id = &lease.trial.trial_id;
        let Some(entry) = self.trials.get_mut(id) else {
            return;
        };
        entry.lost += 1;
        let limit = entry.spec.resources.max_lost_workers;
        if limit > 0 && entry.lost >= limit && !entry.done {
            self.scheduler.finish(id);
            self.lost.push((id.clone(), lease.holder.worker_id.clone()));
        }
    }

    /// A trial reached its final outcome.
    pub fn note_finished(&mut self, result: &ResultRecord, was_running: bool) {
        let outcome = Outcome::from(result);
        self.for_sweeps_of(&result.trial_id, |s| {
            if was_running {
                s.running = s.running.saturating_sub(1);
            } else {
                s.queued = s.queued.saturating_sub(1);
            }
            s.count_result(outcome);
        });
    }
}
