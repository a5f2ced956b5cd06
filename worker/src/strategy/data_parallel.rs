//! Data parallelism inside one trial.
//!
//! [`DataParallel`] holds `g` replicas of one model, one per device, each
//! with its own optimiser state. A step:
//!
//! 1. replica `i` (on its own thread) computes the loss of its shard — the
//!    caller's loss closure returns the shard's mean loss times `n_i / n`, so
//!    the shard losses sum to the full-batch mean loss — and its gradients;
//! 2. the gradients are summed across replicas by an [`AllReduce`], which
//!    gives every replica the same sum (it is then exactly the full-batch
//!    gradient, up to summation order);
//! 3. every replica applies its optimiser with that sum.
//!
//! # Invariants
//!
//! - The replicas are identical after every step: they start as forks of
//!   one model whose parameters were materialised *before* cloning (burn
//!   initialises parameters lazily; an unmaterialised clone would draw its
//!   own random weights on first use — see [`materialize`]), their
//!   optimisers start from the same state, and each step gives them the same
//!   gradients. Replica 0's model is therefore the trial's model.
//! - Shards are contiguous slices of the batch in batch order; a replica that
//!   gets no sample (batch smaller than `g`) contributes zero gradients.
//! - Dropout: every replica draws its own masks. On the CPU backend all
//!   replicas share burn-ndarray's one global RNG, and the threads interleave
//!   their draws, so runs with dropout > 0 are not reproducible bit for bit
//!   (and never equal single-device masks). Equivalence holds for dropout 0.
//!
//! Losses with a batch-wide term (in-batch negatives, group statistics) use
//! [`DataParallel::step_gathered`] instead: the replicas' features are
//! gathered on the first device, the batch-wide term runs there once, and
//! its feature gradients flow back into every replica's own backward pass.
//!
//! On the CPU backend every device is `NdArrayDevice::Cpu` and the replicas
//! are threads; on CUDA the devices are the worker's GPUs
//! (`crate::backend::cuda_device`, with `--features cuda`) and each replica's thread drives its
//! own GPU.
//!
//! # Per model ([`Sharded`], one file each)
//!
//! The model's plain workload implements [`Sharded`], so a data-parallel
//! trial is built by the plain constructor and draws its batches, shuffles
//! and contrastive samples from the same RNG streams; `Loop` (below) is the
//! epoch loop they share.
//!
//! - `late_fusion`: samples sharded, per-sample loss.
//! - `fdcmdie`: the whole batch's contrastive samples are drawn first, then
//!   each replica gets a shard of anchors with their own drawn samples
//!   (every pair lies within one anchor's group).
//! - `mmic` (and `mmdfn`): whole dialogues per replica; the task loss is per
//!   utterance, SCL/CPC/BA are batch-wide and go through `step_gathered`.
//!
//! Each is tested against the plain trainer (same per-epoch losses, metrics
//! and selected epoch) in `worker/tests/{parallel,fdcmdie,mmic}.rs`.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::allreduce::{AllReduce, InProcessAllReduce, add_grads, all_reduce_grads};
use crate::backend::{BackendKind, training_guard};
use crate::models;
use crate::tensor::materialize;
use crate::trial::{
    EpochReport, LocalPart, ReplicaOptim, Replicas, Selector, Sharded, ShardedVisitor, Split,
    TrainError, TrialOutcome, TrialRequest, check_mean_loss, train_epoch_steps,
};

struct Replica<B: AutodiffBackend, M, O> {
    device: B::Device,
    model: Option<M>,
    optim: O,
}

/// One replica's rows of every gathered feature's gradient (`None`: the
/// batch-wide loss did not read that feature).
type FeatureGrads<B> = Vec<Option<Tensor<<B as AutodiffBackend>::InnerBackend, 2>>>;

/// `g` replicas of a model kept identical by all-reduced gradients.
pub struct DataParallel<B: AutodiffBackend, M, O, R = InProcessAllReduce> {
    replicas: Vec<Replica<B, M, O>>,
    devices: Vec<B::Device>,
    reduce: R,
}

