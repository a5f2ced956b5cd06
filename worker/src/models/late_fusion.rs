//! `late-fusion`: the walking skeleton's baseline.
//!
//! Per modality: mean over time → Linear(dim → modality_hidden) → ReLU.
//! Fusion: concat → Linear(3·modality_hidden → hidden) → ReLU → Dropout →
//! Linear(hidden → classes, or 1 for regression). Cross-entropy for
//! classification, L1 for regression; AdamW.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use sigsweep_data::metrics::{classification_metrics, regression_metrics};
use sigsweep_data::seq::{Array3, SeqDataset, SeqSplit, Task};

use crate::trainer::{Split, TrainError, TrialRequest, Workload};

/// Parameters of `late-fusion`.
pub const PARAMS: &[&str] = &["modality_hidden", "hidden", "dropout"];

#[derive(Module, Debug)]
pub struct LateFusion<B: Backend> {
    text: Linear<B>,
    audio: Linear<B>,
    vision: Linear<B>,
    fuse: Linear<B>,
    head: Linear<B>,
    dropout: Dropout,
    relu: Relu,
}

impl<B: Backend> LateFusion<B> {
    pub fn new(dims: [usize; 3], modality_hidden: usize, hidden: usize, outputs: usize, dropout: f64, device: &B::Device) -> Self {
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
    pub fn forward(&self, text: Tensor<B, 3>, audio: Tensor<B, 3>, vision: Tensor<B, 3>) -> Tensor<B, 2> {
        let enc = |x: Tensor<B, 3>, l: &Linear<B>| {
            let pooled: Tensor<B, 2> = x.mean_dim(1).squeeze_dim(1);
            self.relu.forward(l.forward(pooled))
        };
        let h = Tensor::cat(
            vec![enc(text, &self.text), enc(audio, &self.audio), enc(vision, &self.vision)],
            1,
        );
        let h = self.dropout.forward(self.relu.forward(self.fuse.forward(h)));
        self.head.forward(h)
    }
}

pub(crate) fn tensor3<B: Backend>(a: &Array3, device: &B::Device) -> Tensor<B, 3> {
    Tensor::from_data(TensorData::new(a.data.clone(), a.shape.to_vec()), device)
}

pub struct LateFusionWorkload<B: AutodiffBackend> {
    model: Option<LateFusion<B>>,
    optim: OptimizerAdaptor<AdamW, LateFusion<B>, B>,
    data: SeqDataset,
    device: B::Device,
    batch_size: usize,
    lr: f64,
    rng: ChaCha8Rng,
}

impl<B: AutodiffBackend> LateFusionWorkload<B> {
    pub fn new(req: &TrialRequest, data: SeqDataset, device: &B::Device) -> Result<Self, TrainError> {
        let p = &req.params;
        let modality_hidden = p.positive("modality_hidden", 16)?;
        let hidden = p.positive("hidden", 32)?;
        let dropout = p.f64_in("dropout", 0.0, 0.0, 0.95)?;
        let lr = p.f64("lr", 1e-3)?;
        let weight_decay = p.f64("weight_decay", 0.0)?;
        let batch_size = p.positive("batch_size", 32)?;
        let outputs = match data.task {
            Task::Classification { n_classes } => n_classes,
            Task::Regression => 1,
        };
        B::seed(device, req.seed);
        let model = LateFusion::new(data.dims(), modality_hidden, hidden, outputs, dropout, device);
        let optim = AdamWConfig::new()
            .with_weight_decay(weight_decay as f32)
            .init::<B, LateFusion<B>>();
        Ok(Self {
            model: Some(model),
            optim,
            data,
            device: device.clone(),
            batch_size,
            lr,
            rng: sigsweep_data::synthetic::rng(req.seed, 100),
        })
    }

    fn batch<BB: Backend>(split: &SeqSplit, idx: &[usize], device: &BB::Device) -> [Tensor<BB, 3>; 3] {
        [
            tensor3(&split.text.gather(idx), device),
            tensor3(&split.audio.gather(idx), device),
            tensor3(&split.vision.gather(idx), device),
        ]
    }
}

impl<B: AutodiffBackend> Workload for LateFusionWorkload<B> {
    fn train_epoch(&mut self, epoch: u32, cancel: &AtomicBool) -> Result<f64, TrainError> {
        let split = &self.data.train;
        let mut order: Vec<usize> = (0..split.len()).collect();
        order.shuffle(&mut self.rng);
        let mut model = self.model.take().ok_or_else(|| TrainError::Backend("model lost after a failed step".into()))?;
        let mut total = 0.0;
        let mut steps = 0usize;
        for (step, idx) in order.chunks(self.batch_size).enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(TrainError::Cancelled);
            }
            let [t, a, v] = Self::batch::<B>(split, idx, &self.device);
            let out = model.forward(t, a, v);
            let labels: Vec<f32> = idx.iter().map(|&i| split.labels[i]).collect();
            let loss = match self.data.task {
                Task::Classification { .. } => {
                    let targets = Tensor::<B, 1, Int>::from_data(
                        TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [idx.len()]),
                        &self.device,
                    );
                    CrossEntropyLossConfig::new().init(&self.device).forward(out, targets)
                }
                Task::Regression => {
                    let y = Tensor::<B, 1>::from_data(TensorData::new(labels, [idx.len()]), &self.device);
                    (out.squeeze_dim::<1>(1) - y).abs().mean()
                }
            };
            let value: f64 = loss.clone().into_scalar().elem::<f64>();
            if !value.is_finite() {
                return Err(TrainError::NonFinite { what: "training loss", value, epoch, step: step + 1 });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = self.optim.step(self.lr, model, grads);
            total += value;
            steps += 1;
        }
        self.model = Some(model);
        Ok(total / steps.max(1) as f64)
    }

    fn evaluate(&self, which: Split) -> Result<BTreeMap<String, f64>, TrainError> {
        let split = match which {
            Split::Train => &self.data.train,
            Split::Valid => &self.data.valid,
            Split::Test => &self.data.test,
        };
        let model = self.model.as_ref().ok_or_else(|| TrainError::Backend("model lost".into()))?.valid();
        let device = self.device.clone();
        let mut preds: Vec<f32> = Vec::with_capacity(split.len());
        let order: Vec<usize> = (0..split.len()).collect();
        for idx in order.chunks(256) {
            let [t, a, v] = Self::batch::<B::InnerBackend>(split, idx, &device);
            let out = model.forward(t, a, v);
            match self.data.task {
                Task::Classification { .. } => {
                    let arg = out.argmax(1).into_data();
                    preds.extend(arg.iter::<i64>().map(|x| x as f32));
                }
                Task::Regression => preds.extend(out.into_data().iter::<f32>()),
            }
        }
        Ok(match self.data.task {
            Task::Classification { n_classes } => {
                let truth: Vec<usize> = split.labels.iter().map(|&l| l as usize).collect();
                let pred: Vec<usize> = preds.iter().map(|&p| p as usize).collect();
                classification_metrics(&truth, &pred, n_classes)
            }
            Task::Regression => regression_metrics(&split.labels, &preds),
        })
    }
}
