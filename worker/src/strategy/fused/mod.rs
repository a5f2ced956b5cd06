//! Seed fusion (HFTA, Wang et al., MLSys 2021): the `K` seeds of one
//! configuration train as one batched model on one device.
//!
//! Every parameter gets a leading seed axis ([`layers`]): slice `k` is seed
//! `k`'s model. Implemented for `late-fusion` ([`late_fusion`]) and
//! `fdcmdie` ([`fdcmdie`]); [`crate::models::supports_fusion`] says which trials can fuse.
//!
//! # Invariants (per-slice equivalence)
//!
//! - **Initialisation**: slice `k` is copied from the unfused model built
//!   exactly as [`crate::strategy::plain::run_trial`] builds it for seed `k`
//!   (`B::seed(device, seed_k)`, the model's constructor, parameters
//!   materialised in the module's visiting order).
//! - **Data**: seed `k` trains on its own dataset (synthetic data derives
//!   from the seed) in its own order (its own shuffle RNG, stream 100; for
//!   `fdcmdie` also its own contrastive sampling, stream 101), with the
//!   unfused batch boundaries. All seeds must therefore share split sizes
//!   and feature shapes (they do when only the seed differs).
//! - **Loss**: the sum over seeds of each seed's own loss. No term mixes
//!   seeds, so the gradient of slice `k` is seed `k`'s unfused gradient.
//! - **Optimiser**: AdamW is elementwise (its step count is shared and equal),
//!   so slice `k`'s update is seed `k`'s unfused update. Gradient clipping by
//!   norm is not elementwise: trials with `grad_clip > 0` do not fuse.
//! - **Dropout**: [`run_loop`] starts every epoch's dropout stream with
//!   the group's seeds ([`crate::tensor::draws`]), so slice `k` of every
//!   dropout call draws exactly the masks seed `k`'s trial draws alone at
//!   that call (the fused layers call dropout in the unfused order, on
//!   slices laid out as the unfused activations: the fused FD-CMDIE encodes
//!   each seed's distinct samples once, padded at the end, and attends
//!   through the same CPU node). A seed's numbers therefore do not depend
//!   on the seeds fused with it.
//! - **Failure**: a seed whose training loss is not finite fails alone (its
//!   slice is dropped from the loss; the slices never interact, so the other
//!   seeds are unaffected). A missing selection metric also fails only that
//!   seed; cancellation fails all.
//!
//! Each seed's [`TrialOutcome::seconds`] is the wall time of the whole fused
//! run. [`run_loop`] is the epoch loop every fused model shares (the
//! protocol of [`crate::strategy::plain::run_trial`]: evaluate on valid and test
//! after every epoch, select the epoch on the selection metric).

mod common;
pub mod fdcmdie;
pub mod late_fusion;
pub mod layers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;

use crate::backend::{BackendKind, training_guard};
use crate::models::{self, Kind};
use crate::trial::{EpochReport, Selector, TrainError, TrialOutcome, TrialRequest};
use common::FusedTrainer;

pub use fdcmdie::FusedFdCmdie;
pub use late_fusion::FusedLateFusion;
pub use layers::FusedLinear;

/// Checks that `requests` differ only in their seed (and trial id).
fn check_same_config(requests: &[TrialRequest]) -> Result<(), TrainError> {
    let first = &requests[0];
    for r in &requests[1..] {
        let same = r.model == first.model
            && r.params == first.params
            && r.dataset.kind == first.dataset.kind
            && r.dataset.generator == first.dataset.generator
            && r.dataset.path == first.dataset.path
            && r.dataset.params == first.dataset.params
            && r.select == first.select
            && r.select_higher_is_better == first.select_higher_is_better
            && r.select_split == first.select_split;
        if !same {
            return Err(TrainError::InvalidParam {
                key: "seed".into(),
                message: format!(
                    "seed fusion needs trials that differ only in their seed; `{}` differs from `{}`",
                    r.trial_id, first.trial_id
                ),
            });
        }
    }
    Ok(())
}

