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

/// Most epochs a result's history holds.
pub const MAX_HISTORY_EPOCHS: usize = 10_000;

/// Most bytes a result's history may take ([`history_bytes`]: as JSON or
/// as protobuf, whichever is larger). With the rest of a result at its
/// limits (1 024 metrics per split, a 64 KiB program log) a stored record
/// stays under the etcd store's 1 MiB value limit, and a completion under
/// the worker message limit.
pub const MAX_HISTORY_BYTES: usize = 512 * 1024;

/// The bytes `history` takes in a result, at most: as JSON (the store,
/// `results.jsonl`) or as protobuf (a completion, `ListResults`),
/// whichever is larger ([`EpochRecord::size`]). Neither bounds the other:
/// `"m":0.5` is 7 bytes of JSON and 15 of protobuf, a long decimal the
/// other way round.
pub fn history_bytes(history: &[EpochRecord]) -> usize {
    history
        .iter()
        .map(EpochRecord::size)
        .fold(2, usize::saturating_add)
}

/// Fits a trial's history into [`MAX_HISTORY_EPOCHS`] and
/// [`MAX_HISTORY_BYTES`], so that a long run or a wide label space (one
/// `f1_class_<k>` per class, in both splits, every epoch) still completes
/// and is stored. Nothing changes for a history that fits. Otherwise, in
/// this order until it fits:
///
/// 1. every epoch but `selected` keeps only the selection metric `metric`
///    (the learning curve the report plots) and its training loss;
/// 2. only every `k`-th epoch is kept (the smallest `k` that fits), with
///    the first, the `selected` and the last.
///
/// Every value kept is the one the epoch measured. Returns what was done,
/// for the worker's log, or `None` when the history was kept whole.
pub fn fit_history(history: &mut Vec<EpochRecord>, metric: &str, selected: u32) -> Option<String> {
    let fits =
        |h: &[EpochRecord]| h.len() <= MAX_HISTORY_EPOCHS && history_bytes(h) <= MAX_HISTORY_BYTES;
    if fits(history) {
        return None;
    }
    let (epochs, bytes) = (history.len(), history_bytes(history));
    for e in history.iter_mut().filter(|e| e.epoch != selected) {
        e.keep_only(metric);
    }
    let mut done = format!(
        "the history ({epochs} epochs, {bytes} bytes) is larger than a result holds \
         ({MAX_HISTORY_EPOCHS} epochs, {MAX_HISTORY_BYTES} bytes): epochs other than the \
         selected one ({selected}) keep only `{metric}` and the training loss"
    );
    if fits(history) {
        return Some(done);
    }
    let sizes: Vec<usize> = history.iter().map(EpochRecord::size).collect();
    let last = history.len().saturating_sub(1);
    let keep = |stride: usize, i: usize, e: &EpochRecord| {
        i == 0 || i == last || e.epoch == selected || (i + 1).is_multiple_of(stride)
    };
    let kept_fit = |stride: usize| {
        let (mut n, mut b) = (0usize, 2usize);
        for (i, e) in history.iter().enumerate() {
            if keep(stride, i, e) {
                n += 1;
                b = b.saturating_add(sizes.get(i).copied().unwrap_or(0));
            }
        }
        n <= MAX_HISTORY_EPOCHS && b <= MAX_HISTORY_BYTES
    };
    let mut stride = 2;
    while stride < history.len() && !kept_fit(stride) {
        stride += 1;
    }
    let mut i = 0;
    history.retain(|e| {
        let k = keep(stride, i, e);
        i += 1;
        k
    });
    done.push_str(&format!(
        "; one epoch in {stride} is kept, with the first, the selected and the last ({} of {epochs})",
        history.len()
    ));
    Some(done)
}

impl EpochRecord {
    /// The bytes this epoch adds to a history, at most: as JSON (itself
    /// and a comma) or as protobuf (per metric its name and 16 bytes of
    /// tags, lengths and the `f64`; 32 for the epoch, the loss and the
    /// message's own tags), whichever is larger.
    pub fn size(&self) -> usize {
        let json = serde_json::to_vec(self).map_or(usize::MAX, |v| v.len().saturating_add(1));
        let wire = self
            .valid
            .keys()
            .chain(self.test.keys())
            .map(|k| k.len() + 16)
            .fold(32, usize::saturating_add);
        json.max(wire)
    }

