//! Seed fusion (HFTA, Wang et al., MLSys 2021): the `K` seeds of one
//! `late-fusion` configuration train as one batched model on one device.
//!
//! Every parameter gets a leading seed axis: a [`FusedLinear`] holds weight
//! `[K, in, out]` and bias `[K, 1, out]` and maps `[K, B, in]` to
//! `[K, B, out]` with one batched matmul. Slice `k` is seed `k`'s model.
//!
//! # Invariants (per-slice equivalence)
//!
//! - **Initialisation**: slice `k` is copied from an unfused [`LateFusion`]
//!   built exactly as [`crate::trainer::run_trial`] builds it for seed `k`
//!   (`B::seed(device, seed_k)`, `LateFusion::new`, parameters materialised
//!   in the order of the first forward pass).
//! - **Data**: seed `k` trains on its own dataset (synthetic data derives
//!   from the seed) in its own order (its own shuffle RNG, stream 100), with
//!   the unfused batch boundaries. All seeds must therefore share split sizes
//!   and feature shapes (they do when only the seed differs).
//! - **Loss**: the sum over seeds of each seed's mean loss. No term mixes
//!   seeds, so the gradient of slice `k` is seed `k`'s unfused gradient.
//! - **Optimiser**: AdamW is elementwise (its step count is shared and equal),
//!   so slice `k`'s update is seed `k`'s unfused update.
//! - **Dropout**: each seed gets its own masks (one Bernoulli draw per
//!   element of the `[K, B, hidden]` activation), but they come from a
//!   different RNG stream than unfused training (one draw for all seeds, in
//!   a different order), so fused and unfused runs match only with dropout 0;
//!   with dropout > 0 they are statistically, not numerically, equivalent.
//! - **Failure**: a seed whose training loss is not finite fails alone (its
//!   slice is dropped from the loss; the slices never interact, so the other
//!   seeds are unaffected). A missing selection metric also fails only that
//!   seed; cancellation fails all.
//!
//! Each seed's [`TrialOutcome::seconds`] is the wall time of the whole fused
//! run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::{AutodiffModule, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, Relu};
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use sigsweep_data::seq::{Array3, SeqDataset, SeqSplit, Task};

use super::Selector;
use super::data_parallel::{materialize, seq_dataset};
use crate::backend::BackendKind;
use crate::models::late_fusion::{
    LateFusion, LateFusionSettings, outputs, shuffle_rng, split_metrics,
};
use crate::trainer::{EpochReport, TrainError, TrialOutcome, TrialRequest};

/// `K` independent linear layers applied with one batched matmul.
#[derive(Module, Debug)]
pub struct FusedLinear<B: Backend> {
    /// `[K, in, out]`.
    pub weight: Param<Tensor<B, 3>>,
    /// `[K, 1, out]`.
    pub bias: Param<Tensor<B, 3>>,
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default()
}

impl<B: Backend> FusedLinear<B> {
    /// Stacks `layers` (all `[in, out]`, all with a bias) into one fused layer;
    /// slice `k` is a copy of `layers[k]`.
    pub fn from_linears(layers: &[&Linear<B>], device: &B::Device) -> Result<Self, TrainError> {
        let k = layers.len();
        let first = layers
            .first()
            .ok_or_else(|| TrainError::Backend("no layers to fuse".into()))?;
        let [d_in, d_out] = first.weight.val().dims();
        let mut w = Vec::with_capacity(k * d_in * d_out);
        let mut b = Vec::with_capacity(k * d_out);
        for layer in layers {
            if layer.weight.val().dims() != [d_in, d_out] {
                return Err(TrainError::Backend("fused layers differ in shape".into()));
            }
            w.extend(values(layer.weight.val()));
            // A bias-free layer would become a trained zero bias: not the
            // unfused model, so refuse it.
            let bias = layer
                .bias
                .as_ref()
                .ok_or_else(|| TrainError::Backend("fusing a linear layer without bias".into()))?;
            b.extend(values(bias.val()));
        }
        Ok(Self {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(w, [k, d_in, d_out]),
                device,
            )),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(b, [k, 1, d_out]), device)),
        })
    }

    /// `[K, B, in]` → `[K, B, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        x.matmul(self.weight.val()) + self.bias.val()
    }

    /// Slice `k` as `([in, out] weight, [out] bias)` values.
    pub fn slice(&self, k: usize) -> (Vec<f32>, Vec<f32>) {
        let [_, d_in, d_out] = self.weight.val().dims();
        let w = self.weight.val().narrow(0, k, 1).reshape([d_in, d_out]);
        let b = self.bias.val().narrow(0, k, 1).reshape([d_out]);
        (values(w), values(b))
    }
}

