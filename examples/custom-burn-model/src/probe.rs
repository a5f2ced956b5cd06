//! `linear-probe`: each modality mean-pooled over time, concatenated, then
//! `layers` hidden ReLU layers of width `width` (0: a linear probe) and a
//! linear head. Cross-entropy or L1; Adam. It trains on sequence datasets
//! (synthetic fusion/msa, MMSA files).
//!
//! What a model provides: a declaration of its parameters (checked by the
//! coordinator at submit and by the worker before it builds anything), the
//! dataset shape it consumes, and a `Workload`: `train_epoch` (check
//! `cancel` between steps, through `train_epoch_steps`) and `evaluate`.
//! Every random source derives from the trial's seed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use burn::module::AutodiffModule;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use sigsweep_data::seq::{SeqDataset, SeqSplit, Task};
use sigsweep_types::params::{ModelDecl, ParamDecl, ParamKind};
use sigsweep_worker::backend::{BackendKind, Cpu};
use sigsweep_worker::models::{Extension, Shape, late_fusion};
use sigsweep_worker::trial::{
    LoadedDataset, Split, TrainError, TrialRequest, Workload, train_epoch_steps,
};

/// The registry entry of `linear-probe`.
pub fn extension() -> Extension {
    Extension {
        decl: ModelDecl {
            name: Cow::Borrowed("linear-probe"),
            doc: Cow::Borrowed("mean-pooled modalities, concatenated, into a small MLP"),
            params: Cow::Owned(vec![
                ParamDecl {
                    name: Cow::Borrowed("layers"),
                    kind: ParamKind::Int { min: 0, max: 8 },
                    default: Cow::Borrowed("0"),
                    doc: Cow::Borrowed("hidden layers (0: a linear probe)"),
                },
                ParamDecl {
                    name: Cow::Borrowed("width"),
                    kind: ParamKind::Int { min: 1, max: 4096 },
                    default: Cow::Borrowed("32"),
                    doc: Cow::Borrowed("width of each hidden layer"),
                },
            ]),
        },
        shape: Shape::Seq,
        build,
    }
}

fn build(
    req: &TrialRequest,
    data: LoadedDataset,
    backend: BackendKind,
) -> Result<Box<dyn Workload>, TrainError> {
    let LoadedDataset::Seq(data) = data else {
        return Err(TrainError::Dataset(
            "linear-probe trains on sequence datasets".into(),
        ));
    };
    match backend {
        BackendKind::Cpu => Ok(Box::new(ProbeWorkload::<Cpu>::new(
            req,
            data,
            &Default::default(),
        )?)),
        other => Err(TrainError::Backend(format!(
            "this example builds linear-probe for the CPU only, not {other}"
        ))),
    }
}

#[derive(Module, Debug)]
pub struct Probe<B: Backend> {
    hidden: Vec<Linear<B>>,
    head: Linear<B>,
    relu: Relu,
}

impl<B: Backend> Probe<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = self
            .hidden
            .iter()
            .fold(x, |h, l| self.relu.forward(l.forward(h)));
        self.head.forward(h)
    }
}

/// Mean over time of every modality, concatenated: `[batch, dims]`.
fn features<B: Backend>(split: &SeqSplit, idx: &[usize], device: &B::Device) -> Tensor<B, 2> {
    let pooled = [&split.text, &split.audio, &split.vision].map(|m| {
        let a = m.gather(idx);
        let x = Tensor::<B, 3>::from_data(TensorData::new(a.data, a.shape.to_vec()), device);
        x.mean_dim(1).squeeze_dim::<2>(1)
    });
    Tensor::cat(pooled.to_vec(), 1)
}

pub struct ProbeWorkload<B: AutodiffBackend> {
    model: Option<Probe<B>>,
    optim: OptimizerAdaptor<Adam, Probe<B>, B>,
    data: SeqDataset,
    device: B::Device,
    batch_size: usize,
    lr: f64,
    rng: ChaCha8Rng,
}

impl<B: AutodiffBackend> ProbeWorkload<B> {
    fn new(req: &TrialRequest, data: SeqDataset, device: &B::Device) -> Result<Self, TrainError> {
        let layers = req.params.usize("layers", 0)?;
        let width = req.params.positive("width", 32)?;
        let outputs = match data.task {
            Task::Classification { n_classes } => n_classes,
            Task::Regression => 1,
        };
        B::seed(device, req.seed);
        let input: usize = data.dims().iter().sum();
        let hidden = (0..layers)
            .map(|i| LinearConfig::new(if i == 0 { input } else { width }, width).init(device))
            .collect();
        let last = if layers == 0 { input } else { width };
        let model = Probe {
            hidden,
            head: LinearConfig::new(last, outputs).init(device),
            relu: Relu::new(),
        };
        Ok(Self {
            model: Some(model),
            optim: AdamConfig::new().init(),
            data,
            device: device.clone(),
            batch_size: req.params.positive("batch_size", 32)?,
            lr: req.params.f64("lr", 1e-3)?,
            // The shuffle derives from the seed too (its own stream).
            rng: ChaCha8Rng::seed_from_u64(req.seed ^ 0x5eed),
        })
    }
}

impl<B: AutodiffBackend> Workload for ProbeWorkload<B> {
    fn train_epoch(&mut self, epoch: u32, cancel: &AtomicBool) -> Result<f64, TrainError> {
        let mut order: Vec<usize> = (0..self.data.train.len()).collect();
        order.shuffle(&mut self.rng);
        let batches: Vec<&[usize]> = order.chunks(self.batch_size).collect();
        let (split, task, device) = (&self.data.train, self.data.task, &self.device);
        let mut slot = self.model.take();
        let mean = train_epoch_steps(&batches, epoch, cancel, |idx| {
            let model = slot.take().ok_or_else(TrainError::model_lost)?;
            let out = model.forward(features::<B>(split, idx, device));
            let labels: Vec<f32> = idx.iter().map(|&i| split.labels[i]).collect();
            // sigsweep's own helpers are there to reuse: cross-entropy or L1
            // by the dataset's task.
            let loss = late_fusion::mean_loss(out, labels, task, device);
            let value: f64 = loss.clone().into_scalar().elem();
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
            .ok_or_else(TrainError::model_lost)?
            .valid();
        let split = match which {
            Split::Train => &self.data.train,
            Split::Valid => &self.data.valid,
            Split::Test => &self.data.test,
        };
        let all: Vec<usize> = (0..split.len()).collect();
        let out = model.forward(features(split, &all, &self.device));
        let preds: Vec<f32> = match self.data.task {
            Task::Classification { .. } => out
                .argmax(1)
                .into_data()
                .iter::<i64>()
                .map(|p| p as f32)
                .collect(),
            Task::Regression => out.into_data().iter::<f32>().collect(),
        };
        Ok(late_fusion::split_metrics(self.data.task, split, &preds))
    }
}
