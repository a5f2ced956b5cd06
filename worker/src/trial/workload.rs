//! The workload contract: what a model provides so that a strategy can train
//! it. Built-in models, and any model added to the registry, implement
//! [`Workload`] (the plain epoch loop drives it) and, for data parallelism,
//! [`Sharded`] (the data-parallel loop drives it over a [`Replicas`] set).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::AtomicBool;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer, SimpleOptimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::checkpoint::WorkloadState;
use super::error::TrainError;
use super::outcome::Prediction;
use super::request::Split;
use super::weights::Weights;

/// One model + dataset pair being trained.
pub trait Workload {
    /// Trains one epoch and returns the mean training loss. `epoch` starts
    /// at 1. Must check `cancel` between steps.
    fn train_epoch(&mut self, epoch: u32, cancel: &AtomicBool) -> Result<f64, TrainError>;
    /// Metrics of the current model on `split`.
    fn evaluate(&self, split: Split) -> Result<BTreeMap<String, f64>, TrainError>;
    /// Per-example predictions of the current model on `split` (for
    /// `[training] save = ["predictions"]`). A model that cannot give them
    /// says so.
    fn predictions(&self, split: Split) -> Result<Vec<Prediction>, TrainError> {
        let _ = split;
        Err(no_predictions())
    }
    /// The current weights in the model's exchange form (safetensors names
    /// and PyTorch layouts; `[training] save = ["weights"]`).
    fn weights(&self) -> Result<Weights, TrainError> {
        Err(no_weights())
    }
    /// Replaces the model's weights by those of a weights file
    /// (`sigsweep predict`); strict: every tensor, nothing else.
    fn load_weights(&mut self, weights: Weights) -> Result<(), TrainError> {
        let _ = weights;
        Err(no_weights())
    }
    /// The trainer's state after an epoch, for a checkpoint: weights,
    /// optimiser state, RNG positions, counters.
    fn state(&self) -> Result<WorkloadState, TrainError> {
        Err(no_checkpoints())
    }
    /// Continues from a checkpoint's [`Self::state`] (on a workload built
    /// afresh for the same trial).
    fn restore(&mut self, state: &WorkloadState) -> Result<(), TrainError> {
        let _ = state;
        Err(no_checkpoints())
    }
    /// Whether the workload decides how many epochs it trains (a training
    /// program does; built-in models train the sweep's `epochs`).
    fn decides_epochs(&self) -> bool {
        false
    }
    /// Before each epoch: the number of the next epoch (`count` is the
    /// loop's 1-based count), or `None` when the workload has ended on its
    /// own. Built-in models train epoch `count`; a training program
    /// reports its own numbers and ends when it exits. Must honour
    /// `cancel`.
    fn next_epoch(&mut self, count: u32, cancel: &AtomicBool) -> Result<Option<u32>, TrainError> {
        let _ = cancel;
        Ok(Some(count))
    }
    /// After the last epoch: what the workload chose itself (a training
    /// program's own epoch selection and its predictions file).
    fn ended(&mut self) -> Result<Ending, TrainError> {
        Ok(Ending::default())
    }
}

/// What a workload that decides its own epochs says when it ends.
#[derive(Debug, Default)]
pub struct Ending {
    /// The epoch it selected itself, with its metrics: the trial's result
    /// instead of the [`Selector`](super::outcome)'s.
    pub selected: Option<sigsweep_types::EpochRecord>,
    /// Its per-example test predictions.
    pub predictions: Option<Vec<Prediction>>,
}

/// The error of a model that does not write checkpoints.
pub fn no_checkpoints() -> TrainError {
    TrainError::InvalidParam {
        key: "training.save".into(),
        message: "this model does not write checkpoints".into(),
    }
}

/// The error of a model that has no weights file.
pub fn no_weights() -> TrainError {
    TrainError::InvalidParam {
        key: "training.save".into(),
        message: "this model does not read or write weights files".into(),
    }
}

/// The error of a model that does not write predictions.
pub fn no_predictions() -> TrainError {
    TrainError::InvalidParam {
        key: "training.save".into(),
        message: "this model does not write per-example predictions".into(),
    }
}

/// How a replica updates its model from gradients: a burn optimiser
/// (`OptimizerAdaptor`: Adam, AdamW, SGD…), or a model's composite of
/// several (MMIC steps its mutual-information heads with their own
/// optimiser).
pub trait ReplicaOptim<B: AutodiffBackend, M>: Clone + Send {
    fn update(&mut self, lr: f64, model: M, grads: GradientsParams) -> M;
}

impl<B, M, O> ReplicaOptim<B, M> for OptimizerAdaptor<O, M, B>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: SimpleOptimizer<B::InnerBackend>,
{
    fn update(&mut self, lr: f64, model: M, grads: GradientsParams) -> M {
        self.step(lr, model, grads)
    }
}

