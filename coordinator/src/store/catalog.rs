//! The coordinator's typed records over a [`Store`].
//!
//! Key layout (values are JSON):
//! - `sweeps/<sweep id>`: the sweep file and its state;
//! - `results/<trial id>`: one finished or failed trial, written once
//!   (precondition `Absent`), so a result reported twice is stored once;
//! - `failures/<trial id>`: attempts that failed so far, for retry limits;
//! - `logs/<trial id>`: the end of a training program's output, as its last
//!   attempt's worker reported it (overwritten by each attempt).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use sigsweep_types::ResultRecord;

use super::{Precondition, Store, StoreError, StoreResult};

/// A submitted sweep as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    pub sweep_id: String,
    pub name: String,
    pub source: String,
    pub source_name: String,
    pub state: SweepRecordState,
    /// Unix seconds.
    pub submitted_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepRecordState {
    Running,
    Finished,
    Cancelled,
}

/// Failed attempts of a trial so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub attempts: u32,
    pub reasons: Vec<String>,
}

/// How many stored results [`Catalog::outcomes`] holds at once.
pub const RESULTS_SCAN_PAGE: usize = 64;

/// What a stored result says of its trial's end, without its metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub completed: bool,
    /// The trial's training time (what `mean_trial_seconds` averages).
    pub seconds: f64,
}

impl From<&ResultRecord> for Outcome {
    fn from(r: &ResultRecord) -> Self {
        Self {
            completed: r.is_completed(),
            seconds: r.seconds,
        }
    }
}

/// Typed access to the coordinator's durable state.
#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn Store>,
}

fn to_json<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Internal(e.to_string()))
}

fn from_json<T: for<'de> Deserialize<'de>>(key: &str, raw: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(raw)
        .map_err(|e| StoreError::Internal(format!("corrupt record `{key}`: {e}")))
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stores a new sweep; `false` if a sweep with that id already exists.
    pub async fn create_sweep(&self, record: &SweepRecord) -> StoreResult<bool> {
        let key = format!("sweeps/{}", record.sweep_id);
        match self
            .store
            .put(&key, to_json(record)?, Precondition::Absent)
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn sweep(&self, sweep_id: &str) -> StoreResult<Option<SweepRecord>> {
        let key = format!("sweeps/{sweep_id}");
        match self.store.get(&key).await? {
            Some(v) => Ok(Some(from_json(&key, &v.value)?)),
            None => Ok(None),
        }
    }

    pub async fn sweeps(&self) -> StoreResult<Vec<SweepRecord>> {
        self.store
            .list("sweeps/")
            .await?
            .into_iter()
            .map(|(k, v)| from_json(&k, &v.value))
            .collect()
    }

    /// Sets a sweep's state (compare-and-swap loop).
    pub async fn set_sweep_state(
        &self,
        sweep_id: &str,
        state: SweepRecordState,
    ) -> StoreResult<()> {
        let key = format!("sweeps/{sweep_id}");
        loop {
            let Some(current) = self.store.get(&key).await? else {
                return Ok(());
            };
            let mut record: SweepRecord = from_json(&key, &current.value)?;
            if record.state == state {
                return Ok(());
            }
            record.state = state;
            match self
                .store
                .put(
                    &key,
                    to_json(&record)?,
                    Precondition::Version(current.version),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Stores a trial's result once; `false` if one was already stored.
    pub async fn put_result(&self, result: &ResultRecord) -> StoreResult<bool> {
        let key = format!("results/{}", result.trial_id);
        match self
            .store
            .put(&key, to_json(result)?, Precondition::Absent)
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn result(&self, trial_id: &str) -> StoreResult<Option<ResultRecord>> {
        let key = format!("results/{trial_id}");
        match self.store.get(&key).await? {
            Some(v) => Ok(Some(from_json(&key, &v.value)?)),
            None => Ok(None),
        }
    }

    /// Every stored result's outcome, by trial id. Results are read
    /// [`RESULTS_SCAN_PAGE`] at a time and only their outcomes kept: a
    /// result carries a history of up to 512 KiB, and a long-lived
    /// coordinator stores hundreds of thousands of them.
    pub async fn outcomes(&self) -> StoreResult<HashMap<sigsweep_types::TrialId, Outcome>> {
        let mut out = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list_page("results/", after.as_deref(), RESULTS_SCAN_PAGE)
                .await?;
            let full = page.len() >= RESULTS_SCAN_PAGE;
            for (k, v) in &page {
                let r: ResultRecord = from_json(k, &v.value)?;
                out.insert(r.trial_id.clone(), Outcome::from(&r));
            }
            match page.into_iter().last() {
                Some((last, _)) if full => after = Some(last),
                _ => return Ok(out),
            }
        }
    }

    /// Stores the end of a trial's program output (its latest attempt's).
    pub async fn put_log(&self, trial_id: &str, text: &str) -> StoreResult<()> {
        self.store
            .put(
                &format!("logs/{trial_id}"),
                text.as_bytes().to_vec(),
                Precondition::None,
            )
            .await
            .map(|_| ())
    }

    /// The stored end of a trial's program output.
    pub async fn log(&self, trial_id: &str) -> StoreResult<Option<String>> {
        Ok(self
            .store
            .get(&format!("logs/{trial_id}"))
            .await?
            .map(|v| String::from_utf8_lossy(&v.value).into_owned()))
    }

    /// Records one failed attempt and returns the record after it.
    pub async fn record_failure(&self, trial_id: &str, reason: &str) -> StoreResult<FailureRecord> {
        let key = format!("failures/{trial_id}");
        loop {
            let current = self.store.get(&key).await?;
            let (mut record, pre) = match &current {
                Some(v) => (
                    from_json::<FailureRecord>(&key, &v.value)?,
                    Precondition::Version(v.version),
                ),
                None => (FailureRecord::default(), Precondition::Absent),
            };
            record.attempts += 1;
            record.reasons.push(reason.chars().take(2000).collect());
            if record.reasons.len() > 10 {
                record.reasons.remove(0);
            }
            match self.store.put(&key, to_json(&record)?, pre).await {
                Ok(_) => return Ok(record),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Forgets a trial's failed result and its failed attempts, so that it
    /// runs again. Returns `false` (and changes nothing) when the trial has
    /// no stored result or a completed one.
    pub async fn clear_failed(&self, trial_id: &str) -> StoreResult<bool> {
        let key = format!("results/{trial_id}");
        let Some(v) = self.store.get(&key).await? else {
            return Ok(false);
        };
        let r: ResultRecord = from_json(&key, &v.value)?;
        if r.is_completed() {
            return Ok(false);
        }
        match self
            .store
            .delete(&key, Precondition::Version(v.version))
            .await
        {
            Ok(()) => {}
            // Replaced meanwhile (by another coordinator): leave it.
            Err(StoreError::Conflict { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        self.store
            .delete(&format!("failures/{trial_id}"), Precondition::None)
            .await?;
        Ok(true)
    }

    pub async fn failures(&self, trial_id: &str) -> StoreResult<FailureRecord> {
        let key = format!("failures/{trial_id}");
        match self.store.get(&key).await? {
            Some(v) => from_json(&key, &v.value),
            None => Ok(FailureRecord::default()),
        }
    }
}
