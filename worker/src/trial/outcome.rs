//! What a trial produces, and the one epoch-selection rule every strategy
//! (plain, data-parallel, fused) applies through [`Selector`].
//!
//! Protocol: after every epoch the model is evaluated on the validation and
//! test splits; the epoch with the best value of the selection metric on its
//! split is kept (the first one on ties), and the test metrics of that epoch
//! are the trial's result. A non-finite mean training loss fails the trial
//! ([`check_mean_loss`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::TrainError;
use super::request::{Split, TrialRequest};
use super::weights::Weights;
pub use sigsweep_types::EpochRecord;
use sigsweep_types::record::{MAX_HISTORY_BYTES, fit_history};

/// Progress after one epoch.
#[derive(Debug, Clone)]
pub struct EpochReport {
    pub epoch: u32,
    pub epochs: u32,
    pub train_loss: f64,
    pub valid_metrics: BTreeMap<String, f64>,
}

/// A finished trial.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialOutcome {
    pub selected_epoch: u32,
    pub valid_metrics: BTreeMap<String, f64>,
    pub test_metrics: BTreeMap<String, f64>,
    pub seconds: f64,
    /// Every epoch: mean training loss, validation and test metrics.
    pub epochs: Vec<EpochRecord>,
    /// The test predictions of the selected epoch, when the trial saves them
    /// (`save_predictions`).
    pub predictions: Option<Vec<Prediction>>,
    /// The weights of the selected epoch, when the trial saves them
    /// (`save_weights`).
    pub weights: Option<Weights>,
    /// True when a training program selected the epoch itself.
    pub program_selected: bool,
    /// How the trial trained when not alone on one device (seed-fused,
    /// data parallel): [`crate::execute::Plan::describe`].
    pub strategy: Option<String>,
}

/// One test example's prediction: a line of a trial's predictions file
/// (`predictions/<trial_id>.jsonl` in the worker's artifacts directory).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    /// The example's id in the dataset file: MMSA's `id`; for dialogues
    /// `<dialogue id>/<utterance index>` (0-based, in dialogue order).
    pub id: String,
    /// The gold label (a class index) or value.
    pub gold: f64,
    /// The predicted class index or value.
    pub pred: f64,
    /// Log-probabilities of the classes (classification only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_probs: Option<Vec<f32>>,
}

/// A predictions file's text: one JSON line per example.
pub fn predictions_jsonl(predictions: &[Prediction]) -> Result<String, TrainError> {
    let mut text = String::new();
    for p in predictions {
        let line = serde_json::to_string(p)
            .map_err(|e| TrainError::Backend(format!("prediction of `{}`: {e}", p.id)))?;
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

/// One training epoch: `step` trains on each batch in order and returns its
/// loss; the epoch stops with [`TrainError::Cancelled`] when `cancel` is set
/// between steps, and with [`TrainError::NonFinite`] (naming the epoch and
/// the 1-based step) at the first non-finite loss. A step that sees a
/// non-finite loss should return it without updating the model. Returns the
/// mean loss over the steps. Every trainer's epoch (each model's plain
/// workload, the data-parallel strategy) goes through here.
pub fn train_epoch_steps<T>(
    batches: &[T],
    epoch: u32,
    cancel: &AtomicBool,
    mut step: impl FnMut(&T) -> Result<f64, TrainError>,
) -> Result<f64, TrainError> {
    let mut total = 0.0;
    for (i, batch) in batches.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(TrainError::Cancelled);
        }
        let value = step(batch)?;
        if !value.is_finite() {
            return Err(TrainError::NonFinite {
                what: "training loss",
                value,
                epoch,
                step: i + 1,
            });
        }
        total += value;
    }
    Ok(total / batches.len().max(1) as f64)
}

/// Fails an epoch whose mean training loss is not finite.
pub(crate) fn check_mean_loss(loss: f64, epoch: u32) -> Result<(), TrainError> {
    if loss.is_finite() {
        Ok(())
    } else {
        Err(TrainError::NonFinite {
            what: "mean training loss",
            value: loss,
            epoch,
            step: 0,
        })
    }
}

/// A [`Selector`]'s progress, as a checkpoint stores it: every number as its
/// bits, so a resumed trial compares exactly the same values.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SelectorState {
    best: Option<BestBits>,
    /// Per epoch: (training loss, validation, test).
    history: Vec<(u64, Bits, Bits)>,
    /// The history has outgrown a result ([`Selector::bound_history`]).
    #[serde(default)]
    outgrown: bool,
}