impl<B, M, O, R> DataParallel<B, M, O, R>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: ReplicaOptim<B, M>,
    R: AllReduce<B::InnerBackend>,
{
    /// Forks `model` onto every device (materialising its parameters first)
    /// with a clone of `optim` each. `devices` must not be empty.
    pub fn new(model: M, devices: &[B::Device], optim: O, reduce: R) -> Result<Self, TrainError> {
        if devices.is_empty() {
            return Err(TrainError::Backend(
                "data parallelism needs at least one device".into(),
            ));
        }
        materialize::<B, M>(&model);
        let replicas = devices
            .iter()
            .map(|device| Replica {
                device: device.clone(),
                model: Some(model.clone().fork(device)),
                optim: optim.clone(),
            })
            .collect();
        Ok(Self {
            replicas,
            devices: devices.to_vec(),
            reduce,
        })
    }

    pub fn replicas(&self) -> usize {
        self.replicas.len()
    }

    /// Replica `i`'s model (all replicas are identical; see the module docs).
    pub fn model(&self, i: usize) -> Option<&M> {
        self.replicas.get(i).and_then(|r| r.model.as_ref())
    }

    /// The device of replica `i`.
    pub fn device(&self, i: usize) -> Option<&B::Device> {
        self.devices.get(i)
    }

    /// Runs `f` on replica `i` with `inputs[i]` for every input (at most one
    /// per replica): replica 0 on the calling thread, the others on their
    /// own threads (each drives its own device). Results in replica order.
    fn on_replicas<T, U, F>(&mut self, inputs: Vec<T>, f: F) -> Result<Vec<U>, TrainError>
    where
        T: Send,
        U: Send,
        F: Fn(&mut Replica<B, M, O>, T) -> Result<U, TrainError> + Sync,
    {
        if inputs.len() > self.replicas.len() {
            return Err(TrainError::Backend(format!(
                "{} shards for {} replicas",
                inputs.len(),
                self.replicas.len()
            )));
        }
        let mut inputs = inputs.into_iter();
        let first = inputs.next();
        let f = &f;
        let results: Vec<Result<U, TrainError>> = std::thread::scope(|scope| {
            let (head, rest) = self.replicas.split_at_mut(1);
            let handles: Vec<_> = rest
                .iter_mut()
                .zip(inputs)
                .map(|(replica, input)| scope.spawn(move || f(replica, input)))
                .collect();
            let mut out = Vec::with_capacity(handles.len() + 1);
            if let Some(input) = first {
                out.push(f(&mut head[0], input));
            }
            for h in handles {
                out.push(h.join().unwrap_or_else(|_| {
                    Err(TrainError::Backend("a replica thread panicked".into()))
                }));
            }
            out
        });
        results.into_iter().collect()
    }

    /// One training step. `shards[i]` goes to replica `i` (at most one shard
    /// per replica; missing ones contribute zero gradients); `loss(model,
    /// shard, device)` must return that shard's share of the full-batch mean
    /// loss (mean shard loss × `n_i / n`). Returns the full-batch loss (sum
    /// of the shares). When it is not finite no update is applied.
    pub fn step<S, F>(&mut self, lr: f64, shards: Vec<S>, loss: F) -> Result<f64, TrainError>
    where
        S: Send,
        F: Fn(&M, S, &B::Device) -> Tensor<B, 1> + Sync,
    {
        let results = self.on_replicas(shards, |replica, shard| {
            let model = replica.model.as_ref().ok_or_else(TrainError::model_lost)?;
            let l = loss(model, shard, &replica.device);
            let value = l.clone().into_scalar().elem::<f64>();
            Ok((value, GradientsParams::from_grads(l.backward(), model)))
        })?;
        let total: f64 = results.iter().map(|(v, _)| v).sum();
        if !total.is_finite() {
            return Ok(total);
        }
        self.reduce_and_apply(lr, results.into_iter().map(|(_, g)| g).collect())?;
        Ok(total)
    }

    /// One training step for a loss with a per-sample part and a part over
    /// the whole batch (in-batch contrastive, mutual-information terms):
    ///
    /// 1. every replica runs `local(model, shard, device)`: its share of the
    ///    per-sample loss and its rows of the features the batch-wide loss
    ///    reads (feature `k` of every replica has the same columns);
    /// 2. the features are gathered on replica 0's device in shard order
    ///    (= batch order for contiguous shards) as new leaf tensors, and
    ///    `global(model 0, gathered)` returns the batch-wide objective and
    ///    the value it adds to the reported loss (`None`: no such term);
    ///    its backward pass gives the gradient of every gathered feature and
    ///    of the parameters `global` used directly (heads of replica 0);
    /// 3. every replica back-propagates its local loss plus
    ///    `Σ_k ⟨features_k, ∂objective/∂features_k⟩` over its rows, which is
    ///    the chain rule through its own forward pass;
    /// 4. replica 0 adds the head gradients, and the sums are all-reduced
    ///    and applied as in [`Self::step`].
    ///
    /// The result is the full-batch gradient, so replicas equal one device
    /// training on the whole batch. Returns the reported loss; when it is
    /// not finite no update is applied.
    pub fn step_gathered<S, F, G>(
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
        LocalPart<B>: Send,
    {
        let parts = self.on_replicas(shards, |replica, shard| {
            let model = replica.model.as_ref().ok_or_else(TrainError::model_lost)?;
            Ok(local(model, shard, &replica.device))
        })?;
        let mut total: f64 = parts
            .iter()
            .map(|p| p.loss.clone().into_scalar().elem::<f64>())
            .sum();
        let root = self.devices[0].clone();
        let n_features = parts.first().map_or(0, |p| p.features.len());
        let rows: Vec<usize> = parts
            .iter()
            .map(|p| p.features.first().map_or(0, |f| f.dims()[0]))
            .collect();
        let leaves: Vec<Tensor<B, 2>> = (0..n_features)
            .map(|k| {
                let pieces = parts
                    .iter()
                    .map(|p| p.features[k].clone().inner().to_device(&root))
                    .collect();
                Tensor::from_inner(Tensor::cat(pieces, 0)).require_grad()
            })
            .collect();
        let model0 = self.replicas[0]
            .model
            .as_ref()
            .ok_or_else(TrainError::model_lost)?;
        let mut feature_grads: Vec<Option<Tensor<B::InnerBackend, 2>>> = vec![None; n_features];
        let mut head_grads = None;
        if let Some((objective, value)) = global(model0, leaves.clone()) {
            total += value;
            if !total.is_finite() {
                return Ok(total);
            }
            let grads = objective.backward();
            for (g, leaf) in feature_grads.iter_mut().zip(&leaves) {
                *g = leaf.grad(&grads);
            }
            head_grads = Some(GradientsParams::from_grads(grads, model0));
        }
        if !total.is_finite() {
            return Ok(total);
        }
        // Each replica's rows of every feature gradient, on its device.
        let mut offset = 0;
        let inputs: Vec<(LocalPart<B>, FeatureGrads<B>)> = parts
            .into_iter()
            .zip(&rows)
            .zip(&self.devices)
            .map(|((part, &n), device)| {
                let slices = feature_grads
                    .iter()
                    .map(|g| {
                        g.as_ref()
                            .map(|g| g.clone().narrow(0, offset, n).to_device(device))
                    })
                    .collect();
                offset += n;
                (part, slices)
            })
            .collect();
        let mut grads = self.on_replicas(inputs, |replica, (part, slices)| {
            let model = replica.model.as_ref().ok_or_else(TrainError::model_lost)?;
            let mut objective = part.loss;
            for (feature, g) in part.features.into_iter().zip(slices) {
                if let Some(g) = g {
                    objective = objective + (feature * Tensor::from_inner(g)).sum();
                }
            }
            Ok(GradientsParams::from_grads(objective.backward(), model))
        })?;
        if let (Some(head), Some(first), Some(model0)) = (
            head_grads,
            grads.first_mut(),
            self.replicas[0].model.as_ref(),
        ) {
            add_grads::<B, M>(model0, first, head);
        }
        self.reduce_and_apply(lr, grads)?;
        Ok(total)
    }

    /// All-reduces one gradient set per replica (missing ones are zeros)
    /// and applies the same update on every replica.
    fn reduce_and_apply(
        &mut self,
        lr: f64,
        mut grads: Vec<GradientsParams>,
    ) -> Result<(), TrainError> {
        grads.resize_with(self.replicas.len(), GradientsParams::new);
        let template = self.replicas[0]
            .model
            .as_ref()
            .ok_or_else(TrainError::model_lost)?;
        all_reduce_grads::<B, M, R>(template, &mut grads, &self.devices, &self.reduce)?;
        self.on_replicas(grads, |replica, g| {
            let model = replica.model.take().ok_or_else(TrainError::model_lost)?;
            replica.model = Some(replica.optim.update(lr, model, g));
            Ok(())
        })?;
        Ok(())
    }
}

impl<B, M, O, R> Replicas<B, M> for DataParallel<B, M, O, R>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: ReplicaOptim<B, M>,
    R: AllReduce<B::InnerBackend>,
{
    fn replicas(&self) -> usize {
        DataParallel::replicas(self)
    }

    fn step<S, F>(&mut self, lr: f64, shards: Vec<S>, loss: F) -> Result<f64, TrainError>
    where
        S: Send,
        F: Fn(&M, S, &B::Device) -> Tensor<B, 1> + Sync,
    {
        DataParallel::step(self, lr, shards, loss)
    }

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
        LocalPart<B>: Send,
    {
        DataParallel::step_gathered(self, lr, shards, local, global)
    }
}

/// The epoch loop of a data-parallel trial, with the plain strategy's
/// protocol (evaluate on valid and test after every epoch, select the epoch,
/// fail on a non-finite loss with its epoch and step). A [`ShardedVisitor`]:
/// the registry builds the model's workload and hands it here.
struct Loop<'a, B: AutodiffBackend, R> {
    req: &'a TrialRequest,
    devices: &'a [B::Device],
    reduce: R,
    progress: &'a mut dyn FnMut(EpochReport),
    cancel: &'a AtomicBool,
}

