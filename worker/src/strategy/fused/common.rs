//! What the fused models share: the [`FusedTrainer`] contract the epoch
//! loop drives, and the helpers that stack `K` seeds' batches.

use std::collections::BTreeMap;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use sigsweep_data::seq::{Array3, SeqSplit};

use sigsweep_data::seq::SeqDataset;

use crate::models::load_checked;
use crate::trial::{LoadedDataset, TrainError, TrialRequest};

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
        return Some(crate::tensor::sum_all(losses));
    }
    let device = losses.device();
    let n = live.len();
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(live, [n]), &device);
    Some(crate::tensor::sum_all(losses.select(0, idx)))
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
    forward: impl Fn([Tensor<B, 4>; 3], &[&[usize]]) -> Vec<f32>,
) -> Vec<Vec<f32>> {
    let k = splits.len();
    let n = splits[0].len();
    let mut preds: Vec<Vec<f32>> = vec![Vec::with_capacity(n); k];
    let order: Vec<usize> = (0..n).collect();
    for part in order.chunks(chunk) {
        let idx: Vec<&[usize]> = vec![part; k];
        let flat = forward(stacked::<B>(splits, &idx, device), &idx);
        for (p, row) in preds.iter_mut().zip(flat.chunks(part.len())) {
            p.extend_from_slice(row);
        }
    }
    preds
}

/// Checks `req` and loads its (sequence) dataset, as the plain strategy
/// does for the seed's own trial.
pub(crate) fn seq_dataset(req: &TrialRequest) -> Result<SeqDataset, TrainError> {
    match load_checked(req)? {
        LoadedDataset::Seq(d) => Ok(d),
        LoadedDataset::Erc(_) => Err(TrainError::Dataset(format!(
            "{} trains on sequence datasets, not dialogues",
            req.model
        ))),
    }
}
