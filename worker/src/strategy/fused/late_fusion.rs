//! Seed fusion of `late-fusion`: `K` models as one [`FusedLateFusion`]
//! (see the parent module for the invariants).

use std::collections::BTreeMap;

use burn::module::AutodiffModule;
use burn::nn::{Dropout, DropoutConfig, Linear, Relu};
use burn::optim::AdamW;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use rand_chacha::ChaCha8Rng;

use sigsweep_data::seq::{SeqDataset, SeqSplit, Task};

use super::common::{
    FusedTrainer, predict_chunks, seq_dataset, shuffled_orders, stacked, stacked_labels, step_live,
};
use super::layers::FusedLinear;
use crate::models::late_fusion::{
    LateFusion, LateFusionSettings, outputs, shuffle_rng, split_metrics,
};
use crate::tensor::materialize;
use crate::tensor::to_f32_vec as values;
use crate::trial::memory::check_within_memory;
use crate::trial::{TrainError, TrialRequest};

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
        // Every seed's model is held at once: the group must fit, not one.
        let one = LateFusion::<B>::new(dims, modality_hidden, hidden, outputs, dropout, device);
        check_within_memory::<B, _>(&one, device, seeds.len(), dims)?;
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
            FusedLinear::from_linears(&models.iter().map(f).collect::<Vec<_>>())
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
        let h = crate::tensor::dropout(&self.dropout, self.relu.forward(self.fuse.forward(h)));
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

/// Per-seed metrics of the fused model on each seed's own split.
fn evaluate_fused<B: Backend>(
    model: &FusedLateFusion<B>,
    task: Task,
    splits: &[&SeqSplit],
    device: &B::Device,
) -> Vec<BTreeMap<String, f64>> {
    let preds = predict_chunks::<B>(splits, 256, device, |[t, a, v], _| {
        let out = model.forward(t, a, v);
        match task {
            Task::Classification { .. } => out
                .argmax(2)
                .into_data()
                .iter::<i64>()
                .map(|x| x as f32)
                .collect(),
            Task::Regression => out.into_data().iter::<f32>().collect(),
        }
    });
    splits
        .iter()
        .zip(&preds)
        .map(|(s, p)| split_metrics(task, s, p))
        .collect()
}

fn same_shapes(a: &SeqDataset, b: &SeqDataset) -> bool {
    let s = |x: &SeqSplit| (x.len(), x.text.shape, x.audio.shape, x.vision.shape);
    a.task == b.task
        && s(&a.train) == s(&b.train)
        && s(&a.valid) == s(&b.valid)
        && s(&a.test) == s(&b.test)
}

/// The fused `late-fusion` model, its optimiser and every seed's data.
pub(crate) struct LateFusionTrainer<B: AutodiffBackend> {
    model: Option<FusedLateFusion<B>>,
    optim: OptimizerAdaptor<AdamW, FusedLateFusion<B>, B>,
    data: Vec<SeqDataset>,
    rngs: Vec<ChaCha8Rng>,
    task: Task,
    lr: f64,
    batch_size: usize,
    device: B::Device,
}

impl<B: AutodiffBackend> LateFusionTrainer<B> {
    /// Builds every seed's model and data. Reseeds `B`'s RNG: the caller
    /// holds the training lock.
    pub(crate) fn new(requests: &[TrialRequest], device: &B::Device) -> Result<Self, TrainError> {
        let s = LateFusionSettings::from_params(&requests[0].params)?;
        let data: Vec<SeqDataset> = requests.iter().map(seq_dataset).collect::<Result<_, _>>()?;
        if data.iter().any(|d| !same_shapes(d, &data[0])) {
            return Err(TrainError::Dataset(
                "seed fusion needs every seed's dataset to have the same shapes".into(),
            ));
        }
        let task = data[0].task;
        let seeds: Vec<u64> = requests.iter().map(|r| r.seed).collect();
        let model = FusedLateFusion::<B>::from_seeds(
            &seeds,
            data[0].dims(),
            s.modality_hidden,
            s.hidden,
            outputs(task),
            s.dropout,
            device,
        )?;
        Ok(Self {
            model: Some(model),
            optim: s.optimizer_config().init::<B, FusedLateFusion<B>>(),
            data,
            rngs: seeds.iter().map(|&seed| shuffle_rng(seed)).collect(),
            task,
            lr: s.lr,
            batch_size: s.batch_size,
            device: device.clone(),
        })
    }

    fn model(&self) -> Result<&FusedLateFusion<B>, TrainError> {
        self.model
            .as_ref()
            .ok_or_else(|| TrainError::Backend("model lost after a failed step".into()))
    }
}

impl<B: AutodiffBackend> FusedTrainer for LateFusionTrainer<B> {
    fn train_len(&self) -> usize {
        self.data[0].train.len()
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn orders(&mut self) -> Vec<Vec<usize>> {
        shuffled_orders(self.train_len(), self.rngs.iter_mut())
    }

    fn step(&mut self, idx: &[&[usize]], active: &[bool]) -> Result<Vec<f64>, TrainError> {
        let splits: Vec<&SeqSplit> = self.data.iter().map(|d| &d.train).collect();
        let [t, a, v] = stacked::<B>(&splits, idx, &self.device);
        let labels = stacked_labels(&splits, idx);
        let model = self
            .model
            .take()
            .ok_or_else(|| TrainError::Backend("model lost after a failed step".into()))?;
        let losses = per_seed_loss(model.forward(t, a, v), labels, self.task, &self.device);
        let numbers: Vec<f64> = values(losses.clone()).into_iter().map(f64::from).collect();
        self.model = Some(step_live(
            model,
            &mut self.optim,
            self.lr,
            losses,
            &numbers,
            active,
        ));
        Ok(numbers)
    }

    fn evaluate(&self) -> Result<Vec<(BTreeMap<String, f64>, BTreeMap<String, f64>)>, TrainError> {
        let inference = self.model()?.valid();
        let split = |f: fn(&SeqDataset) -> &SeqSplit| {
            let splits: Vec<&SeqSplit> = self.data.iter().map(f).collect();
            evaluate_fused(&inference, self.task, &splits, &self.device)
        };
        let valid = split(|d| &d.valid);
        let test = split(|d| &d.test);
        Ok(valid.into_iter().zip(test).collect())
    }
}