/// Trains the seeds of `requests` (one configuration, several seeds) as one
/// fused model; returns one result per request, in order, each equal (up to
/// floating-point order, with dropout 0) to [`crate::strategy::plain::run_trial`] on
/// that request. `progress(k, report)` is called after every epoch for every
/// still-running seed `k`.
pub fn run_fused(
    requests: &[TrialRequest],
    backend: BackendKind,
    progress: &mut dyn FnMut(usize, EpochReport),
    cancel: &AtomicBool,
) -> Vec<Result<TrialOutcome, TrainError>> {
    match backend {
        BackendKind::Cpu => {
            run_fused_on::<crate::backend::Cpu>(requests, &Default::default(), progress, cancel)
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => match crate::backend::cuda_device(0) {
            Ok(device) => run_fused_on::<crate::backend::Cuda>(requests, &device, progress, cancel),
            Err(e) => requests
                .iter()
                .map(|_| Err(TrainError::Backend(e.clone())))
                .collect(),
        },
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda => requests
            .iter()
            .map(|_| {
                Err(TrainError::Backend(
                    crate::backend::check_available(BackendKind::Cuda)
                        .err()
                        .unwrap_or_default(),
                ))
            })
            .collect(),
    }
}

/// [`run_fused`] on backend `B` and `device`.
pub fn run_fused_on<B: AutodiffBackend>(
    requests: &[TrialRequest],
    device: &B::Device,
    progress: &mut dyn FnMut(usize, EpochReport),
    cancel: &AtomicBool,
) -> Vec<Result<TrialOutcome, TrainError>> {
    if requests.is_empty() {
        return Vec::new();
    }
    let _guard = training_guard();
    let start = Instant::now();
    let k = requests.len();
    let mut results: Vec<Option<Result<TrialOutcome, TrainError>>> = (0..k).map(|_| None).collect();
    let mut run = || -> Result<(), TrainError> {
        check_same_config(requests)?;
        let req = &requests[0];
        let entry = models::check_request(req)?;
        if !models::supports_fusion(req) {
            return Err(TrainError::InvalidParam {
                key: "fuse_seeds".into(),
                message: format!(
                    "seed fusion supports late-fusion and fdcmdie (without grad_clip), not this `{}` trial",
                    req.model
                ),
            });
        }
        let epochs = req.params.positive("epochs", 10)? as u32;
        let mut trainer: Box<dyn FusedTrainer> = match entry.kind {
            Kind::LateFusion => {
                Box::new(late_fusion::LateFusionTrainer::<B>::new(requests, device)?)
            }
            Kind::FdCmdie => Box::new(fdcmdie::FdCmdieTrainer::<B>::new(requests, device)?),
            Kind::Mmic(_) => {
                return Err(TrainError::InvalidParam {
                    key: "fuse_seeds".into(),
                    message: format!("seed fusion is not implemented for `{}`", req.model),
                });
            }
        };
        run_loop(
            trainer.as_mut(),
            requests,
            epochs,
            progress,
            cancel,
            &mut results,
            start,
        )
    };
    if let Err(e) = run() {
        // A failure that concerns every seed (configuration, data shape,
        // cancellation): report it on every seed that has no result yet.
        for r in results.iter_mut().filter(|r| r.is_none()) {
            *r = Some(Err(duplicate(&e)));
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Err(TrainError::Backend("seed finished without a result".into())))
        })
        .collect()
}

