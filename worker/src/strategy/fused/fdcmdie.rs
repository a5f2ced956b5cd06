//! Seed fusion of `fdcmdie`: `K` FD-CMDIE networks as one [`FusedFdCmdie`]
//! (see the parent module for the invariants).
//!
//! Every layer of [`crate::models::fdcmdie::model`] has its fused
//! counterpart here, layer for layer, built from the `K` unfused networks
//! of the seeds' own [`FdCmdieWorkload`]s (which also give each seed its
//! pooled splits, contrastive sets, shuffle and sampling RNGs). Activations
//! are `[K, B, L, d]`; the positional encoding and the parameter-free steps
//! run on `[K·B, L, d]`.

use std::collections::BTreeMap;

use burn::module::AutodiffModule;
use burn::nn::{Dropout, DropoutConfig, PositionalEncoding, PositionalEncodingConfig};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::backend::AutodiffBackend;

use sigsweep_data::metrics::regression_metrics;
use sigsweep_data::seq::SeqSplit;

use super::common::{
    FusedTrainer, predict_chunks, seq_dataset, shuffled_orders, stacked, stacked_labels, step_live,
};
use super::layers::{FusedFfn, FusedLayerNorm, FusedLinear, FusedLstm, FusedMha};
use crate::models::fdcmdie::model::{Dipu, FdCmdie, Ffn, Gap, Projector, StackedLstm};
use crate::models::fdcmdie::{
    ClBatch, FdCmdieWorkload, build_pairs, cl_loss_batched, distinct_samples, slot_index,
    step_masks,
};
use crate::tensor::to_f32_vec as values;
use crate::trial::adamw::FusedAdamW;
use crate::trial::{TrainError, TrialRequest};

type Res<T> = Result<T, TrainError>;

/// Step masks of every seed's sequences, `[K, B, L]` (1 = real step);
/// `None` when every step of every seed's samples is real.
pub type FusedMask<B> = Option<Tensor<B, 3>>;

/// Mean over the (real) time steps: `[K, B, L, d]` → `[K, B, d]`, as
/// [`crate::models::fdcmdie::model::masked_time_mean`] per seed.
fn time_mean<B: Backend>(x: Tensor<B, 4>, mask: &FusedMask<B>) -> Tensor<B, 3> {
    match mask {
        None => {
            let [k, b, l, d] = x.dims();
            crate::tensor::mean_steps(x.reshape([k * b, l, d])).reshape([k, b, d])
        }
        Some(m) => {
            let [k, b, l] = m.dims();
            let count = m.clone().sum_dim(2).clamp_min(1.0); // [K, B, 1]
            (x * m.clone().reshape([k, b, l, 1]))
                .sum_dim(2)
                .squeeze_dim(2)
                / count
        }
    }
}

/// The padding of a fused step mask as attention wants it: `[K·B, L]`,
/// true = padding.
fn padding<B: Backend>(mask: &FusedMask<B>) -> Option<Tensor<B, 2, Bool>> {
    mask.as_ref().map(|m| {
        let [k, b, l] = m.dims();
        m.clone().reshape([k * b, l]).lower_elem(0.5)
    })
}

/// The step masks (T, V, A) of samples `idx[k]` of `splits[k]`, stacked
/// over the seeds (a seed whose samples are all real gets ones).
fn stacked_masks<B: Backend>(
    splits: &[&SeqSplit],
    idx: &[&[usize]],
    device: &B::Device,
) -> [FusedMask<B>; 3] {
    let per_seed: Vec<_> = splits
        .iter()
        .zip(idx)
        .map(|(s, i)| step_masks(s, i))
        .collect();
    let lens = [
        splits[0].text.shape[1],
        splits[0].vision.shape[1],
        splits[0].audio.shape[1],
    ];
    std::array::from_fn(|m| {
        if per_seed.iter().all(|masks| masks[m].is_none()) {
            return None;
        }
        let mut data = Vec::new();
        for (masks, i) in per_seed.iter().zip(idx) {
            match &masks[m] {
                Some((d, _)) => data.extend_from_slice(d),
                None => data.extend(std::iter::repeat_n(1.0f32, i.len() * lens[m])),
            }
        }
        Some(Tensor::from_data(
            TensorData::new(data, [idx.len(), idx[0].len(), lens[m]]),
            device,
        ))
    })
}

