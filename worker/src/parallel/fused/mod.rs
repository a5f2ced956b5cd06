//! Seed fusion (HFTA, Wang et al., MLSys 2021): the `K` seeds of one
//! configuration train as one batched model on one device.
//!
//! Every parameter gets a leading seed axis ([`layers`]): slice `k` is seed
//! `k`'s model. Implemented for `late-fusion` ([`late_fusion`]) and
//! `fdcmdie` ([`fdcmdie`]); [`supports`] says which trials can fuse.
//!
//! # Invariants (per-slice equivalence)
//!
//! - **Initialisation**: slice `k` is copied from the unfused model built
//!   exactly as [`crate::trainer::run_trial`] builds it for seed `k`
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
//! - **Dropout**: each seed gets its own masks (one Bernoulli draw per
//!   element of the fused activation), but they come from a different RNG
//!   stream than unfused training (one draw for all seeds, in a different
//!   order), so fused and unfused runs match only with dropout 0; with
//!   dropout > 0 they are statistically, not numerically, equivalent.
//! - **Failure**: a seed whose training loss is not finite fails alone (its
//!   slice is dropped from the loss; the slices never interact, so the other
//!   seeds are unaffected). A missing selection metric also fails only that
//!   seed; cancellation fails all.
//!
//! Each seed's [`TrialOutcome::seconds`] is the wall time of the whole fused
//! run. [`run_loop`] is the epoch loop every fused model shares (the
//! protocol of [`crate::trainer::run_trial`]: evaluate on valid and test
//! after every epoch, select the epoch on the selection metric).

pub mod fdcmdie;
pub mod late_fusion;
pub mod layers;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use sigsweep_data::seq::{Array3, SeqSplit};

use super::Selector;
use crate::backend::BackendKind;
use crate::trainer::{EpochReport, TrainError, TrialOutcome, TrialRequest};

pub use fdcmdie::FusedFdCmdie;
pub use late_fusion::FusedLateFusion;
pub use layers::FusedLinear;

/// Whether `req`'s seeds can train as one fused model (`fuse_seeds`); the
/// agent trains the others one after another.
pub fn supports(req: &TrialRequest) -> bool {
    match req.model.as_str() {
        "late-fusion" => true,
        // Norm clipping couples a parameter's slices (see the module docs).
        "fdcmdie" => req.params.f64("grad_clip", 0.0).is_ok_and(|c| c <= 0.0),
        _ => false,
    }
}

pub(crate) fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default()
}

/// A fused model with its optimiser and every seed's data, as [`run_loop`]
/// drives it.
pub(crate) trait FusedTrainer {
    /// Samples in every seed's training split.
    fn train_len(&self) -> usize;
    fn batch_size(&self) -> usize;
    /// Every seed's shuffled training order for the next epoch.
    fn orders(&mut self) -> Vec<Vec<usize>>;
    /// One optimiser step on the samples `idx[k]` of every seed `k`: returns
    /// every seed's loss value and trains the seeds that are `active` and
    /// whose loss is finite (none when there is no such seed).
    fn step(&mut self, idx: &[&[usize]], active: &[bool]) -> Result<Vec<f64>, TrainError>;
    /// Every seed's `(valid, test)` metrics.
    #[allow(clippy::type_complexity)]
    fn evaluate(&self) -> Result<Vec<(BTreeMap<String, f64>, BTreeMap<String, f64>)>, TrainError>;
}

/// The sum of the losses `[K]` of the seeds that are active and finite, the
/// fused objective of one step; `None` when no seed is left.
fn live_total<B: Backend>(
    losses: Tensor<B, 1>,
    values: &[f64],
    active: &[bool],
) -> Option<Tensor<B, 1>> {
    let live: Vec<i64> = (0..values.len())
        .filter(|&i| active[i] && values[i].is_finite())
        .map(|i| i as i64)
        .collect();
    if live.is_empty() {
        return None;
    }
    if live.len() == values.len() {
        return Some(losses.sum());
    }
    let device = losses.device();
    let n = live.len();
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(live, [n]), &device);
    Some(losses.select(0, idx).sum())
}

/// One optimiser step of a fused model on the summed losses `[K]` of the
/// seeds that are `active` and whose loss `values` are finite; the model
/// comes back unchanged when no seed is left.
pub(crate) fn step_live<B, M, O>(
    model: M,
    optim: &mut O,
    lr: f64,
    losses: Tensor<B, 1>,
    values: &[f64],
    active: &[bool],
) -> M
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    match live_total(losses, values, active) {
        Some(total) => {
            let grads = GradientsParams::from_grads(total.backward(), &model);
            optim.step(lr, model, grads)
        }
        None => model,
    }
}