/// Metrics as bits.
type Bits = Vec<(String, u64)>;
/// The best epoch as bits: (value, epoch, valid, test).
type BestBits = (u64, u32, Bits, Bits);

fn bits(m: &BTreeMap<String, f64>) -> Bits {
    m.iter().map(|(k, v)| (k.clone(), v.to_bits())).collect()
}

fn unbits(m: &[(String, u64)]) -> BTreeMap<String, f64> {
    m.iter()
        .map(|(k, v)| (k.clone(), f64::from_bits(*v)))
        .collect()
}

/// The best epoch so far.
struct Best {
    value: f64,
    epoch: u32,
    valid: BTreeMap<String, f64>,
    test: BTreeMap<String, f64>,
}

/// `history` fitted into what a result holds
/// ([`sigsweep_types::record::fit_history`]), saying so in the log when it
/// had to shrink. `outgrown`: the whole history was larger than a result
/// at some epoch ([`Selector::bound_history`] thinned what it held), so
/// every epoch but `selected` keeps only `metric`, as the whole one's fit
/// would have it.
fn fitted(
    mut history: Vec<EpochRecord>,
    metric: &str,
    selected: u32,
    outgrown: bool,
) -> Vec<EpochRecord> {
    if outgrown {
        for e in history.iter_mut().filter(|e| e.epoch != selected) {
            e.keep_only(metric);
        }
    }
    match fit_history(&mut history, metric, selected) {
        Some(done) => tracing::warn!("{done}"),
        None if outgrown => tracing::warn!(
            "the history is larger than a result holds: epochs other than the selected one \
             ({selected}) keep only `{metric}` and the training loss"
        ),
        None => {}
    }
    history
}

/// Epoch selection of one trial: the epoch with the best value of the
/// selection metric on its split (the first on ties) wins, and its test
/// metrics are the trial's result. Shared by every trainer (plain, fused,
/// data-parallel) so they cannot drift apart.
pub(crate) struct Selector {
    select: String,
    higher_is_better: bool,
    split: Split,
    best: Option<Best>,
    history: Vec<EpochRecord>,
    /// What `history` takes in a result ([`EpochRecord::size`]).
    bytes: usize,
    /// Epochs `..thinned` of `history` hold only the selection metric
    /// (work saved, not state: thinning again changes nothing).
    thinned: usize,
    /// The history has grown past what a result holds at some epoch, so
    /// the result keeps only the selection metric of every epoch but the
    /// selected one (as `fit_history` of the whole history would).
    outgrown: bool,
}

impl Selector {
    pub(crate) fn new(req: &TrialRequest) -> Self {
        Self {
            select: req.select.clone(),
            higher_is_better: req.select_higher_is_better,
            split: req.select_split,
            best: None,
            history: Vec::new(),
            bytes: 0,
            thinned: 0,
            outgrown: false,
        }
    }

    /// Keeps the history held during training within what a result can
    /// hold: once it grows past [`MAX_HISTORY_BYTES`] (a wide label space,
    /// a long run), every epoch keeps only the selection metric, which is
    /// what [`fit_history`] would leave of them at the end anyway (the
    /// selected epoch's metrics are in `best`). Memory and checkpoints then
    /// grow by a few bytes an epoch, not by every per-class metric. Its
    /// state is in the checkpoint, so a resumed trial does the same.
    fn bound_history(&mut self) {
        if self.bytes <= MAX_HISTORY_BYTES {
            return;
        }
        self.outgrown = true;
        for e in self.history.iter_mut().skip(self.thinned) {
            let before = e.size();
            e.keep_only(&self.select);
            self.bytes = self.bytes.saturating_sub(before) + e.size();
        }
        self.thinned = self.history.len();
    }