fn ffn<B: Backend>(ffns: &[&Ffn<B>], dropout: f64) -> Res<FusedFfn<B>> {
    Ok(FusedFfn::new(
        FusedLinear::from_linears(&ffns.iter().map(|f| &f.l1).collect::<Vec<_>>())?,
        FusedLinear::from_linears(&ffns.iter().map(|f| &f.l2).collect::<Vec<_>>())?,
        dropout,
    ))
}

fn norm<B: Backend>(norms: Vec<&burn::nn::LayerNorm<B>>) -> Res<FusedLayerNorm<B>> {
    FusedLayerNorm::from_norms(&norms)
}

/// Fused [`Projector`]: LayerNorm → Linear → Tanh → Dropout.
#[derive(Module, Debug)]
pub struct FusedProjector<B: Backend> {
    norm: FusedLayerNorm<B>,
    linear: FusedLinear<B>,
    dropout: Dropout,
}

impl<B: Backend> FusedProjector<B> {
    fn new(ps: &[&Projector<B>], dropout: f64) -> Res<Self> {
        Ok(Self {
            norm: norm(ps.iter().map(|p| &p.norm).collect())?,
            linear: FusedLinear::from_linears(&ps.iter().map(|p| &p.linear).collect::<Vec<_>>())?,
            dropout: DropoutConfig::new(dropout).init(),
        })
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        crate::tensor::activation_dropout(
            &self.dropout,
            crate::tensor::cpu::Activation::Tanh,
            self.linear.forward4(self.norm.forward4(x)),
        )
    }
}

/// Fused [`StackedLstm`].
#[derive(Module, Debug)]
pub struct FusedStackedLstm<B: Backend> {
    layers: Vec<FusedLstm<B>>,
}

impl<B: Backend> FusedStackedLstm<B> {
    fn new(ls: &[&StackedLstm<B>]) -> Res<Self> {
        let depth = ls[0].layers.len();
        Ok(Self {
            layers: (0..depth)
                .map(|i| {
                    FusedLstm::from_lstms(&ls.iter().map(|l| &l.layers[i]).collect::<Vec<_>>())
                })
                .collect::<Res<_>>()?,
        })
    }

    fn forward(&self, mut x: Tensor<B, 4>) -> Tensor<B, 4> {
        for l in &self.layers {
            x = l.forward(x);
        }
        x
    }
}

/// Fused [`Dipu`] (eqs. 13–24).
#[derive(Module, Debug)]
pub struct FusedDipu<B: Backend> {
    ln_g0: FusedLayerNorm<B>,
    ln_x0: FusedLayerNorm<B>,
    cross_g: FusedMha<B>,
    cross_x: FusedMha<B>,
    ln_g1: FusedLayerNorm<B>,
    ln_x1: FusedLayerNorm<B>,
    self_g: FusedMha<B>,
    self_x: FusedMha<B>,
    ln_g2: FusedLayerNorm<B>,
    ln_x2: FusedLayerNorm<B>,
    ln_g3: FusedLayerNorm<B>,
    ln_x3: FusedLayerNorm<B>,
    ffn_g: FusedFfn<B>,
    ffn_x: FusedFfn<B>,
    cross2: bool,
}