impl<B: AutodiffBackend, R: AllReduce<B::InnerBackend>> ShardedVisitor<B> for Loop<'_, B, R> {
    type Output = Result<TrialOutcome, TrainError>;

    fn visit<W: Sharded<B>>(self, mut workload: W) -> Self::Output {
        let Self {
            req,
            devices,
            reduce,
            progress,
            cancel,
        } = self;
        let start = Instant::now();
        let epochs = req.params.positive("epochs", 10)? as u32;
        let (model, optim) = workload.take_model()?;
        let mut dp = DataParallel::new(model, devices, optim, reduce)?;
        let save = req.params.bool("save_predictions", false)?;
        let mut selector = Selector::new(req);
        let mut predictions = None;
        let save_weights = req.params.bool("save_weights", false)?;
        let mut weights = None;
        for epoch in 1..=epochs {
            let batches = workload.epoch_batches();
            let loss = train_epoch_steps(&batches, epoch, cancel, |batch| {
                workload.step(&mut dp, batch)
            })?;
            check_mean_loss(loss, epoch)?;
            let model = dp.model(0).ok_or_else(TrainError::model_lost)?.valid();
            let valid = workload.evaluate_with(&model, Split::Valid)?;
            let test = workload.evaluate_with(&model, Split::Test)?;
            selector.end_epoch(epoch, epochs, loss, valid, test, progress)?;
            if save && selector.is_best(epoch) {
                predictions = Some(workload.predictions_with(&model, Split::Test)?);
            }
            if save_weights && selector.is_best(epoch) {
                weights = Some(workload.weights_with(&model)?.describe(req, epoch));
            }
        }
        Ok(TrialOutcome {
            predictions,
            weights,
            ..selector.finish(start.elapsed().as_secs_f64())?
        })
    }
}

