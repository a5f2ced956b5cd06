//! `fdcmdie` trained data-parallel. A step draws the whole batch's
//! contrastive samples first (one draw sequence from the trial's sampler,
//! exactly as the plain trainer draws them), then gives each replica a
//! contiguous shard of the anchors together with *their* drawn similar and
//! different samples. The model is per sample (LayerNorm, LSTMs and
//! attention never mix samples) and every contrastive pair lies within one
//! anchor's group, so every term of the loss is a sum over anchors divided
//! by the batch's `b` (the MAE a mean): a shard of `b_i` anchors scaled by
//! `b_i / b` is exactly its share of the batch loss, and the summed
//! gradients are the full-batch gradient. Global-norm clipping acts on that
//! sum inside the optimiser, so `grad_clip` works here (unlike fusion).

use std::collections::BTreeMap;

use burn::tensor::backend::AutodiffBackend;

use super::{ClBatch, FdCmdie, FdCmdieWorkload, Optim, anchor_shard, batch_loss};
use crate::trial::{Prediction, Replicas, Sharded, Split, TrainError, Weights, shard_ranges};

impl<B: AutodiffBackend> Sharded<B> for FdCmdieWorkload<B> {
    type Model = FdCmdie<B>;
    type Optim = Optim<B>;

    fn take_model(&mut self) -> Result<(Self::Model, Self::Optim), TrainError> {
        let model = self.model.take().ok_or_else(TrainError::model_lost)?;
        Ok((model, self.optim.clone()))
    }

    fn epoch_batches(&mut self) -> Vec<Vec<usize>> {
        FdCmdieWorkload::epoch_batches(self)
    }

    fn step<D: Replicas<B, Self::Model>>(
        &mut self,
        dp: &mut D,
        idx: &[usize],
    ) -> Result<f64, TrainError> {
        let b = idx.len();
        let all = self.extended(idx);
        let shards: Vec<(ClBatch, usize)> = shard_ranges(b, dp.replicas())
            .into_iter()
            .map(|r| (anchor_shard(&all, b, r.clone()), r.len()))
            .collect();
        let (split, settings) = (&self.train, &self.settings);
        dp.step(
            settings.lr,
            shards,
            |model: &FdCmdie<B>, (samples, anchors), device| {
                let (loss, _, _) = batch_loss(model, split, settings, &samples, anchors, device);
                loss.mul_scalar(anchors as f64 / b as f64)
            },
        )
    }

    fn evaluate_with(
        &self,
        model: &FdCmdie<B::InnerBackend>,
        split: Split,
    ) -> Result<BTreeMap<String, f64>, TrainError> {
        Ok(FdCmdieWorkload::evaluate_with(self, model, split))
    }

    fn predictions_with(
        &self,
        model: &FdCmdie<B::InnerBackend>,
        split: Split,
    ) -> Result<Vec<Prediction>, TrainError> {
        Ok(FdCmdieWorkload::predictions_with(self, model, split))
    }

    fn weights_with(&self, model: &FdCmdie<B::InnerBackend>) -> Result<Weights, TrainError> {
        Ok(Weights::from_module(model))
    }
}

#[cfg(test)]
mod tests {
    use super::super::shard_slots as anchor_shard;

    /// 3 anchors (10, 11, 12), 2 similar (1x) and 2 different (2x) samples
    /// each: a shard keeps its anchors' own samples in the same layout.
    #[test]
    fn anchor_shards_keep_each_anchors_samples() {
        let all = vec![
            10, 11, 12, 100, 101, 110, 111, 120, 121, 200, 201, 210, 211, 220, 221,
        ];
        assert_eq!(
            anchor_shard(&all, 3, 2, 0..2),
            vec![10, 11, 100, 101, 110, 111, 200, 201, 210, 211]
        );
        assert_eq!(anchor_shard(&all, 3, 2, 2..3), vec![12, 120, 121, 220, 221]);
        assert_eq!(anchor_shard(&all[..3], 3, 2, 1..3), vec![11, 12]);
    }
}
