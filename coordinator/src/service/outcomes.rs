//! Outcomes: completions (checked against their bounds, lease and the
//! sweep's protocol) and failures.

use std::collections::BTreeMap;

use super::state::TrialEntry;
use super::sweeps::json_config;
use super::*;
use crate::scheduler::Holder;
use crate::store::ResultRecord;
use crate::sweep::SweepSpec;

/// Most bytes of a training program's output a worker may report for one
/// attempt (the end of it).
pub const MAX_LOG: usize = 64 * 1024;

impl Coordinator {
    /// Keeps the end of a trial's program output, as the worker that ran
    /// the attempt reports it (registered, and the trial known).
    pub async fn put_log(
        &self,
        worker_id: &str,
        generation: u64,
        trial_id: &str,
        text: &str,
    ) -> Result<()> {
        if text.len() > MAX_LOG {
            return Err(CoordinatorError::Invalid(format!(
                "a trial log is at most {MAX_LOG} bytes"
            )));
        }
        {
            let mut state = self.state();
            Self::check_worker(&mut state, worker_id, generation)?;
            if !state.trials.contains_key(trial_id) {
                return Err(CoordinatorError::UnknownTrial(trial_id.to_string()));
            }
        }
        self.inner.catalog.put_log(trial_id, text).await?;
        Ok(())
    }