impl<B: Backend> FusedDipu<B> {
    fn new(ds: &[&Dipu<B>], dropout: f64) -> Res<Self> {
        let ln =
            |f: fn(&Dipu<B>) -> &burn::nn::LayerNorm<B>| norm(ds.iter().map(|d| f(d)).collect());
        let mha = |f: fn(&Dipu<B>) -> &burn::nn::attention::MultiHeadAttention<B>| {
            FusedMha::from_mhas(&ds.iter().map(|d| f(d)).collect::<Vec<_>>(), dropout)
        };
        Ok(Self {
            ln_g0: ln(|d| &d.ln_g0)?,
            ln_x0: ln(|d| &d.ln_x0)?,
            cross_g: mha(|d| &d.cross_g)?,
            cross_x: mha(|d| &d.cross_x)?,
            ln_g1: ln(|d| &d.ln_g1)?,
            ln_x1: ln(|d| &d.ln_x1)?,
            self_g: mha(|d| &d.self_g)?,
            self_x: mha(|d| &d.self_x)?,
            ln_g2: ln(|d| &d.ln_g2)?,
            ln_x2: ln(|d| &d.ln_x2)?,
            ln_g3: ln(|d| &d.ln_g3)?,
            ln_x3: ln(|d| &d.ln_x3)?,
            ffn_g: ffn(&ds.iter().map(|d| &d.ffn_g).collect::<Vec<_>>(), dropout)?,
            ffn_x: ffn(&ds.iter().map(|d| &d.ffn_x).collect::<Vec<_>>(), dropout)?,
            cross2: ds[0].cross2,
        })
    }

    fn forward(
        &self,
        pe: &PositionalEncoding<B>,
        g: Tensor<B, 4>,
        x: Tensor<B, 4>,
        masks: (&FusedMask<B>, &FusedMask<B>),
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (pad_g, pad_x) = (padding(masks.0), padding(masks.1));
        let pos = |t: Tensor<B, 4>| {
            let [k, b, l, d] = t.dims();
            pe.forward(t.reshape([k * b, l, d])).reshape([k, b, l, d])
        };
        let g0 = self.ln_g0.forward4(pos(g));
        let x0 = self.ln_x0.forward4(pos(x));
        let g1 = self
            .ln_g1
            .forward4(self.cross_g.forward(g0.clone(), x0.clone(), &pad_x) + g0.clone());
        let x1 = self
            .ln_x1
            .forward4(self.cross_x.forward(x0.clone(), g0.clone(), &pad_g) + x0.clone());
        let g2 = self
            .ln_g2
            .forward4(self.self_g.forward(g1.clone(), g1.clone(), &pad_g) + g1);
        let x2 = self
            .ln_x2
            .forward4(self.self_x.forward(x1.clone(), x1.clone(), &pad_x) + x1);
        let (g3, x3) = if self.cross2 {
            (
                self.ln_g3
                    .forward4(self.cross_g.forward(g2.clone(), x0.clone(), &pad_x) + g2),
                self.ln_x3
                    .forward4(self.cross_x.forward(x2.clone(), g0, &pad_g) + x2),
            )
        } else {
            (g2, x2)
        };
        (
            self.ffn_g.forward4(g3.clone()) + g3,
            self.ffn_x.forward4(x3.clone()) + x3,
        )
    }
}

/// Fused [`Gap`] (eqs. 25–29).
#[derive(Module, Debug)]
pub struct FusedGap<B: Backend> {
    norms: Vec<FusedLayerNorm<B>>,
    gates: Vec<FusedFfn<B>>,
    score: FusedFfn<B>,
}

impl<B: Backend> FusedGap<B> {
    fn new(gs: &[&Gap<B>]) -> Res<Self> {
        Ok(Self {
            norms: (0..3)
                .map(|m| norm(gs.iter().map(|g| &g.norms[m]).collect()))
                .collect::<Res<_>>()?,
            gates: (0..3)
                .map(|m| ffn(&gs.iter().map(|g| &g.gates[m]).collect::<Vec<_>>(), 0.0))
                .collect::<Res<_>>()?,
            score: ffn(&gs.iter().map(|g| &g.score).collect::<Vec<_>>(), 0.0)?,
        })
    }

    fn forward(&self, gs: [Tensor<B, 4>; 3], mask: &FusedMask<B>) -> Tensor<B, 4> {
        let mut gated = Vec::with_capacity(3);
        let mut scores = Vec::with_capacity(3);
        for (m, g) in gs.into_iter().enumerate() {
            let normed = self.norms[m].forward4(g);
            let gate = sigmoid(self.gates[m].forward(time_mean(normed.clone(), mask))); // [K, B, 1]
            let [k, b, _] = gate.dims();
            let gm = normed * gate.reshape([k, b, 1, 1]);
            scores.push(self.score.forward(time_mean(gm.clone(), mask)));
            gated.push(gm);
        }
        let weights = softmax(Tensor::cat(scores, 2), 2); // [K, B, 3]
        let [k, b, _] = weights.dims();
        gated
            .into_iter()
            .enumerate()
            .map(|(m, g)| g * weights.clone().narrow(2, m, 1).reshape([k, b, 1, 1]))
            .reduce(|a, c| a + c)
            .expect("three modalities")
    }
}