/// `K` `late-fusion` models, one per seed, as one batched model.
#[derive(Module, Debug)]
pub struct FusedLateFusion<B: Backend> {
    pub text: FusedLinear<B>,
    pub audio: FusedLinear<B>,
    pub vision: FusedLinear<B>,
    pub fuse: FusedLinear<B>,
    pub head: FusedLinear<B>,
    dropout: Dropout,
    relu: Relu,
}

impl<B: Backend> FusedLateFusion<B> {
    /// Builds slice `k` exactly as the unfused trainer builds seed
    /// `seeds[k]`'s model (see the module docs). Reseeds `B`'s RNG: hold the
    /// training lock ([`super::training_guard`]).
    pub fn from_seeds(
        seeds: &[u64],
        dims: [usize; 3],
        modality_hidden: usize,
        hidden: usize,
        outputs: usize,
        dropout: f64,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let models: Vec<LateFusion<B>> = seeds
            .iter()
            .map(|&seed| {
                B::seed(device, seed);
                let m = LateFusion::new(dims, modality_hidden, hidden, outputs, dropout, device);
                materialize::<B, _>(&m);
                m
            })
            .collect();
        let stack = |f: fn(&LateFusion<B>) -> &Linear<B>| {
            FusedLinear::from_linears(&models.iter().map(f).collect::<Vec<_>>(), device)
        };
        Ok(Self {
            text: stack(|m| &m.text)?,
            audio: stack(|m| &m.audio)?,
            vision: stack(|m| &m.vision)?,
            fuse: stack(|m| &m.fuse)?,
            head: stack(|m| &m.head)?,
            dropout: DropoutConfig::new(dropout).init(),
            relu: Relu::new(),
        })
    }

    /// `[K, batch, len, dim]` ×3 → `[K, batch, outputs]`.
    pub fn forward(
        &self,
        text: Tensor<B, 4>,
        audio: Tensor<B, 4>,
        vision: Tensor<B, 4>,
    ) -> Tensor<B, 3> {
        let enc = |x: Tensor<B, 4>, l: &FusedLinear<B>| {
            let pooled: Tensor<B, 3> = x.mean_dim(2).squeeze_dim(2);
            self.relu.forward(l.forward(pooled))
        };
        let h = Tensor::cat(
            vec![
                enc(text, &self.text),
                enc(audio, &self.audio),
                enc(vision, &self.vision),
            ],
            2,
        );
        let h = self
            .dropout
            .forward(self.relu.forward(self.fuse.forward(h)));
        self.head.forward(h)
    }
}

/// Each seed's mean loss, `[K]`: cross-entropy (classification) or L1
/// (regression). `out` is `[K, B, outputs]`, `labels` is `K × B` row-major.
pub fn per_seed_loss<B: Backend>(
    out: Tensor<B, 3>,
    labels: Vec<f32>,
    task: Task,
    device: &B::Device,
) -> Tensor<B, 1> {
    let [k, b, _] = out.dims();
    match task {
        Task::Classification { .. } => {
            let targets = Tensor::<B, 3, Int>::from_data(
                TensorData::new(
                    labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
                    [k, b, 1],
                ),
                device,
            );
            let picked = log_softmax(out, 2).gather(2, targets); // [K, B, 1]
            picked.mean_dim(1).reshape([k]).neg()
        }
        Task::Regression => {
            let y = Tensor::<B, 2>::from_data(TensorData::new(labels, [k, b]), device);
            (out.squeeze_dim::<2>(2) - y).abs().mean_dim(1).reshape([k])
        }
    }
}

