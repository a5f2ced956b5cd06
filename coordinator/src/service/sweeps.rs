//! Sweeps: submit, load from the store, cancel, retry failures, progress
//! and results.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use tokio::sync::watch;

use super::state::{SweepRuntime, TrialEntry};
use super::*;
use crate::scheduler::TrialRef;
use crate::store::{Catalog, Outcome, ResultRecord, SweepRecord, SweepRecordState};
use crate::sweep::SweepSpec;

impl Coordinator {
    /// Puts a sweep into memory: trials with stored results count as done,
    /// the others are queued.
    pub(super) async fn load_sweep(&self, record: SweepRecord, spec: SweepSpec) -> Result<()> {
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
                if let Some(r) = results.get(plan.trial_id.as_str()) {
                    runtime.count_result(Outcome::from(r));
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
    pub(super) fn list_stopped(
        &self,
        record: SweepRecord,
        spec: SweepSpec,
        outcomes: &HashMap<sigsweep_types::TrialId, Outcome>,
    ) {
        let spec = Arc::new(spec);
        let plans = spec.trials();
        let sweep_id = record.sweep_id.clone();
        let mut runtime = SweepRuntime::new(record, spec.clone(), plans.len());
        for p in &plans {
            runtime.trial_ids.push(Arc::from(p.trial_id.as_str()));
            if let Some(r) = outcomes.get(p.trial_id.as_str()) {
                runtime.count_result(*r);
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
        if spec.runs_program() && !self.inner.config.allow_command {
            return Err(spec.program_refused().into());
        }
        let declared: Vec<sigsweep_types::ModelDecl> =
            self.state().declared.values().cloned().collect();
        spec.check_declared(&declared)?;
        if let Some(check) = self.inner.config.check_settings {
            spec.check_settings(check)?;
        }
        let sweep_id = spec.sweep_id();
        let total_trials = spec.trials().len() as u32;
        {
            let state = self.state();
            let (live, max) = (state.trials.len(), self.inner.config.max_live_trials);
            if !state.sweeps.contains_key(&sweep_id) && live + total_trials as usize > max {
                return Err(CoordinatorError::Full(format!(
                    "the coordinator holds {live} trials of running sweeps and this sweep has \
                     {total_trials}: more than the {max} it runs at once; cancel a sweep or let \
                     one finish, then submit again"
                )));
            }
        }
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
                let outcomes = self.inner.catalog.outcomes().await?;
                self.list_stopped(stored, spec, &outcomes);
            }
        }
        tracing::info!(sweep = %sweep_id, trials = total_trials, created, "sweep submitted");
        Ok(Submitted {
            sweep_id,
            total_trials,
            created,
        })
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
            state.release(sweep_id);
        }
        tracing::info!(sweep = %sweep_id, "sweep cancelled");
        self.after_change(Some(&[Arc::from(sweep_id)])).await;
        self.progress(sweep_id)
    }

    pub fn progress(&self, sweep_id: &str) -> Result<SweepProgress> {
        let ttl = self.inner.config.lease_ttl;
        let state = self.state();
        state
            .sweeps
            .get(sweep_id)
            .map(|s| state.progress_of(s, ttl))
            .ok_or_else(|| CoordinatorError::UnknownSweep(sweep_id.to_string()))
    }

    pub fn list(&self) -> Vec<SweepProgress> {
        let ttl = self.inner.config.lease_ttl;
        let state = self.state();
        let mut out: Vec<SweepProgress> = state
            .sweeps
            .values()
            .map(|s| state.progress_of(s, ttl))
            .collect();
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
        let ids = self.trial_ids(sweep_id)?;
        results_for(&self.inner.catalog, &ids).await
    }

    /// One page of a sweep's stored results: those of its trials from
    /// index `from` on (in sweep order), at most `limit` of them, each with
    /// its trial's index; and the index to go on from, if any trial is
    /// left. The store is read for these trials only.
    pub async fn results_page(
        &self,
        sweep_id: &str,
        from: usize,
        limit: usize,
    ) -> Result<(Vec<(usize, ResultRecord)>, Option<usize>)> {
        let ids = self.trial_ids(sweep_id)?;
        let mut page = Vec::new();
        let mut next = from;
        while next < ids.len() && page.len() < limit {
            if let Some(id) = ids.get(next)
                && let Some(r) = self.inner.catalog.result(id).await?
            {
                page.push((next, r));
            }
            next += 1;
        }
        Ok((page, (next < ids.len()).then_some(next)))
    }

    fn trial_ids(&self, sweep_id: &str) -> Result<Vec<Arc<str>>> {
        self.state()
            .sweeps
            .get(sweep_id)
            .map(|s| s.trial_ids.clone())
            .ok_or_else(|| CoordinatorError::UnknownSweep(sweep_id.to_string()))
    }
}

/// Stored results for `trial_ids`, in that order (missing ones skipped):
/// one store read each, not every result the store holds.
pub async fn results_for(catalog: &Catalog, trial_ids: &[Arc<str>]) -> Result<Vec<ResultRecord>> {
    let mut out = Vec::with_capacity(trial_ids.len());
    for id in trial_ids {
        if let Some(r) = catalog.result(id).await? {
            out.push(r);
        }
    }
    Ok(out)
}

pub(super) fn json_config(
    values: &IndexMap<String, crate::sweep::ParamValue>,
) -> IndexMap<String, serde_json::Value> {
    values
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect()
}
