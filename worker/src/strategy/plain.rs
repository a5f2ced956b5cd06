//! The plain strategy: one trial, one device, the epoch loop over a
//! [`Workload`](crate::trial::Workload) built by the model registry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::backend::{BackendKind, training_guard};
use crate::models;
use crate::trial::{
    Checkpoint, EpochReport, Selector, Split, TrainError, TrialOutcome, TrialRequest,
    check_mean_loss,
};

/// Runs a trial to the end on the calling thread (never call it on the async
/// runtime). `progress` is called after every epoch.
pub fn run_trial(
    req: &TrialRequest,
    backend: BackendKind,
    progress: &mut dyn FnMut(EpochReport),
    cancel: &AtomicBool,
) -> Result<TrialOutcome, TrainError> {
    let _guard = training_guard();
    let start = Instant::now();
    let mut workload = models::open(req, backend)?;
    let decides = workload.decides_epochs();
    // A training program decides its epochs; `epochs` is then only what the
    // progress reports show as the total (0: unknown).
    let (epochs, shown) = if decides {
        let shown = req.params.positive("epochs", 1).map_or(0, |e| e as u32);
        (crate::models::command::MAX_EPOCHS, shown)
    } else {
        let e = req.params.positive("epochs", 10)? as u32;
        (e, e)
    };

    let save = req.params.bool("save_predictions", false)?;
    let mut selector = Selector::new(req);
    let mut predictions = None;
    let save_weights = req.params.bool("save_weights", false)?;
    let mut weights = None;
    let mut first = 1;
    if let Some(dir) = &req.checkpoint {
        // A checkpoint that cannot be read is removed, and the trial fails
        // (retryably: the next attempt starts afresh).
        let resumed = Checkpoint::load(dir).and_then(|c| match c {
            None => Ok(None),
            Some(c) => workload.restore(&c.workload).map(|()| Some(c)),
        });
        match resumed {
            Ok(None) => {}
            Ok(Some(c)) => {
                tracing::info!(trial = %req.trial_id, epoch = c.epoch, "resuming from a checkpoint");
                selector.restore(&c.selector);
                predictions = c.predictions;
                weights = c.weights;
                first = c.epoch + 1;
            }
            Err(e) => {
                Checkpoint::remove(dir);
                return Err(TrainError::Backend(format!(
                    "unreadable checkpoint removed ({e}); the next attempt starts afresh"
                )));
            }
        }
    }
    let train = || -> Result<TrialOutcome, TrainError> {
        for count in first..=epochs {
            if cancel.load(Ordering::Relaxed) {
                return Err(TrainError::Cancelled);
            }
            let Some(epoch) = workload.next_epoch(count, cancel)? else {
                break;
            };
            let loss = workload.train_epoch(epoch, cancel)?;
            check_mean_loss(loss, epoch)?;
            let valid = workload.evaluate(Split::Valid)?;
            let test = workload.evaluate(Split::Test)?;
            selector.end_epoch(epoch, shown, loss, valid, test, progress)?;
            if save && !decides && selector.is_best(epoch) {
                predictions = Some(workload.predictions(Split::Test)?);
            }
            if save_weights && selector.is_best(epoch) {
                weights = Some(workload.weights()?.describe(req, epoch));
            }
            if let Some(dir) = &req.checkpoint {
                Checkpoint {
                    epoch,
                    selector: selector.state(),
                    predictions: predictions.clone(),
                    weights: weights.clone(),
                    workload: workload.state()?,
                }
                .save(dir)?;
            }
        }
        let ending = workload.ended()?;
        let seconds = start.elapsed().as_secs_f64();
        let outcome = match ending.selected {
            Some(chosen) => selector.finish_chosen(seconds, chosen),
            None => selector.finish(seconds)?,
        };
        Ok(TrialOutcome {
            predictions: ending.predictions.or_else(|| predictions.take()),
            weights: weights.take(),
            ..outcome
        })
    };
    let outcome = train();
    // A finished trial, or one that would fail the same way again, needs
    // no checkpoint; a cancelled or crashed one resumes from it.
    if let Some(dir) = &req.checkpoint
        && outcome
            .as_ref()
            .map_or_else(TrainError::is_deterministic, |_| true)
    {
        Checkpoint::remove(dir);
    }
    outcome
}