/// Fused interaction layer: three DIPUs and a GAP.
#[derive(Module, Debug)]
pub struct FusedInteraction<B: Backend> {
    units: Vec<FusedDipu<B>>,
    gap: FusedGap<B>,
}

/// Fused decoupled features `[K, E, L_m, d]`, modalities (T, V, A).
#[derive(Debug, Clone)]
pub struct FusedDecoupled<B: Backend> {
    pub sim: [Tensor<B, 4>; 3],
    pub dis: [Tensor<B, 4>; 3],
    pub masks: [FusedMask<B>; 3],
}

impl<B: Backend> FusedDecoupled<B> {
    /// The first `n` samples of every seed.
    fn head(&self, n: usize) -> Self {
        let cut = |x: &Tensor<B, 4>| x.clone().narrow(1, 0, n);
        let cut_mask = |m: &FusedMask<B>| m.as_ref().map(|m| m.clone().narrow(1, 0, n));
        Self {
            sim: [cut(&self.sim[0]), cut(&self.sim[1]), cut(&self.sim[2])],
            dis: [cut(&self.dis[0]), cut(&self.dis[1]), cut(&self.dis[2])],
            masks: [
                cut_mask(&self.masks[0]),
                cut_mask(&self.masks[1]),
                cut_mask(&self.masks[2]),
            ],
        }
    }

    /// The step mask of the similarity sequences concatenated along time.
    fn global_mask(&self) -> FusedMask<B> {
        if self.masks.iter().all(Option::is_none) {
            return None;
        }
        let parts = self
            .masks
            .iter()
            .zip(&self.sim)
            .map(|(m, x)| match m {
                Some(m) => m.clone(),
                None => {
                    let [k, b, l, _] = x.dims();
                    Tensor::ones([k, b, l], &x.device())
                }
            })
            .collect();
        Some(Tensor::cat(parts, 2))
    }

    /// Every seed's contrastive matrix `[T_s; V_s; A_s; T_d; V_d; A_d]`: `[K, 6·E, d]`.
    fn contrastive_matrix(&self) -> Tensor<B, 3> {
        Tensor::cat(
            self.sim
                .iter()
                .chain(self.dis.iter())
                .zip(self.masks.iter().chain(self.masks.iter()))
                .map(|(x, m)| time_mean(x.clone(), m))
                .collect(),
            1,
        )
    }
}

/// `K` [`FdCmdie`] networks, one per seed, as one batched model.
#[derive(Module, Debug)]
pub struct FusedFdCmdie<B: Backend> {
    text: FusedLinear<B>,
    audio: FusedStackedLstm<B>,
    vision: FusedStackedLstm<B>,
    shared: FusedProjector<B>,
    private: Vec<FusedProjector<B>>,
    pe: PositionalEncoding<B>,
    layers: Vec<FusedInteraction<B>>,
    head: FusedFfn<B>,
    use_cmdie: bool,
    use_gap: bool,
}