/// A copy of `e` (`TrainError` is not `Clone`: it wraps the data crate's error).
fn duplicate(e: &TrainError) -> TrainError {
    match e {
        TrainError::InvalidParam { key, message } => TrainError::InvalidParam {
            key: key.clone(),
            message: message.clone(),
        },
        TrainError::UnknownModel { name, known } => TrainError::UnknownModel {
            name: name.clone(),
            known: known.clone(),
        },
        TrainError::Data(d) => TrainError::Dataset(d.to_string()),
        TrainError::Dataset(d) => TrainError::Dataset(d.clone()),
        TrainError::Program(m) => TrainError::Program(m.clone()),
        TrainError::ProgramExit(m) => TrainError::ProgramExit(m.clone()),
        TrainError::NonFinite {
            what,
            value,
            epoch,
            step,
        } => TrainError::NonFinite {
            what,
            value: *value,
            epoch: *epoch,
            step: *step,
        },
        TrainError::MissingMetric(m) => TrainError::MissingMetric(m.clone()),
        TrainError::NeverFinite(m) => TrainError::NeverFinite(m.clone()),
        TrainError::Refused(m) => TrainError::Refused(m.clone()),
        TrainError::Cancelled => TrainError::Cancelled,
        TrainError::Backend(b) => TrainError::Backend(b.clone()),
        TrainError::Memory(m) => TrainError::Memory(m.clone()),
    }
}

/// The epoch loop of every fused model: per-seed orders and batch
/// boundaries as unfused, per-seed failure on a non-finite loss, per-seed
/// epoch selection.
fn run_loop(
    trainer: &mut dyn FusedTrainer,
    requests: &[TrialRequest],
    epochs: u32,
    progress: &mut dyn FnMut(usize, EpochReport),
    cancel: &AtomicBool,
    results: &mut [Option<Result<TrialOutcome, TrainError>>],
    start: Instant,
) -> Result<(), TrainError> {
    let k = requests.len();
    let mut selectors: Vec<Selector> = requests.iter().map(Selector::new).collect();
    let mut active: Vec<bool> = vec![true; k];
    let n = trainer.train_len();
    let batch_size = trainer.batch_size().max(1);
    let seeds: Vec<u64> = requests.iter().map(|r| r.seed).collect();
    for epoch in 1..=epochs {
        if cancel.load(Ordering::Relaxed) {
            return Err(TrainError::Cancelled);
        }
        // Slice k draws seed k's own dropout masks, as its trial alone.
        crate::tensor::draws::start_epoch(&seeds, epoch);
        let orders = trainer.orders();
        let mut totals = vec![0.0f64; k];
        let mut steps = 0usize;
        for (step, start_at) in (0..n).step_by(batch_size).enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(TrainError::Cancelled);
            }
            let end = (start_at + batch_size).min(n);
            let idx: Vec<&[usize]> = orders.iter().map(|o| &o[start_at..end]).collect();
            let values = trainer.step(&idx, &active)?;
            for (seed, &value) in values.iter().enumerate() {
                if active[seed] && !value.is_finite() {
                    active[seed] = false;
                    results[seed] = Some(Err(TrainError::NonFinite {
                        what: "training loss",
                        value,
                        epoch,
                        step: step + 1,
                    }));
                }
            }
            if !active.iter().any(|&a| a) {
                return Ok(());
            }
            for (t, v) in totals.iter_mut().zip(&values) {
                *t += v;
            }
            steps += 1;
        }
        for (seed, (valid, test)) in trainer.evaluate()?.into_iter().enumerate() {
            if !active[seed] {
                continue;
            }
            let loss = totals[seed] / steps.max(1) as f64;
            if !loss.is_finite() {
                active[seed] = false;
                results[seed] = Some(Err(TrainError::NonFinite {
                    what: "mean training loss",
                    value: loss,
                    epoch,
                    step: 0,
                }));
                continue;
            }
            if let Err(e) = selectors[seed].record(epoch, loss, valid.clone(), test) {
                active[seed] = false;
                results[seed] = Some(Err(e));
                continue;
            }
            progress(
                seed,
                EpochReport {
                    epoch,
                    epochs,
                    train_loss: loss,
                    valid_metrics: valid,
                },
            );
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    for (seed, selector) in selectors.into_iter().enumerate() {
        if active[seed] {
            results[seed] = Some(selector.finish(seconds));
        }
    }
    Ok(())
}