    /// Records one finished epoch; errors when the selection metric is missing.
    pub(crate) fn record(
        &mut self,
        epoch: u32,
        loss: f64,
        valid: BTreeMap<String, f64>,
        test: BTreeMap<String, f64>,
    ) -> Result<(), TrainError> {
        let source = if self.split == Split::Test {
            &test
        } else {
            &valid
        };
        let value = *source
            .get(&self.select)
            .ok_or_else(|| TrainError::MissingMetric(self.select.clone()))?;
        let better = match &self.best {
            None => true,
            Some(b) => {
                if self.higher_is_better {
                    value > b.value
                } else {
                    value < b.value
                }
            }
        };
        let record = EpochRecord {
            epoch,
            train_loss: loss,
            valid: valid.clone(),
            test: test.clone(),
        };
        self.bytes = self.bytes.saturating_add(record.size());
        self.history.push(record);
        self.bound_history();
        if better && value.is_finite() {
            self.best = Some(Best {
                value,
                epoch,
                valid,
                test,
            });
        }
        Ok(())
    }

    /// Records a finished epoch and reports its progress.
    pub(crate) fn end_epoch(
        &mut self,
        epoch: u32,
        epochs: u32,
        loss: f64,
        valid: BTreeMap<String, f64>,
        test: BTreeMap<String, f64>,
        progress: &mut dyn FnMut(EpochReport),
    ) -> Result<(), TrainError> {
        self.record(epoch, loss, valid.clone(), test)?;
        progress(EpochReport {
            epoch,
            epochs,
            train_loss: loss,
            valid_metrics: valid,
        });
        Ok(())
    }

    /// What a checkpoint keeps of the selector (exact: numbers as bits).
    pub(crate) fn state(&self) -> SelectorState {
        SelectorState {
            best: self
                .best
                .as_ref()
                .map(|b| (b.value.to_bits(), b.epoch, bits(&b.valid), bits(&b.test))),
            history: self
                .history
                .iter()
                .map(|e| (e.train_loss.to_bits(), bits(&e.valid), bits(&e.test)))
                .collect(),
            outgrown: self.outgrown,
        }
    }

    /// Continues from a checkpoint's [`Self::state`].
    pub(crate) fn restore(&mut self, state: &SelectorState) {
        self.best = state.best.as_ref().map(|(value, epoch, valid, test)| Best {
            value: f64::from_bits(*value),
            epoch: *epoch,
            valid: unbits(valid),
            test: unbits(test),
        });
        self.history = state
            .history
            .iter()
            .enumerate()
            .map(|(i, (loss, valid, test))| EpochRecord {
                epoch: i as u32 + 1,
                train_loss: f64::from_bits(*loss),
                valid: unbits(valid),
                test: unbits(test),
            })
            .collect();
        self.bytes = self.history.iter().map(EpochRecord::size).sum();
        self.thinned = 0;
        self.outgrown = state.outgrown;
    }

    /// Whether `epoch` is the best so far (the one a trial would keep).
    pub(crate) fn is_best(&self, epoch: u32) -> bool {
        self.best.as_ref().is_some_and(|b| b.epoch == epoch)
    }

    pub(crate) fn finish(mut self, seconds: f64) -> Result<TrialOutcome, TrainError> {
        let best = self
            .best
            .ok_or_else(|| TrainError::NeverFinite(self.select.clone()))?;
        // The selected epoch whole again, where `bound_history` thinned it.
        if let Some(e) = self.history.iter_mut().find(|e| e.epoch == best.epoch) {
            e.valid.clone_from(&best.valid);
            e.test.clone_from(&best.test);
        }
        Ok(TrialOutcome {
            selected_epoch: best.epoch,
            valid_metrics: best.valid,
            test_metrics: best.test,
            seconds,
            epochs: fitted(self.history, &self.select, best.epoch, self.outgrown),
            predictions: None,
            weights: None,
            program_selected: false,
            strategy: None,
        })
    }