/// Stacks the samples `idx[k]` of `splits[k]` into `[K, B, len, dim]` per modality.
fn stacked<B: Backend>(
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

/// Per-seed metrics of the fused model on each seed's own split.
fn evaluate_fused<B: Backend>(
    model: &FusedLateFusion<B>,
    task: Task,
    splits: &[&SeqSplit],
    device: &B::Device,
) -> Vec<BTreeMap<String, f64>> {
    let k = splits.len();
    let n = splits[0].len();
    let mut preds: Vec<Vec<f32>> = vec![Vec::with_capacity(n); k];
    let order: Vec<usize> = (0..n).collect();
    for chunk in order.chunks(256) {
        let idx: Vec<&[usize]> = vec![chunk; k];
        let [t, a, v] = stacked::<B>(splits, &idx, device);
        let out = model.forward(t, a, v);
        let flat: Vec<f32> = match task {
            Task::Classification { .. } => out
                .argmax(2)
                .into_data()
                .iter::<i64>()
                .map(|x| x as f32)
                .collect(),
            Task::Regression => out.into_data().iter::<f32>().collect(),
        };
        for (p, row) in preds.iter_mut().zip(flat.chunks(chunk.len())) {
            p.extend_from_slice(row);
        }
    }
    splits
        .iter()
        .zip(&preds)
        .map(|(s, p)| split_metrics(task, s, p))
        .collect()
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

fn same_shapes(a: &SeqDataset, b: &SeqDataset) -> bool {
    let s = |x: &SeqSplit| (x.len(), x.text.shape, x.audio.shape, x.vision.shape);
    a.task == b.task
        && s(&a.train) == s(&b.train)
        && s(&a.valid) == s(&b.valid)
        && s(&a.test) == s(&b.test)
}

/// Trains the seeds of `requests` (one configuration, several seeds) as one
/// fused `late-fusion` model; returns one result per request, in order,
/// each equal (up to floating-point order, with dropout 0) to
/// [`crate::trainer::run_trial`] on that request. `progress(k, report)` is
/// called after every epoch for every still-running seed `k`.
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
        BackendKind::Cuda => {
            run_fused_on::<crate::backend::Cuda>(requests, &Default::default(), progress, cancel)
        }
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
    match train::<B>(requests, device, progress, cancel, &mut results, start) {
        Ok(()) => {}
        Err(e) => {
            // A failure that concerns every seed (configuration, data shape,
            // cancellation): report it on every seed that has no result yet.
            for r in results.iter_mut().filter(|r| r.is_none()) {
                *r = Some(Err(duplicate(&e)));
            }
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

fn train<B: AutodiffBackend>(
    requests: &[TrialRequest],
    device: &B::Device,
    progress: &mut dyn FnMut(usize, EpochReport),
    cancel: &AtomicBool,
    results: &mut [Option<Result<TrialOutcome, TrainError>>],
    start: Instant,
) -> Result<(), TrainError> {
    check_same_config(requests)?;
    let req0 = &requests[0];
    let k = requests.len();
    let epochs = req0.params.positive("epochs", 10)? as u32;
    let s = LateFusionSettings::from_params(&req0.params)?;
    let data: Vec<SeqDataset> = requests.iter().map(seq_dataset).collect::<Result<_, _>>()?;
    if data.iter().any(|d| !same_shapes(d, &data[0])) {
        return Err(TrainError::Dataset(
            "seed fusion needs every seed's dataset to have the same shapes".into(),
        ));
    }
    let task = data[0].task;
    let seeds: Vec<u64> = requests.iter().map(|r| r.seed).collect();
    let mut model = FusedLateFusion::<B>::from_seeds(
        &seeds,
        data[0].dims(),
        s.modality_hidden,
        s.hidden,
        outputs(task),
        s.dropout,
        device,
    )?;
    let mut optim = s.optimizer_config().init::<B, FusedLateFusion<B>>();
    let mut rngs: Vec<ChaCha8Rng> = seeds.iter().map(|&seed| shuffle_rng(seed)).collect();
    let mut selectors: Vec<Selector> = requests.iter().map(Selector::new).collect();
    let mut active: Vec<bool> = vec![true; k];
    let train_splits: Vec<&SeqSplit> = data.iter().map(|d| &d.train).collect();
    let valid_splits: Vec<&SeqSplit> = data.iter().map(|d| &d.valid).collect();
    let test_splits: Vec<&SeqSplit> = data.iter().map(|d| &d.test).collect();
    let n = train_splits[0].len();

    for epoch in 1..=epochs {
        if cancel.load(Ordering::Relaxed) {
            return Err(TrainError::Cancelled);
        }
        let orders: Vec<Vec<usize>> = rngs
            .iter_mut()
            .map(|rng| {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(rng);
                order
            })
            .collect();
        let mut totals = vec![0.0f64; k];
        let mut steps = 0usize;
        for (step, start_at) in (0..n).step_by(s.batch_size).enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(TrainError::Cancelled);
            }
            let end = (start_at + s.batch_size).min(n);
            let idx: Vec<&[usize]> = orders.iter().map(|o| &o[start_at..end]).collect();
            let [t, a, v] = stacked::<B>(&train_splits, &idx, device);
            let labels: Vec<f32> = train_splits
                .iter()
                .zip(&idx)
                .flat_map(|(sp, i)| i.iter().map(|&j| sp.labels[j]))
                .collect();
            let losses = per_seed_loss(model.forward(t, a, v), labels, task, device);
            let values: Vec<f64> = values(losses.clone()).into_iter().map(f64::from).collect();
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
            let live: Vec<i64> = (0..k).filter(|&i| active[i]).map(|i| i as i64).collect();
            if live.is_empty() {
                return Ok(());
            }
            let total = if live.len() == k {
                losses.sum()
            } else {
                let live_idx = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(live.clone(), [live.len()]),
                    device,
                );
                losses.select(0, live_idx).sum()
            };
            let grads = GradientsParams::from_grads(total.backward(), &model);
            model = optim.step(s.lr, model, grads);
            for (t, v) in totals.iter_mut().zip(&values) {
                *t += v;
            }
            steps += 1;
        }
        let inference = model.valid();
        let valid = evaluate_fused(&inference, task, &valid_splits, device);
        let test = evaluate_fused(&inference, task, &test_splits, device);
        for (seed, (valid, test)) in valid.into_iter().zip(test).enumerate() {
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
