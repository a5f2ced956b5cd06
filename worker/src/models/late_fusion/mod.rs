//! `late-fusion`: the walking skeleton's baseline.
//!
//! Per modality: mean over time → Linear(dim → modality_hidden) → ReLU.
//! Fusion: concat → Linear(3·modality_hidden → hidden) → ReLU → Dropout →
//! Linear(hidden → classes, or 1 for regression). Cross-entropy for
//! classification, L1 for regression; AdamW.

mod sharded;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use sigsweep_data::metrics::{classification_metrics, regression_metrics};
use sigsweep_data::seq::{Array3, SeqDataset, SeqSplit, Task};

use crate::trial::{
    EpochSeed, Prediction, Split, TrainError, TrialRequest, Weights, Workload, WorkloadState,
    restore_trainer, save_trainer, train_epoch_steps,
};

#[derive(Module, Debug)]
pub struct LateFusion<B: Backend> {
    pub(crate) text: Linear<B>,
    pub(crate) audio: Linear<B>,
    pub(crate) vision: Linear<B>,
    pub(crate) fuse: Linear<B>,
    pub(crate) head: Linear<B>,
    dropout: Dropout,
    relu: Relu,
}

impl<B: Backend> LateFusion<B> {
    pub fn new(
        dims: [usize; 3],
        modality_hidden: usize,
        hidden: usize,
        outputs: usize,
        dropout: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            text: LinearConfig::new(dims[0], modality_hidden).init(device),
            audio: LinearConfig::new(dims[1], modality_hidden).init(device),
            vision: LinearConfig::new(dims[2], modality_hidden).init(device),
            fuse: LinearConfig::new(3 * modality_hidden, hidden).init(device),
            head: LinearConfig::new(hidden, outputs).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            relu: Relu::new(),
        }
    }

    /// `[batch, len, dim]` ×3 → `[batch, outputs]`.
    pub fn forward(
        &self,
        text: Tensor<B, 3>,
        audio: Tensor<B, 3>,
        vision: Tensor<B, 3>,
    ) -> Tensor<B, 2> {
        let enc = |x: Tensor<B, 3>, l: &Linear<B>| {
            let pooled: Tensor<B, 2> = x.mean_dim(1).squeeze_dim(1);
            self.relu.forward(l.forward(pooled))
        };
        let h = Tensor::cat(
            vec![
                enc(text, &self.text),
                enc(audio, &self.audio),
                enc(vision, &self.vision),
            ],
            1,
        );
        let h = crate::tensor::dropout(&self.dropout, self.relu.forward(self.fuse.forward(h)));
        self.head.forward(h)
    }
}

pub(crate) fn tensor3<B: Backend>(a: &Array3, device: &B::Device) -> Tensor<B, 3> {
    Tensor::from_data(TensorData::new(a.data.clone(), a.shape.to_vec()), device)
}

pub struct LateFusionWorkload<B: AutodiffBackend> {
    pub(crate) model: Option<LateFusion<B>>,
    pub(crate) optim: OptimizerAdaptor<AdamW, LateFusion<B>, B>,
    pub(crate) data: SeqDataset,
    pub(crate) device: B::Device,
    pub(crate) batch_size: usize,
    pub(crate) lr: f64,
    rng: ChaCha8Rng,
    epoch: EpochSeed,
}

/// Hyperparameters of `late-fusion` read from a trial (shared by the plain,
/// data-parallel and seed-fused trainers so they cannot drift apart).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LateFusionSettings {
    pub modality_hidden: usize,
    pub hidden: usize,
    pub dropout: f64,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
}

impl LateFusionSettings {
    pub fn from_params(p: &crate::trial::Params) -> Result<Self, TrainError> {
        Ok(Self {
            modality_hidden: p.positive("modality_hidden", 16)?,
            hidden: p.positive("hidden", 32)?,
            dropout: p.f64_in("dropout", 0.0, 0.0, 0.95)?,
            lr: p.f64("lr", 1e-3)?,
            weight_decay: p.f64("weight_decay", 0.0)?,
            batch_size: p.positive("batch_size", 32)?,
        })
    }

    /// The optimiser every `late-fusion` trainer uses.
    pub fn optimizer_config(&self) -> AdamWConfig {
        AdamWConfig::new().with_weight_decay(self.weight_decay as f32)
    }
}

/// Output width of the head for `task`.
pub fn outputs(task: Task) -> usize {
    match task {
        Task::Classification { n_classes } => n_classes,
        Task::Regression => 1,
    }
}

