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
//! On the CPU backend every device is `NdArrayDevice::Cpu` and the replicas
//! are threads; on CUDA the devices are `CudaDevice { index }` and each
//! replica's thread drives its own GPU.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use sigsweep_data::seq::SeqDataset;

use super::allreduce::{AllReduce, InProcessAllReduce, all_reduce_grads};
use super::{Selector, training_guard};
use crate::backend::BackendKind;
use crate::trainer::{
    EpochReport, LoadedDataset, Split, TrainError, TrialOutcome, TrialRequest, load_dataset,
};

mod fdcmdie;
mod late_fusion;

/// Forces every lazily initialised parameter of `model` to take its value
/// (in the module's visiting order). Call before cloning a model into
/// replicas. For `late-fusion` the visiting order equals the order of first
/// use in `forward`, so materialising here draws the same weights as the
/// unfused trainer's first forward pass.
pub fn materialize<B: Backend, M: Module<B>>(model: &M) {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
}

struct Replica<B: AutodiffBackend, M, O> {
    device: B::Device,
    model: Option<M>,
    optim: O,
}

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
    O: Optimizer<M, B>,
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
        if shards.len() > self.replicas.len() {
            return Err(TrainError::Backend(format!(
                "{} shards for {} replicas",
                shards.len(),
                self.replicas.len()
            )));
        }
        let forward_backward = |replica: &mut Replica<B, M, O>,
                                shard: S|
         -> Result<(f64, GradientsParams), TrainError> {
            let model = replica.model.as_ref().ok_or_else(lost)?;
            let l = loss(model, shard, &replica.device);
            let value = l.clone().into_scalar().elem::<f64>();
            let grads = GradientsParams::from_grads(l.backward(), model);
            Ok((value, grads))
        };
        let mut shards = shards.into_iter();
        let first = shards.next();
        let results: Vec<Result<(f64, GradientsParams), TrainError>> =
            std::thread::scope(|scope| {
                let (head, rest) = self.replicas.split_at_mut(1);
                let forward_backward = &forward_backward;
                let handles: Vec<_> = rest
                    .iter_mut()
                    .zip(shards)
                    .map(|(replica, shard)| scope.spawn(move || forward_backward(replica, shard)))
                    .collect();
                let mut out = Vec::with_capacity(handles.len() + 1);
                if let Some(shard) = first {
                    out.push(forward_backward(&mut head[0], shard));
                }
                for h in handles {
                    out.push(h.join().unwrap_or_else(|_| {
                        Err(TrainError::Backend("a replica thread panicked".into()))
                    }));
                }
                out
            });
        let mut total = 0.0;
        let mut grads = Vec::with_capacity(self.replicas.len());
        for r in results {
            let (value, g) = r?;
            total += value;
            grads.push(g);
        }
        if !total.is_finite() {
            return Ok(total);
        }
        grads.resize_with(self.replicas.len(), GradientsParams::new);
        let template = self.replicas[0].model.as_ref().ok_or_else(lost)?;
        all_reduce_grads::<B, M, R>(template, &mut grads, &self.devices, &self.reduce)?;

        // The same update on every replica, each on its own thread/device.
        let outcomes: Vec<Result<(), TrainError>> = std::thread::scope(|scope| {
            let mut replicas = self.replicas.iter_mut();
            let mut grads = grads.into_iter();
            let head = replicas.next().zip(grads.next());
            let handles: Vec<_> = replicas
                .zip(grads)
                .map(|(replica, g)| scope.spawn(move || apply(replica, lr, g)))
                .collect();
            let mut out = Vec::with_capacity(handles.len() + 1);
            if let Some((replica, g)) = head {
                out.push(apply(replica, lr, g));
            }
            for h in handles {
                out.push(h.join().unwrap_or_else(|_| {
                    Err(TrainError::Backend("a replica thread panicked".into()))
                }));
            }
            out
        });
        outcomes.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(total)
    }
}

fn lost() -> TrainError {
    TrainError::Backend("model lost after a failed step".into())
}

fn apply<B: AutodiffBackend, M: AutodiffModule<B>, O: Optimizer<M, B>>(
    replica: &mut Replica<B, M, O>,
    lr: f64,
    grads: GradientsParams,
) -> Result<(), TrainError> {
    let model = replica.model.take().ok_or_else(lost)?;
    replica.model = Some(replica.optim.step(lr, model, grads));
    Ok(())
}

/// Contiguous shards of a batch of `n` samples over `g` replicas: chunks of
/// `ceil(n / g)` in batch order (fewer than `g` when `n < g`).
pub(crate) fn shard_ranges(n: usize, g: usize) -> Vec<Range<usize>> {
    let size = n.div_ceil(g.max(1)).max(1);
    (0..n).step_by(size).map(|s| s..(s + size).min(n)).collect()
}