/// Each seed's order of its `n` training samples, shuffled by its own RNG.
pub(crate) fn shuffled_orders<'a>(
    n: usize,
    rngs: impl Iterator<Item = &'a mut ChaCha8Rng>,
) -> Vec<Vec<usize>> {
    rngs.map(|rng| {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        order
    })
    .collect()
}

/// The samples `idx[k]` of `splits[k]`, stacked `[K, n, len, dim]` per
/// modality (text, audio, vision).
pub(crate) fn stacked<B: Backend>(
    splits: &[&SeqSplit],
    idx: &[&[usize]],
    device: &B::Device,
) -> [Tensor<B, 4>; 3] {
    let one = |get: fn(&SeqSplit) -> &Array3| {
        let mut data = Vec::new();
        let mut shape = [0usize; 3];
        for (s, i) in splits.iter().zip(idx) {
            let a = get(s).gather(i);
            shape = a.shape;
            data.extend_from_slice(&a.data);
        }
        Tensor::from_data(
            TensorData::new(data, [splits.len(), shape[0], shape[1], shape[2]]),
            device,
        )
    };
    [one(|s| &s.text), one(|s| &s.audio), one(|s| &s.vision)]
}

/// The labels of the samples `idx[k]` of `splits[k]`, `K × n` row-major.
pub(crate) fn stacked_labels(splits: &[&SeqSplit], idx: &[&[usize]]) -> Vec<f32> {
    splits
        .iter()
        .zip(idx)
        .flat_map(|(sp, i)| i.iter().map(|&j| sp.labels[j]))
        .collect()
}

/// Runs `forward` over every seed's split (all of the same length) in
/// chunks of `chunk` samples, the same indices for every seed; `forward`
/// returns `K × chunk` values row-major. Returns each seed's values in
/// sample order.
pub(crate) fn predict_chunks<B: Backend>(
    splits: &[&SeqSplit],
    chunk: usize,
    device: &B::Device,
    forward: impl Fn([Tensor<B, 4>; 3]) -> Vec<f32>,
) -> Vec<Vec<f32>> {
    let k = splits.len();
    let n = splits[0].len();
    let mut preds: Vec<Vec<f32>> = vec![Vec::with_capacity(n); k];
    let order: Vec<usize> = (0..n).collect();
    for part in order.chunks(chunk) {
        let idx: Vec<&[usize]> = vec![part; k];
        let flat = forward(stacked::<B>(splits, &idx, device));
        for (p, row) in preds.iter_mut().zip(flat.chunks(part.len())) {
            p.extend_from_slice(row);
        }
    }
    preds
}

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
/// floating-point order, with dropout 0) to [`crate::trainer::run_trial`] on
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
    let _guard = super::training_guard();
    let start = Instant::now();
    let k = requests.len();
    let mut results: Vec<Option<Result<TrialOutcome, TrainError>>> = (0..k).map(|_| None).collect();
    let mut run = || -> Result<(), TrainError> {
        check_same_config(requests)?;
        let req = &requests[0];
        crate::models::check_request(req)?;
        if !supports(req) {
            return Err(TrainError::InvalidParam {
                key: "fuse_seeds".into(),
                message: format!(
                    "seed fusion supports late-fusion and fdcmdie (without grad_clip), not this `{}` trial",
                    req.model
                ),
            });
        }
        let epochs = req.params.positive("epochs", 10)? as u32;
        let mut trainer: Box<dyn FusedTrainer> = match req.model.as_str() {
            "late-fusion" => Box::new(late_fusion::LateFusionTrainer::<B>::new(requests, device)?),
            _ => Box::new(fdcmdie::FdCmdieTrainer::<B>::new(requests, device)?),
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
        TrainError::UnknownModel(m) => TrainError::UnknownModel(m.clone()),
        TrainError::Data(d) => TrainError::Dataset(d.to_string()),
        TrainError::Dataset(d) => TrainError::Dataset(d.clone()),
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
        TrainError::Cancelled => TrainError::Cancelled,
        TrainError::Backend(b) => TrainError::Backend(b.clone()),
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
    for epoch in 1..=epochs {
        if cancel.load(Ordering::Relaxed) {
            return Err(TrainError::Cancelled);
        }
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