/// The three modality tensors of the samples `idx` of `split`.
pub fn batch<B: Backend>(split: &SeqSplit, idx: &[usize], device: &B::Device) -> [Tensor<B, 3>; 3] {
    [
        tensor3(&split.text.gather(idx), device),
        tensor3(&split.audio.gather(idx), device),
        tensor3(&split.vision.gather(idx), device),
    ]
}

/// Mean training loss of a batch: cross-entropy for classification, L1 for
/// regression. `out` is `[batch, outputs]`, `labels` has `batch` entries.
pub fn mean_loss<B: Backend>(
    out: Tensor<B, 2>,
    labels: Vec<f32>,
    task: Task,
    device: &B::Device,
) -> Tensor<B, 1> {
    let n = labels.len();
    match task {
        Task::Classification { .. } => {
            let targets = Tensor::<B, 1, Int>::from_data(
                TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [n]),
                device,
            );
            CrossEntropyLossConfig::new()
                .init(device)
                .forward(out, targets)
        }
        Task::Regression => {
            let y = Tensor::<B, 1>::from_data(TensorData::new(labels, [n]), device);
            (out.squeeze_dim::<1>(1) - y).abs().mean()
        }
    }
}

/// Metrics of `model` on `split` (evaluated in chunks of 256 samples).
pub fn evaluate_model<B: Backend>(
    model: &LateFusion<B>,
    task: Task,
    split: &SeqSplit,
    device: &B::Device,
) -> BTreeMap<String, f64> {
    let mut preds: Vec<f32> = Vec::with_capacity(split.len());
    let order: Vec<usize> = (0..split.len()).collect();
    for idx in order.chunks(256) {
        let [t, a, v] = batch::<B>(split, idx, device);
        let out = model.forward(t, a, v);
        match task {
            Task::Classification { .. } => {
                let arg = out.argmax(1).into_data();
                preds.extend(arg.iter::<i64>().map(|x| x as f32));
            }
            Task::Regression => preds.extend(out.into_data().iter::<f32>()),
        }
    }
    split_metrics(task, split, &preds)
}

/// Per-example predictions of `model` on `split`: ids from the split,
/// log-probabilities for classification.
pub fn predictions_of<B: Backend>(
    model: &LateFusion<B>,
    task: Task,
    split: &SeqSplit,
    device: &B::Device,
) -> Vec<Prediction> {
    let mut out = Vec::with_capacity(split.len());
    let order: Vec<usize> = (0..split.len()).collect();
    for idx in order.chunks(256) {
        let [t, a, v] = batch::<B>(split, idx, device);
        let y = model.forward(t, a, v);
        match task {
            Task::Classification { n_classes } => {
                let logp = crate::tensor::to_f32_vec(log_softmax(y, 1));
                for (&i, row) in idx.iter().zip(logp.chunks(n_classes.max(1))) {
                    let pred = row
                        .iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |best, (k, &v)| {
                            if v > best.1 { (k, v) } else { best }
                        })
                        .0;
                    out.push(Prediction {
                        id: split.ids.get(i).cloned().unwrap_or_else(|| i.to_string()),
                        gold: f64::from(split.labels[i]),
                        pred: pred as f64,
                        log_probs: Some(row.to_vec()),
                    });
                }
            }
            Task::Regression => {
                for (&i, v) in idx.iter().zip(crate::tensor::to_f32_vec(y)) {
                    out.push(Prediction {
                        id: split.ids.get(i).cloned().unwrap_or_else(|| i.to_string()),
                        gold: f64::from(split.labels[i]),
                        pred: f64::from(v),
                        log_probs: None,
                    });
                }
            }
        }
    }
    out
}

/// Metrics of predictions `preds` (class indices as `f32`, or values) on `split`.
pub fn split_metrics(task: Task, split: &SeqSplit, preds: &[f32]) -> BTreeMap<String, f64> {
    match task {
        Task::Classification { n_classes } => {
            let truth: Vec<usize> = split.labels.iter().map(|&l| l as usize).collect();
            let pred: Vec<usize> = preds.iter().map(|&p| p as usize).collect();
            classification_metrics(&truth, &pred, n_classes)
        }
        Task::Regression => regression_metrics(&split.labels, preds),
    }
}

/// The shuffling RNG of a trial with seed `seed` (stream 100).
pub fn shuffle_rng(seed: u64) -> ChaCha8Rng {
    sigsweep_data::synthetic::rng(seed, 100)
}

