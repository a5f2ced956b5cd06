//! Runs one trial: dataset → model → epochs → selected epoch → metrics.
//!
//! Protocol: after every epoch the model is evaluated on the validation and
//! test splits; the epoch with the best validation value of the selection
//! metric is kept (the first one on ties), and the test metrics of that
//! epoch are the trial's result. A non-finite training loss fails the trial
//! with the epoch and the step where it happened.

mod data;

pub use data::{DatasetRequest, LoadedDataset, load_dataset};

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::backend::BackendKind;
use crate::models;
use crate::params::Params;

/// Which split to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Valid,
    Test,
}

/// Everything needed to run one trial.
#[derive(Debug, Clone)]
pub struct TrialRequest {
    pub trial_id: String,
    pub seed: u64,
    pub model: String,
    pub params: Params,
    pub dataset: DatasetRequest,
    /// Metric that selects the epoch.
    pub select: String,
    pub select_higher_is_better: bool,
    /// Split the selection metric is read from (Valid, or Test to reproduce
    /// protocols that select on test).
    pub select_split: Split,
}

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
    pub epochs: Vec<(f64, BTreeMap<String, f64>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid parameter `{key}`: {message}")]
    InvalidParam { key: String, message: String },
    #[error("unknown model `{0}`; known models: {known}", known = models::names().join(", "))]
    UnknownModel(String),
    #[error("dataset: {0}")]
    Data(#[from] sigsweep_data::DataError),
    #[error("dataset: {0}")]
    Dataset(String),
    #[error("training diverged: {what} is {value} at epoch {epoch}, step {step}")]
    NonFinite {
        what: &'static str,
        value: f64,
        epoch: u32,
        step: usize,
    },
    #[error("selection metric `{0}` is not produced by this model/dataset")]
    MissingMetric(String),
    #[error("cancelled")]
    Cancelled,
    #[error("backend: {0}")]
    Backend(String),
}

impl TrainError {
    /// Failures that will happen again with the same trial (bad parameters,
    /// bad data, divergence) as opposed to transient ones.
    pub fn is_deterministic(&self) -> bool {
        !matches!(self, Self::Cancelled | Self::Backend(_))
    }
}

/// One model + dataset pair being trained.
pub trait Workload {
    /// Trains one epoch and returns the mean training loss. `epoch` starts
    /// at 1. Must check `cancel` between steps.
    fn train_epoch(&mut self, epoch: u32, cancel: &AtomicBool) -> Result<f64, TrainError>;
    /// Metrics of the current model on `split`.
    fn evaluate(&self, split: Split) -> Result<BTreeMap<String, f64>, TrainError>;
}

/// burn's CPU backend keeps one process-wide RNG (seeded per trial), so trials
/// in one process run one at a time.
pub(crate) static TRAINING: Mutex<()> = Mutex::new(());

/// Runs a trial to the end on the calling thread (never call it on the async
/// runtime). `progress` is called after every epoch.
pub fn run_trial(
    req: &TrialRequest,
    backend: BackendKind,
    progress: &mut dyn FnMut(EpochReport),
    cancel: &AtomicBool,
) -> Result<TrialOutcome, TrainError> {
    let _guard = TRAINING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let start = Instant::now();
    let epochs = req.params.positive("epochs", 10)? as u32;
    let dataset = load_dataset(
        &req.dataset,
        req.seed,
        req.params.f64_in("valid_fraction", 0.1, 0.0, 0.95)?,
    )?;
    let mut workload = models::build(req, dataset, backend)?;

    let mut selector = Selector::new(req);
    for epoch in 1..=epochs {
        if cancel.load(Ordering::Relaxed) {
            return Err(TrainError::Cancelled);
        }
        let loss = workload.train_epoch(epoch, cancel)?;
        check_mean_loss(loss, epoch)?;
        let valid = workload.evaluate(Split::Valid)?;
        let test = workload.evaluate(Split::Test)?;
        selector.end_epoch(epoch, epochs, loss, valid, test, progress)?;
    }
    selector.finish(start.elapsed().as_secs_f64())
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

/// The best epoch so far.
struct Best {
    value: f64,
    epoch: u32,
    valid: BTreeMap<String, f64>,
    test: BTreeMap<String, f64>,
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
    history: Vec<(f64, BTreeMap<String, f64>)>,
}

impl Selector {
    pub(crate) fn new(req: &TrialRequest) -> Self {
        Self {
            select: req.select.clone(),
            higher_is_better: req.select_higher_is_better,
            split: req.select_split,
            best: None,
            history: Vec::new(),
        }
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
        self.history.push((loss, valid.clone()));
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

    pub(crate) fn finish(self, seconds: f64) -> Result<TrialOutcome, TrainError> {
        let best = self
            .best
            .ok_or_else(|| TrainError::MissingMetric(format!("{} (never finite)", self.select)))?;
        Ok(TrialOutcome {
            selected_epoch: best.epoch,
            valid_metrics: best.valid,
            test_metrics: best.test,
            seconds,
            epochs: self.history,
        })
    }
}