impl<B: Backend> FusedFdCmdie<B> {
    /// Slice `k` is a copy of `models[k]` (same configuration, `dropout` its
    /// dropout, `max_len` the sum of its sequence lengths).
    pub fn from_models(models: &[&FdCmdie<B>], dropout: f64, max_len: usize) -> Res<Self> {
        let first = models
            .first()
            .ok_or_else(|| TrainError::Backend("no networks to fuse".into()))?;
        let width = first.text.weight.val().dims()[1];
        let device = first.text.weight.val().device();
        let proj = |f: &dyn Fn(&FdCmdie<B>) -> &Projector<B>| {
            FusedProjector::new(&models.iter().map(|m| f(m)).collect::<Vec<_>>(), dropout)
        };
        let layers = (0..first.layers.len())
            .map(|i| {
                let ls: Vec<_> = models.iter().map(|m| &m.layers[i]).collect();
                Ok(FusedInteraction {
                    units: (0..3)
                        .map(|u| {
                            FusedDipu::new(
                                &ls.iter().map(|l| &l.units[u]).collect::<Vec<_>>(),
                                dropout,
                            )
                        })
                        .collect::<Res<_>>()?,
                    gap: FusedGap::new(&ls.iter().map(|l| &l.gap).collect::<Vec<_>>())?,
                })
            })
            .collect::<Res<_>>()?;
        Ok(Self {
            text: FusedLinear::from_linears(&models.iter().map(|m| &m.text).collect::<Vec<_>>())?,
            audio: FusedStackedLstm::new(&models.iter().map(|m| &m.audio).collect::<Vec<_>>())?,
            vision: FusedStackedLstm::new(&models.iter().map(|m| &m.vision).collect::<Vec<_>>())?,
            shared: proj(&|m| &m.shared)?,
            private: (0..3)
                .map(|i| proj(&|m| &m.private[i]))
                .collect::<Res<_>>()?,
            pe: PositionalEncodingConfig::new(width)
                .with_max_sequence_size(max_len.max(1))
                .init(&device),
            layers,
            head: ffn(&models.iter().map(|m| &m.head).collect::<Vec<_>>(), dropout)?,
            use_cmdie: first.use_cmdie,
            use_gap: first.use_gap,
        })
    }

    /// Feature extraction + decoupling. Inputs `[K, B, l_m, d_m]`, `masks`
    /// their real steps (T, V, A).
    pub fn encode(
        &self,
        text: Tensor<B, 4>,
        audio: Tensor<B, 4>,
        vision: Tensor<B, 4>,
        masks: [FusedMask<B>; 3],
    ) -> FusedDecoupled<B> {
        let f = [
            self.text.forward4(text),
            self.vision.forward(vision),
            self.audio.forward(audio),
        ];
        let sim = f.clone().map(|x| self.shared.forward(x));
        let mut m = 0;
        let dis = f.map(|x| {
            let out = self.private[m].forward(x);
            m += 1;
            out
        });
        FusedDecoupled { sim, dis, masks }
    }

    /// Interaction + prediction: `[K, B, 1]`.
    pub fn fuse(&self, dec: FusedDecoupled<B>) -> Tensor<B, 3> {
        let global_mask = dec.global_mask();
        let masks = dec.masks;
        let mut global = Tensor::cat(dec.sim.to_vec(), 2);
        let mut dis = dec.dis;
        if self.use_cmdie {
            for layer in &self.layers {
                let mut enhanced = Vec::with_capacity(3);
                let mut next = Vec::with_capacity(3);
                for ((unit, x), mask) in layer.units.iter().zip(dis).zip(&masks) {
                    let (g, xd) = unit.forward(&self.pe, global.clone(), x, (&global_mask, mask));
                    enhanced.push(g);
                    next.push(xd);
                }
                let [gt, gv, ga]: [Tensor<B, 4>; 3] = enhanced.try_into().expect("three units");
                global = if self.use_gap {
                    layer.gap.forward([gt, gv, ga], &global_mask)
                } else {
                    (gt + gv + ga).div_scalar(3.0)
                };
                dis = next.try_into().expect("three units");
            }
        }
        let [dt, dv, da] = dis;
        let [mt, mv, ma] = &masks;
        let fused = Tensor::cat(
            vec![
                time_mean(global, &global_mask),
                time_mean(dt, mt),
                time_mean(dv, mv),
                time_mean(da, ma),
            ],
            2,
        );
        self.head.forward(fused)
    }

    /// `[K, B, l_m, d_m]` ×3 (with their step masks) → `[K, B, 1]`.
    pub fn forward(
        &self,
        text: Tensor<B, 4>,
        audio: Tensor<B, 4>,
        vision: Tensor<B, 4>,
        masks: [FusedMask<B>; 3],
    ) -> Tensor<B, 3> {
        self.fuse(self.encode(text, audio, vision, masks))
    }
}