impl<B: AutodiffBackend> LateFusionWorkload<B> {
    pub fn new(
        req: &TrialRequest,
        data: SeqDataset,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let s = LateFusionSettings::from_params(&req.params)?;
        B::seed(device, req.seed);
        let model = LateFusion::new(
            data.dims(),
            s.modality_hidden,
            s.hidden,
            outputs(data.task),
            s.dropout,
            device,
        );
        // Every weight now, before any epoch re-seeds the backend (the
        // visiting order is the order of first use, so these are the weights
        // a lazy first forward pass would draw).
        crate::trial::memory::materialize_within_memory::<B, _>(&model, device, data.dims())?;
        let optim = s.optimizer_config().init::<B, LateFusion<B>>();
        Ok(Self {
            model: Some(model),
            optim,
            data,
            device: device.clone(),
            batch_size: s.batch_size,
            lr: s.lr,
            rng: shuffle_rng(req.seed),
            epoch: EpochSeed::new(req.seed),
        })
    }

    /// The next epoch's batches: the training split reshuffled from the
    /// trial's shuffle RNG, cut into `batch_size` chunks (the last may be
    /// short). Every trainer of this model draws its batches here.
    pub(crate) fn epoch_batches(&mut self) -> Vec<Vec<usize>> {
        self.epoch.start::<B>(&self.device);
        let mut order: Vec<usize> = (0..self.data.train.len()).collect();
        order.shuffle(&mut self.rng);
        order
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// Per-example predictions of `model` on `which`.
    pub(crate) fn predictions_with(
        &self,
        model: &LateFusion<B::InnerBackend>,
        which: Split,
    ) -> Vec<Prediction> {
        let split = match which {
            Split::Train => &self.data.train,
            Split::Valid => &self.data.valid,
            Split::Test => &self.data.test,
        };
        predictions_of::<B::InnerBackend>(model, self.data.task, split, &self.device)
    }

    /// Metrics of `model` on `which`.
    pub(crate) fn evaluate_with(
        &self,
        model: &LateFusion<B::InnerBackend>,
        which: Split,
    ) -> BTreeMap<String, f64> {
        let split = match which {
            Split::Train => &self.data.train,
            Split::Valid => &self.data.valid,
            Split::Test => &self.data.test,
        };
        evaluate_model::<B::InnerBackend>(model, self.data.task, split, &self.device)
    }
}

impl<B: AutodiffBackend> Workload for LateFusionWorkload<B> {
    fn train_epoch(&mut self, epoch: u32, cancel: &AtomicBool) -> Result<f64, TrainError> {
        let batches = self.epoch_batches();
        let split = &self.data.train;
        let mut slot = self.model.take();
        let mean = train_epoch_steps(&batches, epoch, cancel, |idx| {
            let model = slot.take().ok_or_else(TrainError::model_lost)?;
            let [t, a, v] = batch::<B>(split, idx, &self.device);
            let out = model.forward(t, a, v);
            let labels: Vec<f32> = idx.iter().map(|&i| split.labels[i]).collect();
            let loss = mean_loss(out, labels, self.data.task, &self.device);
            let value: f64 = loss.clone().into_scalar().elem::<f64>();
            slot = Some(if value.is_finite() {
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                self.optim.step(self.lr, model, grads)
            } else {
                model
            });
            Ok(value)
        });
        self.model = slot;
        mean
    }

    fn evaluate(&self, which: Split) -> Result<BTreeMap<String, f64>, TrainError> {
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| TrainError::Backend("model lost".into()))?
            .valid();
        Ok(self.evaluate_with(&model, which))
    }

    fn predictions(&self, which: Split) -> Result<Vec<Prediction>, TrainError> {
        let model = self
            .model
            .as_ref()
            .ok_or_else(TrainError::model_lost)?
            .valid();
        Ok(self.predictions_with(&model, which))
    }

    fn weights(&self) -> Result<Weights, TrainError> {
        Weights::of_slot(self.model.as_ref())
    }

    fn load_weights(&mut self, weights: Weights) -> Result<(), TrainError> {
        weights.load_strict(&mut self.model)
    }

    fn state(&self) -> Result<WorkloadState, TrainError> {
        let model = self.model.as_ref().ok_or_else(TrainError::model_lost)?;
        save_trainer::<B, _, _>(
            model,
            &[("main", &self.optim)],
            &[("shuffle", &self.rng)],
            &self.epoch,
        )
    }

    fn restore(&mut self, state: &WorkloadState) -> Result<(), TrainError> {
        let model = self.model.take().ok_or_else(TrainError::model_lost)?;
        self.model = Some(restore_trainer::<B, _, _>(
            state,
            model,
            &mut [("main", &mut self.optim)],
            &mut [("shuffle", &mut self.rng)],
            &mut self.epoch,
            &self.device,
        )?);
        Ok(())
    }
}
