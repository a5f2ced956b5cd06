//! The one result record: a trial's final outcome as the store's catalog
//! keeps it, as `results.jsonl` and `sigsweep results` print it, and as the
//! report reads it. There is no other row type between the store and the
//! report, so a renamed field cannot make the report lose seeds quietly:
//! unknown and missing fields are errors when a row is read.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// Final state of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    /// Finished and produced metrics.
    Completed,
    /// Gave up: a failure that repeats, or its attempts ran out.
    Failed,
}

impl TrialStatus {
    /// `"completed"` or `"failed"`, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

impl PartialEq<&str> for TrialStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One trial (configuration × seed) and its outcome. Bookkeeping fields
/// (sweep, attempts, seconds, worker) may be absent in rows written by
/// hand; everything the report pairs and compares on must be there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultRecord {
    /// Unique trial id (a digest of the sweep's fixed settings, the
    /// configuration and the seed).
    pub trial_id: crate::TrialId,
    /// The sweep that first ran the trial.
    #[serde(default)]
    pub sweep_id: crate::SweepId,
    /// Canonical `"k=v,k2=v2"` in grid order (`default` for an empty grid).
    pub config_key: String,
    /// Grid hyperparameters only.
    pub config: IndexMap<String, serde_json::Value>,
    /// Training seed (the pairing key).
    pub seed: u64,
    pub status: TrialStatus,
    /// Test-split metrics at the selected epoch.
    pub metrics: BTreeMap<String, f64>,
    /// Validation-split metrics at the same epoch.
    pub valid_metrics: BTreeMap<String, f64>,
    /// Epoch selected on the selection split; `None` for a failed trial.
    #[serde(default)]
    pub selected_epoch: Option<u32>,
    /// Why the trial failed.
    #[serde(default)]
    pub failure: Option<String>,
    /// Attempts made.
    #[serde(default)]
    pub attempts: u32,
    /// Wall time of the attempt that produced the result.
    #[serde(default)]
    pub seconds: f64,
    /// The worker that reported it.
    #[serde(default)]
    pub worker: crate::WorkerId,
    /// The trial's per-example test predictions at the selected epoch
    /// (`[training] save = ["predictions"]`), relative to the workers'
    /// artifacts directory: `predictions/<trial_id>.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictions: Option<String>,
    /// The selected epoch's weights (`[training] save = ["weights"]`) as
    /// safetensors, relative to the workers' artifacts directory:
    /// `weights/<trial_id>.safetensors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// Every epoch the trial trained: its mean training loss and the
    /// metrics of both splits (learning curves; the selected epoch is
    /// `selected_epoch`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<EpochRecord>,
    /// The held-out cross-validation fold (`[dataset] folds`): comparisons
    /// then pair on (seed, fold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<u32>,
    /// The hardware that trained it, as its worker described it: CPU and
    /// GPU models and the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<String>,
    /// True when a training program selected the epoch itself (its
    /// `{"final": …}` line) rather than sigsweep's `[metrics]` rule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub program_selected: bool,
}

/// One epoch of a trial: the mean training loss and the metrics of the
/// validation and test splits after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: u32,
    pub train_loss: f64,
    #[serde(default)]
    pub valid: BTreeMap<String, f64>,
    #[serde(default)]
    pub test: BTreeMap<String, f64>,
}

/// Where a trial's per-example test predictions live, relative to the
/// workers' artifacts directory (what [`ResultRecord::predictions`] holds).
pub fn predictions_path(trial_id: &str) -> String {
    format!("predictions/{trial_id}.jsonl")
}

/// Where a trial's selected-epoch weights live, relative to the workers'
/// artifacts directory (what [`ResultRecord::weights`] holds).
pub fn weights_path(trial_id: &str) -> String {
    format!("weights/{trial_id}.safetensors")
}

impl ResultRecord {
    pub fn is_completed(&self) -> bool {
        self.status == TrialStatus::Completed
    }

    /// Reads result rows (results.jsonl lines, `results --format jsonl`).
    /// A row that is not a result record is an error naming `source`, the
    /// line and the reason — never a silent drop.
    pub fn parse_jsonl(source: &str, text: &str) -> Result<Vec<Self>, String> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| format!("{source}:{}: not a result record: {e}", i + 1))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = r#"{"trial_id":"t1","sweep_id":"s-1","config_key":"lr=0.1","config":{"lr":0.1},"seed":3,"status":"completed","metrics":{"accuracy":0.5},"valid_metrics":{"accuracy":0.4},"selected_epoch":2,"failure":null,"attempts":1,"seconds":1.5,"worker":"w"}"#;

    #[test]
    fn a_row_round_trips() {
        let rows = ResultRecord::parse_jsonl("results.jsonl", ROW).expect("parses");
        assert_eq!(rows[0].seed, 3);
        assert!(rows[0].is_completed());
        let again = serde_json::to_string(&rows[0]).expect("json");
        assert_eq!(ResultRecord::parse_jsonl("x", &again).expect("again"), rows);
    }

    #[test]
    fn a_renamed_or_missing_field_fails_loudly_naming_the_line() {
        let renamed = ROW.replace("\"metrics\"", "\"test_metrics\"");
        let text = format!("{ROW}\n{renamed}\n");
        let err = ResultRecord::parse_jsonl("state/results.jsonl", &text).expect_err("renamed");
        assert!(err.starts_with("state/results.jsonl:2:"), "{err}");
        assert!(err.contains("test_metrics"), "{err}");
        let missing = ROW.replace("\"seed\":3,", "");
        let err = ResultRecord::parse_jsonl("r", &missing).expect_err("missing");
        assert!(err.contains("seed"), "{err}");
        let bad_status = ROW.replace("completed", "done");
        assert!(ResultRecord::parse_jsonl("r", &bad_status).is_err());
    }
}