/// Every seed's time-pooled features of its `rows` (padded) distinct
/// samples (`[K, 6·rows, d]`, [`FusedDecoupled::contrastive_matrix`])
/// spread over its batch's slots (`[K, 6·n, d]`), as
/// `models::fdcmdie::slot_features` does for one seed (through its
/// [`slot_index`]): `distinct[k].1` gives each slot's row. A slot read twice gets both gradients.
fn fused_slot_features<B: Backend>(
    z: Tensor<B, 3>,
    rows: usize,
    distinct: &[(Vec<usize>, Vec<usize>)],
) -> Tensor<B, 3> {
    let [k, _, d] = z.dims();
    let slots = distinct.first().map_or(0, |(_, s)| s.len());
    let index: Vec<usize> = distinct
        .iter()
        .enumerate()
        .flat_map(|(seed, (_, slot_rows))| {
            slot_index(rows, slot_rows).map(move |i| seed * 6 * rows + i)
        })
        .collect();
    crate::tensor::select_rows(
        z.reshape([k * 6 * rows, d]),
        &crate::tensor::Rows::new(index),
    )
    .reshape([k, 6 * slots, d])
}

fn split_shapes(s: &SeqSplit) -> (usize, [usize; 3], [usize; 3], [usize; 3]) {
    (s.len(), s.text.shape, s.audio.shape, s.vision.shape)
}

/// The fused FD-CMDIE model, its optimiser and every seed's workload (the
/// seeds' own splits, contrastive sets and RNGs; their unfused networks
/// were moved into the fused model).
pub(crate) struct FdCmdieTrainer<B: AutodiffBackend> {
    model: Option<FusedFdCmdie<B>>,
    optim: OptimizerAdaptor<FusedAdamW, FusedFdCmdie<B>, B>,
    seeds: Vec<FdCmdieWorkload<B>>,
    device: B::Device,
}

impl<B: AutodiffBackend> FdCmdieTrainer<B> {
    /// Builds every seed's workload as the unfused trainer does, one after
    /// another (each reseeds `B`'s RNG: the caller holds the training lock).
    pub(crate) fn new(requests: &[TrialRequest], device: &B::Device) -> Res<Self> {
        let mut seeds = Vec::with_capacity(requests.len());
        for req in requests {
            let data = seq_dataset(req)?;
            seeds.push(FdCmdieWorkload::<B>::new(req, data, device)?);
        }
        let shapes = |w: &FdCmdieWorkload<B>| w.splits().map(split_shapes);
        if seeds.iter().any(|w| shapes(w) != shapes(&seeds[0])) {
            return Err(TrainError::Dataset(
                "seed fusion needs every seed's dataset to have the same shapes".into(),
            ));
        }
        let models: Vec<FdCmdie<B>> = seeds
            .iter_mut()
            .map(|w| {
                w.model
                    .take()
                    .ok_or_else(|| TrainError::Backend("unfused network missing".into()))
            })
            .collect::<Res<_>>()?;
        let config = &seeds[0].config;
        let model = FusedFdCmdie::from_models(
            &models.iter().collect::<Vec<_>>(),
            config.dropout,
            config.lens.iter().sum(),
        )?;
        let weight_decay = requests[0].params.f64("weight_decay", 0.0)?;
        let optim = FusedAdamW::new(weight_decay as f32).init::<B, FusedFdCmdie<B>>();
        Ok(Self {
            model: Some(model),
            optim,
            seeds,
            device: device.clone(),
        })
    }

    fn predict(&self, split: fn(&FdCmdieWorkload<B>) -> &SeqSplit) -> Res<Vec<Vec<f32>>> {
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| TrainError::Backend("model lost after a failed step".into()))?
            .valid();
        let splits: Vec<&SeqSplit> = self.seeds.iter().map(split).collect();
        Ok(predict_chunks::<B::InnerBackend>(
            &splits,
            128,
            &self.device,
            |[t, a, v], idx| {
                let masks = stacked_masks(&splits, idx, &self.device);
                values(model.forward(t, a, v, masks))
            },
        ))
    }
}

impl<B: AutodiffBackend> FusedTrainer for FdCmdieTrainer<B> {
    fn train_len(&self) -> usize {
        self.seeds[0].train.len()
    }

    fn batch_size(&self) -> usize {
        self.seeds[0].settings.batch_size
    }

