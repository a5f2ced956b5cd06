//! `mmic` / `mmdfn` trained data-parallel. A batch is `batch_size`
//! dialogues; each replica gets a contiguous run of whole dialogues (the
//! graph is block-diagonal per dialogue and the recurrences are packed per
//! dialogue and speaker, so a dialogue's forward pass does not depend on
//! the others in its batch).
//!
//! The task loss is a mean over the batch's utterances: a shard of `n_i` of
//! the batch's `N` utterances contributes its mean × `n_i / N`. The
//! auxiliary losses are not per sample — SupCon and CPC use the whole
//! batch as negatives, the BA entropy groups the whole batch by valence and
//! remembers the previous batch — so they go through
//! [`Replicas::step_gathered`]: every replica's fusion features `F`
//! and graph inputs `x^a, x^v, x^t` are gathered on the first device (in
//! batch order), [`aux_losses`] runs there once on the whole batch (with
//! the first replica's CPC and BA heads, and the trial's one BA memory), and
//! the feature gradients flow back to each replica's own forward pass. The
//! BA heads' stage-0 gradients exist on the first replica only, and the
//! all-reduce gives every replica the same sum, so [`MmicOptim`] steps the
//! heads identically everywhere. Training equals the plain trainer on the
//! whole batch up to floating-point summation order.

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use sigsweep_data::erc::Dialogue;

use super::{HostBatch, LossParts, Mmic, MmicOptim, MmicWorkload, aux_losses};
use crate::trial::{
    LocalPart, Prediction, Replicas, Sharded, Split, TrainError, Weights, shard_ranges,
};

impl<B: AutodiffBackend> Sharded<B> for MmicWorkload<B> {
    type Model = Mmic<B>;
    type Optim = MmicOptim<B>;

    fn take_model(&mut self) -> Result<(Self::Model, Self::Optim), TrainError> {
        let model = self.model.take().ok_or_else(TrainError::model_lost)?;
        Ok((model, self.optim.clone()))
    }

    fn epoch_batches(&mut self) -> Vec<Vec<usize>> {
        MmicWorkload::epoch_batches(self)
    }

    fn step<D: Replicas<B, Self::Model>>(
        &mut self,
        dp: &mut D,
        idx: &[usize],
    ) -> Result<f64, TrainError> {
        let dialogues: Vec<&Dialogue> = idx.iter().map(|&i| &self.data.train[i]).collect();
        let longest = dialogues.iter().map(|d| d.len()).max().unwrap_or(0);
        let shards: Vec<HostBatch> = shard_ranges(dialogues.len(), dp.replicas())
            .into_iter()
            .map(|r| self.host_batch(&dialogues[r], longest))
            .collect();
        let n: usize = shards.iter().map(|hb| hb.n).sum();
        let labels: Vec<usize> = shards
            .iter()
            .flat_map(|hb| hb.labels.iter().copied())
            .collect();
        let aux = self.has_aux_losses();
        let mut memory = std::mem::take(&mut self.memory);
        let this = &*self;
        let local = |model: &Mmic<B>, hb: HostBatch, device: &B::Device| {
            let fwd = model.net.forward(&hb, &this.cfg.net, device);
            let loss = this
                .task_loss(fwd.logits, &hb.labels)
                .mul_scalar(hb.n as f64 / n as f64);
            let features = if aux {
                let [a, v, t] = fwd.e;
                vec![fwd.f, a, v, t]
            } else {
                Vec::new()
            };
            LocalPart { loss, features }
        };
        // The batch-wide part runs once, on the first device.
        let (cfg, device0) = (&this.cfg, &this.device);
        let mut parts = LossParts::default();
        let mut aux_value = 0.0;
        let global = |model: &Mmic<B>, gathered: Vec<Tensor<B, 2>>| {
            let [f, a, v, t]: [_; 4] = gathered.try_into().ok()?;
            let (main, mi) = aux_losses(
                cfg,
                &mut memory,
                model,
                f,
                [a, v, t],
                &labels,
                device0,
                &mut parts,
            );
            let value = main
                .as_ref()
                .map_or(0.0, |m| m.clone().into_scalar().elem::<f64>());
            let objective = match (main, mi) {
                (Some(m), Some(s)) => m + s,
                (Some(m), None) => m,
                (None, Some(s)) => s,
                (None, None) => return None,
            };
            aux_value = value;
            Some((objective, value))
        };
        let total = dp.step_gathered(self.cfg.lr, shards, local, global);
        self.memory = memory;
        let total = total?;
        parts.task = total - aux_value;
        parts.total = total;
        self.last = parts;
        Ok(total)
    }

    fn evaluate_with(
        &self,
        model: &Mmic<B::InnerBackend>,
        split: Split,
    ) -> Result<BTreeMap<String, f64>, TrainError> {
        Ok(MmicWorkload::evaluate_with(self, model, split))
    }

    fn predictions_with(
        &self,
        model: &Mmic<B::InnerBackend>,
        split: Split,
    ) -> Result<Vec<Prediction>, TrainError> {
        Ok(MmicWorkload::predictions_with(self, model, split))
    }

    fn weights_with(&self, model: &Mmic<B::InnerBackend>) -> Result<Weights, TrainError> {
        super::weights::export(model, self.cfg.variant, self.data.n_speakers)
    }
}