    /// Drops every metric but `metric` from both splits (the training loss
    /// stays): what [`fit_history`] leaves of an epoch that is not the
    /// selected one.
    pub fn keep_only(&mut self, metric: &str) {
        self.valid.retain(|k, _| k == metric);
        self.test.retain(|k, _| k == metric);
    }
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

    /// A history of `epochs` epochs with `classes` per-class metrics in
    /// both splits, each value distinct.
    fn history(epochs: u32, classes: usize) -> Vec<EpochRecord> {
        (1..=epochs)
            .map(|epoch| {
                let split = |offset: f64| {
                    let mut m: BTreeMap<String, f64> = (0..classes)
                        .map(|k| (format!("f1_class_{k}"), offset + k as f64 * 1e-4))
                        .collect();
                    m.insert("f1_weighted".into(), offset + f64::from(epoch) * 1e-6);
                    m
                };
                EpochRecord {
                    epoch,
                    train_loss: 1.0 / f64::from(epoch),
                    valid: split(0.25),
                    test: split(0.5),
                }
            })
            .collect()
    }

    #[test]
    fn a_history_that_fits_is_kept_whole() {
        let mut h = history(30, 7);
        let before = h.clone();
        assert_eq!(fit_history(&mut h, "f1_weighted", 12), None);
        assert_eq!(h, before);
    }

    #[test]
    fn a_wide_history_keeps_every_epoch_with_the_selection_metric() {
        // 1 000 classes for 200 epochs: about 11 MB as JSON.
        let full = history(200, 1000);
        let mut h = full.clone();
        let done = fit_history(&mut h, "f1_weighted", 77).expect("reduced");
        assert!(done.contains("keep only `f1_weighted`"), "{done}");
        assert!(!done.contains("one epoch in"), "{done}");
        assert!(history_bytes(&h) <= MAX_HISTORY_BYTES);
        assert_eq!(h.len(), 200);
        for (e, f) in h.iter().zip(&full) {
            assert_eq!((e.epoch, e.train_loss), (f.epoch, f.train_loss));
            if e.epoch == 77 {
                assert_eq!(e, f, "the selected epoch keeps every metric");
            } else {
                assert_eq!(e.valid.len(), 1);
                assert_eq!(e.valid["f1_weighted"], f.valid["f1_weighted"]);
                assert_eq!(e.test["f1_weighted"], f.test["f1_weighted"]);
            }
        }
    }

    #[test]
    fn a_long_history_keeps_evenly_spaced_epochs_the_first_the_selected_and_the_last() {
        // 100 000 epochs (the most `[training] epochs` allows).
        let full = history(100_000, 5);
        let mut h = full.clone();
        let done = fit_history(&mut h, "f1_weighted", 31_337).expect("reduced");
        assert!(done.contains("one epoch in"), "{done}");
        assert!(h.len() <= MAX_HISTORY_EPOCHS && history_bytes(&h) <= MAX_HISTORY_BYTES);
        assert!(h.len() > 1000, "as many as fit: {}", h.len());
        let epochs: Vec<u32> = h.iter().map(|e| e.epoch).collect();
        assert!(epochs.windows(2).all(|w| w[0] < w[1]));
        for must in [1, 31_337, 100_000] {
            assert!(epochs.contains(&must), "epoch {must} kept");
        }
        for e in &h {
            let f = &full[e.epoch as usize - 1];
            assert_eq!(e.train_loss, f.train_loss);
            assert_eq!(e.valid["f1_weighted"], f.valid["f1_weighted"]);
        }
        // Evenly spaced: one stride between the kept epochs, but around the
        // first, the selected and the last.
        let gaps: Vec<u32> = epochs.windows(2).map(|w| w[1] - w[0]).collect();
        let stride = gaps.iter().copied().max().unwrap_or(0);
        assert!(done.contains(&format!("one epoch in {stride} ")), "{done}");
        let off = gaps.iter().filter(|&&g| g != stride).count();
        assert!(off <= 4, "{off} uneven gaps");
    }
}