    fn orders(&mut self) -> Vec<Vec<usize>> {
        shuffled_orders(
            self.train_len(),
            self.seeds.iter_mut().map(|w| &mut w.shuffle),
        )
    }

    fn step(&mut self, idx: &[&[usize]], active: &[bool]) -> Res<Vec<f64>> {
        let k = idx.len();
        let b = idx[0].len();
        let s = self.seeds[0].settings.clone();
        let use_cl = s.use_cl && s.lambda_cl > 0.0;
        // Each seed draws its own contrastive samples, as unfused; every
        // seed's batch has the same slots (anchors, then the same number of
        // similar and different slots per anchor), only which are present
        // differs.
        let all: Vec<ClBatch> = self
            .seeds
            .iter_mut()
            .zip(idx)
            .map(|(w, i)| w.extended(i))
            .collect();
        let splits: Vec<&SeqSplit> = self.seeds.iter().map(|w| &w.train).collect();
        // Each seed encodes its batch's distinct samples once, as unfused
        // (so a sample's occurrences share its dropout masks, and slice k
        // draws the masks of seed k's trial): padded to the longest list
        // with copies of its last sample, whose rows are never read.
        let distinct: Vec<(Vec<usize>, Vec<usize>)> = all
            .iter()
            .map(|c| distinct_samples(&c.samples, b))
            .collect();
        let rows = distinct.iter().map(|(d, _)| d.len()).max().unwrap_or(0);
        let padded: Vec<Vec<usize>> = distinct
            .iter()
            .map(|(d, _)| {
                let mut d = d.clone();
                let last = d.last().copied().unwrap_or(0);
                d.resize(rows, last);
                d
            })
            .collect();
        let all_idx: Vec<&[usize]> = padded.iter().map(Vec::as_slice).collect();
        let [t, a, v] = stacked::<B>(&splits, &all_idx, &self.device);
        let masks = stacked_masks::<B>(&splits, &all_idx, &self.device);
        let labels = stacked_labels(&splits, idx);
        let model = self
            .model
            .take()
            .ok_or_else(|| TrainError::Backend("model lost after a failed step".into()))?;
        let dec = model.encode(t, a, v, masks);
        let head = if use_cl { dec.head(b) } else { dec.clone() };
        let pred = model.fuse(head).reshape([k, b]);
        let y = Tensor::<B, 2>::from_data(TensorData::new(labels, [k, b]), &self.device);
        let mae = (pred - y).abs().mean_dim(1).reshape([k]);
        let mae_values = values(mae.clone());
        let (losses, numbers) = if use_cl {
            let per_anchor = all[0].per_anchor;
            let pairs = build_pairs(b, per_anchor, per_anchor);
            let z = fused_slot_features(dec.contrastive_matrix(), rows, &distinct);
            let active: Vec<Vec<bool>> = all.iter().map(|c| c.active.clone()).collect();
            let (nt, tri) = cl_loss_batched(z, &pairs, &active, b, s.tau, s.margin);
            let cl = nt + tri.mul_scalar(s.lambda_tri);
            let cl_values = values(cl.clone());
            let numbers = mae_values
                .iter()
                .zip(&cl_values)
                .map(|(&m, &c)| f64::from(m) + s.lambda_cl * f64::from(c))
                .collect::<Vec<_>>();
            (mae + cl.mul_scalar(s.lambda_cl), numbers)
        } else {
            (mae, mae_values.into_iter().map(f64::from).collect())
        };
        self.model = Some(step_live(
            model,
            &mut self.optim,
            s.lr,
            losses,
            &numbers,
            active,
        ));
        Ok(numbers)
    }

    fn evaluate(&self) -> Res<Vec<(BTreeMap<String, f64>, BTreeMap<String, f64>)>> {
        let valid = self.predict(|w| &w.valid)?;
        let test = self.predict(|w| &w.test)?;
        Ok(self
            .seeds
            .iter()
            .zip(valid.iter().zip(&test))
            .map(|(w, (v, t))| {
                (
                    regression_metrics(&w.valid.labels, v),
                    regression_metrics(&w.test.labels, t),
                )
            })
            .collect())
    }
}