    /// The end of the program output of `trial_id`, a trial of `sweep_id`.
    pub async fn trial_log(&self, sweep_id: &str, trial_id: &str) -> Result<Option<String>> {
        {
            let state = self.state();
            let sweep = state
                .sweeps
                .get(sweep_id)
                .ok_or_else(|| CoordinatorError::UnknownSweep(sweep_id.to_string()))?;
            if !sweep.trial_ids.iter().any(|t| &**t == trial_id) {
                return Err(CoordinatorError::UnknownTrial(trial_id.to_string()));
            }
        }
        Ok(self.inner.catalog.log(trial_id).await?)
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
        check_history(&c.history)?;
        if let Some(h) = &c.hardware
            && (h.len() > sigsweep_types::host::MAX_HARDWARE_LEN || h.chars().any(char::is_control))
        {
            return Err(CoordinatorError::Invalid(format!(
                "hardware must be at most {} bytes of printable text",
                sigsweep_types::host::MAX_HARDWARE_LEN
            )));
        }
        // A worker names only its own trial's file, relative to the
        // artifacts directory: never a path of its choosing.
        let own = [
            (
                "predictions",
                &c.predictions,
                sigsweep_types::record::predictions_path(&c.trial_id),
            ),
            (
                "weights",
                &c.weights,
                sigsweep_types::record::weights_path(&c.trial_id),
            ),
        ];
        for (what, given, expected) in own {
            if let Some(p) = given
                && *p != expected
            {
                return Err(CoordinatorError::Invalid(format!(
                    "{what} must be `{expected}`, not `{}`",
                    p.chars().take(64).collect::<String>()
                )));
            }
        }
        if !self.state().trials.contains_key(c.trial_id.as_str()) {
            return self.released(&c.trial_id).await;
        }
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
                metrics: c.test_metrics.clone(),
                valid_metrics: c.valid_metrics.clone(),
                selected_epoch: Some(c.selected_epoch),
                attempts: entry.attempts.max(1),
                seconds: c.seconds,
                predictions: c.predictions.clone(),
                weights: c.weights.clone(),
                history: c.history.clone(),
                hardware: c.hardware.clone(),
                program_selected: c.program_selected,
                ..record_of(
                    &c.trial_id,
                    entry,
                    sigsweep_types::TrialStatus::Completed,
                    &c.worker_id,
                )
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
            state.release_trial(&c.trial_id);
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

    /// The answer to a report about a trial the coordinator holds no entry
    /// for: one that has its result (its sweep stopped and released it,
    /// `State::release`) takes a late duplicate like any finished trial,
    /// `Ok(false)`, nothing stored; any other is unknown.
    async fn released(&self, trial_id: &str) -> Result<bool> {
        match self.inner.catalog.result(trial_id).await? {
            Some(_) => Ok(false),
            None => Err(CoordinatorError::UnknownTrial(trial_id.to_string())),
        }
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
        if !self.state().trials.contains_key(trial_id) {
            return self.released(trial_id).await;
        }
        let (max_retries, sweeps) = {
            let mut state = self.state();
            let holder = Self::check_worker(&mut state, worker_id, generation)?;
            let entry = state
                .trials
                .get(trial_id)
                .ok_or_else(|| CoordinatorError::UnknownTrial(trial_id.to_string()))?;
            if entry.done {
                return Ok(false);
            }
            // A worker that lost its lease (taken over, expired and leased
            // again) reports about a trial another worker runs now: that
            // worker's outcome counts, not this one.
            if state
                .scheduler
                .lease_of(trial_id)
                .is_some_and(|l| l.holder != holder)
            {
                tracing::info!(trial = %trial_id, worker = %worker_id, "failure from a worker that lost its lease; ignored");
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
                if state.scheduler.requeue(trial_id) {
                    state.note_requeued(trial_id);
                }
                state.release_trial(trial_id);
            }
            self.inner.work_available.notify_waiters();
            self.after_change(Some(&sweeps)).await;
            return Ok(true);
        }
        self.store_failed(trial_id, worker_id, reason, failures.attempts, &sweeps)
            .await?;
        Ok(false)
    }

    /// Stores `trial_id` as failed for good with `reason`: its result, its
    /// lease ended, the sweeps' counts. Returns whether this call stored it
    /// (not when another result was stored first).
    async fn store_failed(
        &self,
        trial_id: &str,
        worker_id: &str,
        reason: &str,
        attempts: u32,
        sweeps: &[Arc<str>],
    ) -> Result<bool> {
        let result = {
            let state = self.state();
            let entry = state
                .trials
                .get(trial_id)
                .ok_or_else(|| CoordinatorError::UnknownTrial(trial_id.to_string()))?;
            ResultRecord {
                failure: Some(reason.to_string()),
                attempts,
                ..record_of(
                    trial_id,
                    entry,
                    sigsweep_types::TrialStatus::Failed,
                    worker_id,
                )
            }
        };
        let stored = self.inner.catalog.put_result(&result).await?;
        let counted = {
            let mut state = self.state();
            let was_done = state.trials.get(trial_id).is_some_and(|e| e.done);
            if let Some(e) = state.trials.get_mut(trial_id) {
                e.done = true;
            }
            let had_lease = state.scheduler.finish(trial_id).is_some();
            if stored && !was_done {
                state.note_finished(&result, had_lease);
            }
            state.release_trial(trial_id);
            stored && !was_done
        };
        self.after_change(Some(sweeps)).await;
        Ok(counted)
    }

    /// Stores as failed the trials taken out of the queue for losing their
    /// worker `max_lost_workers` times (`State::note_lost`; lease expiry
    /// calls it every tick). Returns how many were stored; a trial whose
    /// result arrived meanwhile (its lost worker came back and finished)
    /// keeps that result.
    pub async fn fail_lost(&self) -> Result<usize> {
        let lost = std::mem::take(&mut self.state().lost);
        let mut stored_count = 0;
        for (i, (trial_id, worker_id)) in lost.iter().enumerate() {
            let (reason, attempts, sweeps) = {
                let state = self.state();
                let Some(entry) = state.trials.get(trial_id) else {
                    continue;
                };
                if entry.done {
                    continue;
                }
                let reason = format!(
                    "its worker was lost {} times while running it (the worker process died or \
                     stopped renewing its lease: killed for lack of memory, a crash, a machine \
                     gone; see the log of worker `{worker_id}`); [resources] max_lost_workers = {}",
                    entry.lost, entry.spec.resources.max_lost_workers
                );
                (reason, entry.attempts, entry.sweeps.clone())
            };
            let stored = match self.inner.catalog.record_failure(trial_id, &reason).await {
                Ok(_) => {
                    self.store_failed(trial_id, worker_id, &reason, attempts, &sweeps)
                        .await
                }
                Err(e) => Err(e.into()),
            };
            match stored {
                Ok(true) => stored_count += 1,
                Ok(false) => {}
                Err(e) => {
                    // Not stored: keep this trial and the rest for the next tick.
                    self.state().lost.extend(lost[i..].iter().cloned());
                    return Err(e);
                }
            }
            tracing::warn!(trial = %trial_id, worker = %worker_id, "trial failed: it lost its worker too often");
        }
        Ok(stored_count)
    }

    /// Fails the attempts that have run longer than their sweep's
    /// `[resources] trial_timeout` (lease expiry calls it every tick): each
    /// is retried up to `max_retries`, or stored as failed, like any
    /// transient failure. Its lease ends, so its worker's next heartbeat
    /// stops it. Returns how many attempts were failed.
    pub async fn time_out_trials(&self) -> Result<usize> {
        let overdue: Vec<(String, Holder, std::time::Duration)> = {
            let mut state = self.state();
            let now = tokio::time::Instant::now();
            let overdue = state
                .scheduler
                .leases()
                .filter(|l| !l.reserved && !l.cancelled)
                .filter_map(|l| {
                    let limit = state
                        .trials
                        .get(&l.trial.trial_id)?
                        .spec
                        .resources
                        .trial_timeout?;
                    (now.duration_since(l.started_at) > limit).then(|| {
                        (
                            l.lease_id.clone(),
                            l.trial.trial_id.to_string(),
                            l.holder.clone(),
                            limit,
                        )
                    })
                })
                .collect::<Vec<_>>();
            overdue
                .into_iter()
                .map(|(lease_id, trial_id, holder, limit)| {
                    // The worker, still running it, must not adopt it back.
                    state.scheduler.revoke(&lease_id);
                    (trial_id, holder, limit)
                })
                .collect()
        };
        let mut failed = 0;
        let mut first_error = None;
        for (trial_id, holder, limit) in &overdue {
            let reason = format!(
                "the attempt ran longer than [resources] trial_timeout = {} and was stopped",
                sigsweep_types::duration::format(*limit)
            );
            match self
                .fail_with(
                    &holder.worker_id,
                    holder.generation,
                    trial_id,
                    &reason,
                    true,
                )
                .await
            {
                Ok(_) => failed += 1,
                // The others still time out; this one is tried again next tick.
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        first_error.map_or(Ok(failed), Err)
    }
}

/// A completion's history: bounded (epochs, bytes, names; the worker fits
/// it with [`sigsweep_types::record::fit_history`]) and finite, with epochs
/// strictly increasing from 1, so that it can be stored, sent back and
/// written as JSON.
pub(super) fn check_history(history: &[sigsweep_types::EpochRecord]) -> Result<()> {
    use sigsweep_types::record::{MAX_HISTORY_BYTES, MAX_HISTORY_EPOCHS, history_bytes};
    if history.len() > MAX_HISTORY_EPOCHS {
        return Err(CoordinatorError::Invalid(format!(
            "history has {} epochs, more than the limit of {MAX_HISTORY_EPOCHS}",
            history.len()
        )));
    }
    let bytes = history_bytes(history);
    if bytes > MAX_HISTORY_BYTES {
        return Err(CoordinatorError::Invalid(format!(
            "history takes {bytes} bytes (as JSON or protobuf, the larger), more than the limit of {MAX_HISTORY_BYTES}"
        )));
    }
    let mut last = 0;
    for e in history {
        if e.epoch <= last {
            return Err(CoordinatorError::Invalid(format!(
                "history epochs must increase from 1: epoch {} after {last}",
                e.epoch
            )));
        }
        last = e.epoch;
        if !e.train_loss.is_finite() {
            return Err(CoordinatorError::Invalid(format!(
                "history: epoch {} has a non-finite training loss",
                e.epoch
            )));
        }
        for (split, m) in [("valid", &e.valid), ("test", &e.test)] {
            check_metric_bounds(split, m)?;
            if let Some((k, _)) = m.iter().find(|(_, v)| !v.is_finite()) {
                return Err(CoordinatorError::Invalid(format!(
                    "history: epoch {} {split} metric `{}` is not finite",
                    e.epoch,
                    k.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    Ok(())
}

/// Most metrics one completion may carry per split.
pub const MAX_METRICS: usize = 1024;

/// Longest metric name, in bytes.
pub const MAX_METRIC_NAME: usize = 128;

pub(super) fn check_metric_bounds(field: &str, metrics: &BTreeMap<String, f64>) -> Result<()> {
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
pub(super) fn check_protocol_metrics(spec: &SweepSpec, c: &Completion) -> Option<String> {
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

/// The result record of `trial_id` as the sweep defines it (identity,
/// configuration, seed), with `status` and `worker` and no outcome yet: the
/// one place a record is built from a trial.
fn record_of(
    trial_id: &str,
    entry: &TrialEntry,
    status: sigsweep_types::TrialStatus,
    worker: &str,
) -> ResultRecord {
    ResultRecord {
        trial_id: trial_id.into(),
        sweep_id: entry
            .sweeps
            .first()
            .map(|s| s.as_ref().into())
            .unwrap_or_default(),
        config_key: entry.plan.config.key.clone(),
        config: json_config(&entry.plan.config.values),
        seed: entry.plan.seed,
        status,
        metrics: BTreeMap::new(),
        valid_metrics: BTreeMap::new(),
        selected_epoch: None,
        failure: None,
        attempts: 0,
        seconds: 0.0,
        worker: worker.into(),
        predictions: None,
        weights: None,
        history: Vec::new(),
        fold: entry.plan.fold,
        hardware: None,
        program_selected: false,
    }
}