    /// The outcome of a workload that selected its epoch itself (a
    /// training program's `final` line): `chosen` is the result, the
    /// recorded epochs are its history.
    pub(crate) fn finish_chosen(self, seconds: f64, chosen: EpochRecord) -> TrialOutcome {
        TrialOutcome {
            selected_epoch: chosen.epoch,
            epochs: fitted(self.history, &self.select, chosen.epoch, self.outgrown),
            valid_metrics: chosen.valid,
            test_metrics: chosen.test,
            seconds,
            predictions: None,
            weights: None,
            program_selected: true,
            strategy: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sigsweep_types::record::{MAX_HISTORY_BYTES, fit_history, history_bytes};

    use super::Selector;
    use crate::trial::{DatasetRequest, Params, Split, TrialRequest};

    fn selector() -> Selector {
        Selector::new(&TrialRequest {
            trial_id: "t".into(),
            seed: 1,
            model: "late-fusion".into(),
            params: Params::default(),
            dataset: DatasetRequest {
                kind: "synthetic".into(),
                generator: "fusion".into(),
                path: String::new(),
                params: serde_json::Value::Null,
                fold: None,
            },
            select: "f1_weighted".into(),
            select_higher_is_better: true,
            select_split: Split::Valid,
            checkpoint: None,
            program: None,
        })
    }

    /// Epoch `epoch`'s metrics: 1 000 per-class F1s and `f1_weighted`,
    /// best at epoch 137.
    fn metrics(epoch: u32, offset: f64) -> BTreeMap<String, f64> {
        let mut m: BTreeMap<String, f64> = (0..1000)
            .map(|k| {
                (
                    format!("f1_class_{k}"),
                    offset + f64::from(epoch) * 1e-7 + k as f64,
                )
            })
            .collect();
        let distance = f64::from(epoch.abs_diff(137));
        m.insert("f1_weighted".into(), 1.0 / (1.0 + distance));
        m
    }

    fn record(s: &mut Selector, epoch: u32) {
        let loss = 1.0 / f64::from(epoch);
        s.record(epoch, loss, metrics(epoch, 0.0), metrics(epoch, 0.5))
            .expect("record");
    }

    /// A selection metric that is NaN or infinite at every epoch fails the
    /// trial saying so (not "not produced by this model"); one finite epoch
    /// is enough to select it.
    #[test]
    fn a_selection_metric_never_finite_fails_with_that_reason() {
        let bad = |v: f64| BTreeMap::from([("f1_weighted".to_string(), v)]);
        let mut s = selector();
        s.record(1, 1e30, bad(f64::NAN), bad(f64::NAN))
            .expect("record");
        s.record(2, 1e31, bad(f64::INFINITY), bad(0.1))
            .expect("record");
        let e = s.finish(1.0).expect_err("nothing to select");
        assert!(
            matches!(&e, crate::trial::TrainError::NeverFinite(m) if m == "f1_weighted"),
            "{e}"
        );
        assert!(e.to_string().contains("not finite at any epoch"), "{e}");
        assert!(e.is_deterministic());
        let mut s = selector();
        s.record(1, 1.0, bad(f64::NAN), bad(f64::NAN))
            .expect("record");
        s.record(2, 1.0, bad(0.25), bad(0.5)).expect("record");
        assert_eq!(s.finish(1.0).expect("one finite epoch").selected_epoch, 2);
    }

    /// A wide history (1 000 classes × 400 epochs, about 50 MB as JSON) is
    /// held within a result's size while it trains, and ends as
    /// `fit_history` of the whole one would: every epoch with the selection
    /// metric, the selected one whole. A trial resumed from a checkpoint
    /// half-way ends the same.
    #[test]
    fn a_wide_history_stays_bounded_while_training_and_ends_as_fitted() {
        let epochs = 400;
        let mut s = selector();
        let mut resumed = selector();
        let mut largest = 0;
        for epoch in 1..=epochs {
            record(&mut s, epoch);
            largest = largest.max(history_bytes(&s.history));
            if epoch == 250 {
                resumed.restore(&s.state());
            }
            if epoch > 250 {
                record(&mut resumed, epoch);
            }
        }
        // At most the budget and one whole epoch (about 60 kB) past it.
        assert!(
            largest <= MAX_HISTORY_BYTES + 70_000,
            "{largest} bytes held"
        );

        let mut whole: Vec<_> = (1..=epochs)
            .map(|epoch| sigsweep_types::EpochRecord {
                epoch,
                train_loss: 1.0 / f64::from(epoch),
                valid: metrics(epoch, 0.0),
                test: metrics(epoch, 0.5),
            })
            .collect();
        assert!(fit_history(&mut whole, "f1_weighted", 137).is_some());

        let out = s.finish(1.0).expect("finish");
        assert_eq!(out.selected_epoch, 137);
        assert_eq!(out.epochs, whole);
        assert_eq!(out.epochs[136].valid, metrics(137, 0.0), "selected whole");
        assert_eq!(out.epochs[10].valid.len(), 1);
        let again = resumed.finish(1.0).expect("finish");
        assert_eq!(again.epochs, out.epochs);
        assert_eq!(again.valid_metrics, out.valid_metrics);
    }
}
