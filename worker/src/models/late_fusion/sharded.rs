//! `late-fusion` trained data-parallel: every replica runs its shard of the
//! batch through the whole model; the loss (mean over samples) of a shard of
//! `n_i` samples is scaled by `n_i / n`.

use std::collections::BTreeMap;

use burn::optim::AdamW;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::tensor::backend::AutodiffBackend;

use super::{LateFusion, LateFusionWorkload, batch, mean_loss};
use crate::trial::{Prediction, Replicas, Sharded, Split, TrainError, Weights, shard_ranges};

impl<B: AutodiffBackend> Sharded<B> for LateFusionWorkload<B> {
    type Model = LateFusion<B>;
    type Optim = OptimizerAdaptor<AdamW, LateFusion<B>, B>;

    fn take_model(&mut self) -> Result<(Self::Model, Self::Optim), TrainError> {
        let model = self.model.take().ok_or_else(TrainError::model_lost)?;
        Ok((model, self.optim.clone()))
    }

    fn epoch_batches(&mut self) -> Vec<Vec<usize>> {
        LateFusionWorkload::epoch_batches(self)
    }

    fn step<D: Replicas<B, Self::Model>>(
        &mut self,
        dp: &mut D,
        idx: &[usize],
    ) -> Result<f64, TrainError> {
        let n = idx.len();
        let shards: Vec<&[usize]> = shard_ranges(n, dp.replicas())
            .into_iter()
            .map(|r| &idx[r])
            .collect();
        let (split, task) = (&self.data.train, self.data.task);
        dp.step(self.lr, shards, |model: &LateFusion<B>, shard, device| {
            let [t, a, v] = batch::<B>(split, shard, device);
            let labels: Vec<f32> = shard.iter().map(|&i| split.labels[i]).collect();
            mean_loss(model.forward(t, a, v), labels, task, device)
                .mul_scalar(shard.len() as f64 / n as f64)
        })
    }

    fn evaluate_with(
        &self,
        model: &LateFusion<B::InnerBackend>,
        split: Split,
    ) -> Result<BTreeMap<String, f64>, TrainError> {
        Ok(LateFusionWorkload::evaluate_with(self, model, split))
    }

    fn predictions_with(
        &self,
        model: &LateFusion<B::InnerBackend>,
        split: Split,
    ) -> Result<Vec<Prediction>, TrainError> {
        Ok(LateFusionWorkload::predictions_with(self, model, split))
    }

    fn weights_with(&self, model: &LateFusion<B::InnerBackend>) -> Result<Weights, TrainError> {
        Ok(Weights::from_module(model))
    }
}