/// The part of a replica's forward pass that [`Replicas::step_gathered`]
/// keeps until the batch-wide loss is known: the replica's share of the
/// per-sample loss and its rows of the features the batch-wide loss reads.
pub struct LocalPart<B: AutodiffBackend> {
    pub loss: Tensor<B, 1>,
    pub features: Vec<Tensor<B, 2>>,
}

/// A set of identical model replicas that take one optimiser step together
/// (implemented by `strategy::data_parallel::DataParallel`). A model's
/// [`Sharded::step`] splits its batch into shards and hands the per-shard
/// loss to one of these; how the shards reach the devices and how the
/// gradients are summed is the strategy's business.
pub trait Replicas<B: AutodiffBackend, M> {
    /// Number of replicas (at most one shard each).
    fn replicas(&self) -> usize;

    /// One step. `shards[i]` goes to replica `i`; `loss(model, shard,
    /// device)` returns that shard's share of the full-batch mean loss (mean
    /// shard loss × `n_i / n`). Returns the full-batch loss; when it is not
    /// finite no update is applied.
    fn step<S, F>(&mut self, lr: f64, shards: Vec<S>, loss: F) -> Result<f64, TrainError>
    where
        S: Send,
        F: Fn(&M, S, &B::Device) -> Tensor<B, 1> + Sync;

    /// One step for a loss with a per-sample part (`local`, per replica)
    /// and a batch-wide part (`global`, once, on the features of every
    /// replica gathered in shard order). Returns the reported loss; when it
    /// is not finite no update is applied.
    fn step_gathered<S, F, G>(
        &mut self,
        lr: f64,
        shards: Vec<S>,
        local: F,
        global: G,
    ) -> Result<f64, TrainError>
    where
        S: Send,
        F: Fn(&M, S, &B::Device) -> LocalPart<B> + Sync,
        G: FnOnce(&M, Vec<Tensor<B, 2>>) -> Option<(Tensor<B, 1>, f64)>,
        LocalPart<B>: Send;
}

/// A model's side of a data-parallel trial. Implemented by the model's
/// plain workload itself, so the data-parallel trial is built by the same
/// constructor (same dataset, initialisation, shuffle and sampling RNGs)
/// and draws its batches the same way.
pub trait Sharded<B: AutodiffBackend> {
    type Model: AutodiffModule<B>;
    type Optim: ReplicaOptim<B, Self::Model>;
    /// Takes the freshly built model and its optimiser out of the workload.
    fn take_model(&mut self) -> Result<(Self::Model, Self::Optim), TrainError>;
    /// The next epoch's batches (sample indices), as the plain trainer
    /// draws them (it consumes the shuffle RNG).
    fn epoch_batches(&mut self) -> Vec<Vec<usize>>;
    /// One optimiser step of `dp` on `batch`: shards it over the replicas
    /// (each shard's loss scaled so that the shares sum to the batch loss)
    /// and returns the batch loss.
    fn step<D: Replicas<B, Self::Model>>(
        &mut self,
        dp: &mut D,
        batch: &[usize],
    ) -> Result<f64, TrainError>;
    /// Metrics of `model` (inference mode) on `split`.
    fn evaluate_with(
        &self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
        split: Split,
    ) -> Result<BTreeMap<String, f64>, TrainError>;
    /// Per-example predictions of `model` (inference mode) on `split`.
    fn predictions_with(
        &self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
        split: Split,
    ) -> Result<Vec<Prediction>, TrainError> {
        let _ = (model, split);
        Err(no_predictions())
    }
    /// The weights file of `model` (inference mode), as
    /// [`Workload::weights`] writes it.
    fn weights_with(
        &self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
    ) -> Result<Weights, TrainError> {
        let _ = model;
        Err(no_weights())
    }
}

/// What to do with a [`Sharded`] workload once the registry has built it:
/// the registry knows the concrete type, the strategy knows what to run, and
/// this joins them without either naming the other's types.
pub trait ShardedVisitor<B: AutodiffBackend> {
    type Output;
    fn visit<W: Sharded<B>>(self, workload: W) -> Self::Output;
}

/// Contiguous shards of a batch of `n` samples over `g` replicas: chunks of
/// `ceil(n / g)` in batch order (fewer than `g` when `n < g`).
pub fn shard_ranges(n: usize, g: usize) -> Vec<Range<usize>> {
    let size = n.div_ceil(g.max(1)).max(1);
    (0..n).step_by(size).map(|s| s..(s + size).min(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::shard_ranges;

    #[test]
    fn shards_are_contiguous_and_cover_the_batch() {
        assert_eq!(shard_ranges(33, 2), vec![0..17, 17..33]);
        assert_eq!(shard_ranges(10, 3), vec![0..4, 4..8, 8..10]);
        assert_eq!(shard_ranges(1, 2), vec![0..1]);
        assert_eq!(shard_ranges(0, 2), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(shard_ranges(4, 1), vec![0..4]);
    }
}