/// A model's side of a data-parallel trial, as [`run_loop`] drives it.
/// Implemented by the model's plain workload itself, so the data-parallel
/// trial is built by the same constructor (same dataset, initialisation,
/// shuffle and sampling RNGs) and draws its batches the same way.
pub(crate) trait Sharded<B: AutodiffBackend> {
    type Model: AutodiffModule<B>;
    type Optim: Optimizer<Self::Model, B>;
    /// Takes the freshly built model and its optimiser out of the workload.
    fn take_model(&mut self) -> Result<(Self::Model, Self::Optim), TrainError>;
    /// The next epoch's batches (sample indices), as the plain trainer
    /// draws them (it consumes the shuffle RNG).
    fn epoch_batches(&mut self) -> Vec<Vec<usize>>;
    /// One optimiser step of `dp` on `batch`: shards it over the replicas
    /// (each shard's loss scaled so that the shares sum to the batch loss)
    /// and returns the batch loss.
    fn step<R: AllReduce<B::InnerBackend>>(
        &mut self,
        dp: &mut DataParallel<B, Self::Model, Self::Optim, R>,
        batch: &[usize],
    ) -> Result<f64, TrainError>;
    /// Metrics of `model` (inference mode) on `split`.
    fn evaluate_with(
        &self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
        split: Split,
    ) -> Result<BTreeMap<String, f64>, TrainError>;
}

/// The epoch loop of a data-parallel trial, with [`crate::trainer::run_trial`]'s
/// protocol (evaluate on valid and test after every epoch, select the epoch,
/// fail on a non-finite loss with its epoch and step).
fn run_loop<B, W, R>(
    req: &TrialRequest,
    mut workload: W,
    devices: &[B::Device],
    reduce: R,
    progress: &mut dyn FnMut(EpochReport),
    cancel: &AtomicBool,
) -> Result<TrialOutcome, TrainError>
where
    B: AutodiffBackend,
    W: Sharded<B>,
    R: AllReduce<B::InnerBackend>,
{
    let start = Instant::now();
    let epochs = req.params.positive("epochs", 10)? as u32;
    let (model, optim) = workload.take_model()?;
    let mut dp = DataParallel::new(model, devices, optim, reduce)?;
    let mut selector = Selector::new(req);
    for epoch in 1..=epochs {
        let mut total = 0.0;
        let mut steps = 0usize;
        for (step, batch) in workload.epoch_batches().iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(TrainError::Cancelled);
            }
            let value = workload.step(&mut dp, batch)?;
            if !value.is_finite() {
                return Err(TrainError::NonFinite {
                    what: "training loss",
                    value,
                    epoch,
                    step: step + 1,
                });
            }
            total += value;
            steps += 1;
        }
        let loss = total / steps.max(1) as f64;
        if !loss.is_finite() {
            return Err(TrainError::NonFinite {
                what: "mean training loss",
                value: loss,
                epoch,
                step: 0,
            });
        }
        let model = dp.model(0).ok_or_else(lost)?.valid();
        let valid = workload.evaluate_with(&model, Split::Valid)?;
        let test = workload.evaluate_with(&model, Split::Test)?;
        selector.record(epoch, loss, valid.clone(), test)?;
        progress(EpochReport {
            epoch,
            epochs,
            train_loss: loss,
            valid_metrics: valid,
        });
    }
    selector.finish(start.elapsed().as_secs_f64())
}

/// Checks `req`'s parameters and loads its sequence dataset.
pub(crate) fn seq_dataset(req: &TrialRequest) -> Result<SeqDataset, TrainError> {
    let accepted = crate::models::accepted_params(&req.model)
        .ok_or_else(|| TrainError::UnknownModel(req.model.clone()))?;
    req.params.check_known(&req.model, &accepted)?;
    let valid_fraction = req.params.f64_in("valid_fraction", 0.1, 0.0, 0.95)?;
    match load_dataset(&req.dataset, req.seed, valid_fraction)? {
        LoadedDataset::Seq(d) => Ok(d),
        _ => Err(TrainError::Dataset(format!(
            "{} trains on sequence datasets (synthetic fusion/msa, mmsa), not dialogues",
            req.model
        ))),
    }
}

/// Builds `req`'s workload on the first device (with the plain trainer's
/// constructor) and runs it on replicas `devices` of backend `B`.
fn run_on<B: AutodiffBackend, R: AllReduce<B::InnerBackend>>(
    req: &TrialRequest,
    devices: Vec<B::Device>,
    reduce: R,
    progress: &mut dyn FnMut(EpochReport),
    cancel: &AtomicBool,
) -> Result<TrialOutcome, TrainError> {
    let _guard = training_guard();
    let data = seq_dataset(req)?;
    let device0 = &devices[0];
    match req.model.as_str() {
        "late-fusion" => {
            let w = crate::models::late_fusion::LateFusionWorkload::<B>::new(req, data, device0)?;
            run_loop(req, w, &devices, reduce, progress, cancel)
        }
        "fdcmdie" => {
            let w = crate::models::fdcmdie::FdCmdieWorkload::<B>::new(req, data, device0)?;
            run_loop(req, w, &devices, reduce, progress, cancel)
        }
        other => Err(TrainError::InvalidParam {
            key: "gpus_per_trial".into(),
            message: format!(
                "data parallelism supports late-fusion and fdcmdie, not `{other}`; use gpus_per_trial = 1"
            ),
        }),
    }
}

/// Runs a trial data-parallel over `devices` replicas, with
/// [`crate::trainer::run_trial`]'s protocol (same dataset, initialisation,
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
            let cuda: Vec<_> = (0..devices)
                .map(|index| burn::backend::cuda::CudaDevice { index })
                .collect();
            // NCCL is opt-in until it has run on a multi-GPU machine (see
            // `allreduce`'s module docs).
            if std::env::var("SIGSWEEP_ALLREDUCE").is_ok_and(|v| v == "nccl") {
                let ordinals: Vec<usize> = (0..devices).collect();
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