/// Builds `req`'s workload on the first device (with the plain trainer's
/// constructor, through the registry) and runs it on replicas `devices` of
/// backend `B`.
fn run_on<B: AutodiffBackend, R: AllReduce<B::InnerBackend>>(
    req: &TrialRequest,
    devices: Vec<B::Device>,
    reduce: R,
    progress: &mut dyn FnMut(EpochReport),
    cancel: &AtomicBool,
) -> Result<TrialOutcome, TrainError> {
    let _guard = training_guard();
    let data = models::load_checked(req)?;
    let visitor = Loop {
        req,
        devices: &devices,
        reduce,
        progress,
        cancel,
    };
    models::build_sharded::<B, _>(req, data, &devices[0], visitor)?
}

/// Runs a trial data-parallel over `devices` replicas, with
/// [`crate::strategy::plain::run_trial`]'s protocol (same dataset, initialisation,
/// data order, contrastive samples and epoch selection; only the batch is
/// split). On the CPU backend the replicas are threads; on CUDA, GPUs
/// `0..devices`.
pub fn run_data_parallel(
    req: &TrialRequest,
    backend: BackendKind,
    devices: usize,
    progress: &mut dyn FnMut(EpochReport),
    cancel: &AtomicBool,
) -> Result<TrialOutcome, TrainError> {
    if devices == 0 {
        return Err(TrainError::InvalidParam {
            key: "gpus_per_trial".into(),
            message: "must be at least 1".into(),
        });
    }
    match backend {
        BackendKind::Cpu => run_on::<crate::backend::Cpu, _>(
            req,
            vec![Default::default(); devices],
            InProcessAllReduce,
            progress,
            cancel,
        ),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            let cuda = (0..devices)
                .map(crate::backend::cuda_device)
                .collect::<Result<Vec<_>, _>>()
                .map_err(TrainError::Backend)?;
            // NCCL is opt-in until it has run on a multi-GPU machine (see
            // `allreduce`'s module docs).
            if std::env::var("SIGSWEEP_ALLREDUCE").is_ok_and(|v| v == "nccl") {
                let ordinals: Vec<usize> = (0..devices).map(crate::backend::cuda_ordinal).collect();
                let nccl = super::allreduce::NcclAllReduce::new(&ordinals)?;
                run_on::<crate::backend::Cuda, _>(req, cuda, nccl, progress, cancel)
            } else {
                run_on::<crate::backend::Cuda, _>(req, cuda, InProcessAllReduce, progress, cancel)
            }
        }
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda => Err(TrainError::Backend(
            crate::backend::check_available(BackendKind::Cuda)
                .err()
                .unwrap_or_default(),
        )),
    }
}
