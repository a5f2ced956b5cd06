//! FD-CMDIE network: feature extraction (§2.2), decoupling encoders
//! (§2.3.1), DIPU layers (§2.4.1), gated attention pooling (§2.4.2) and the
//! prediction MLP (eq. 30). See the parent module for the \[design\] choices.

use burn::nn::attention::{MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::{
    Dropout, DropoutConfig, LayerNorm, Linear, LinearConfig, Lstm, LstmConfig, PositionalEncoding,
    PositionalEncodingConfig, Relu,
};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::tensor;
use crate::tensor::attention::{self, KeyValue};
use crate::tensor::cpu::Activation;

/// Architecture settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FdCmdieConfig {
    /// Input feature dims `[text, audio, vision]`.
    pub dims: [usize; 3],
    /// Sequence lengths `[text, audio, vision]` after temporal pooling.
    pub lens: [usize; 3],
    pub width: usize,
    pub heads: usize,
    pub layers: usize,
    pub dropout: f64,
    pub lstm_layers: usize,
    pub use_cmdie: bool,
    pub use_gap: bool,
    pub use_cross_att2: bool,
}

/// Which time steps of a `[b, l, ·]` sequence are real (`[b, l]`, 1 for a
/// frame, 0 for padding); `None` when every step of every sample is.
pub type StepMask<B> = Option<Tensor<B, 2>>;

/// Mean over the real time steps: `[b, l, d] → [b, d]` (the plain mean
/// without a mask).
pub fn masked_time_mean<B: Backend>(x: Tensor<B, 3>, mask: &StepMask<B>) -> Tensor<B, 2> {
    match mask {
        None => tensor::mean_steps(x),
        Some(m) => {
            let [b, l] = m.dims();
            let count = m.clone().sum_dim(1).clamp_min(1.0); // [b, 1]
            (x * m.clone().reshape([b, l, 1])).sum_dim(1).squeeze_dim(1) / count
        }
    }
}

/// The padding of a step mask as attention wants it (true = padding).
pub fn padding<B: Backend>(mask: &StepMask<B>) -> Option<Tensor<B, 2, Bool>> {
    mask.as_ref().map(|m| m.clone().lower_elem(0.5))
}

/// The step mask of sequences concatenated along time (`None` parts are
/// all real).
pub fn concat_masks<B: Backend>(
    parts: &[(&StepMask<B>, usize)],
    b: usize,
    device: &B::Device,
) -> StepMask<B> {
    if parts.iter().all(|(m, _)| m.is_none()) {
        return None;
    }
    Some(Tensor::cat(
        parts
            .iter()
            .map(|(m, l)| match m {
                Some(m) => m.clone(),
                None => Tensor::ones([b, *l], device),
            })
            .collect(),
        1,
    ))
}

/// LayerNorm → Linear → Tanh → Dropout, per time step (§2.3.1).
#[derive(Module, Debug)]
pub struct Projector<B: Backend> {
    pub(crate) norm: LayerNorm<B>,
    pub(crate) linear: Linear<B>,
    pub(crate) dropout: Dropout,
}

impl<B: Backend> Projector<B> {
    pub fn new(width: usize, dropout: f64, device: &B::Device) -> Self {
        Self {
            norm: tensor::layer_norm_config(width).init(device),
            linear: LinearConfig::new(width, width).init(device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let y = tensor::linear_nd(&self.linear, tensor::layer_norm(&self.norm, x));
        tensor::activation_dropout(&self.dropout, Activation::Tanh, y)
    }
}

/// Unidirectional LSTMs stacked (sLSTM = stacked LSTM, §2.2).
#[derive(Module, Debug)]
pub struct StackedLstm<B: Backend> {
    pub(crate) layers: Vec<Lstm<B>>,
}

impl<B: Backend> StackedLstm<B> {
    pub fn new(d_input: usize, width: usize, layers: usize, device: &B::Device) -> Self {
        Self {
            layers: (0..layers.max(1))
                .map(|l| {
                    LstmConfig::new(if l == 0 { d_input } else { width }, width, true).init(device)
                })
                .collect(),
        }
    }

    pub fn forward(&self, mut x: Tensor<B, 3>) -> Tensor<B, 3> {
        for l in &self.layers {
            x = crate::tensor::lstm_sequence(l, x);
        }
        x
    }
}

/// Two-layer feed-forward block.
#[derive(Module, Debug)]
pub struct Ffn<B: Backend> {
    pub(crate) l1: Linear<B>,
    pub(crate) l2: Linear<B>,
    pub(crate) relu: Relu,
    pub(crate) dropout: Dropout,
}

impl<B: Backend> Ffn<B> {
    pub fn new(
        d_in: usize,
        d_hidden: usize,
        d_out: usize,
        dropout: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            l1: LinearConfig::new(d_in, d_hidden).init(device),
            l2: LinearConfig::new(d_hidden, d_out).init(device),
            relu: Relu::new(),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let h = tensor::linear_nd(&self.l1, x);
        tensor::linear_nd(
            &self.l2,
            tensor::activation_dropout(&self.dropout, Activation::Relu, h),
        )
    }
}

/// Deep interaction promotion unit (eqs. 13–24) between the global
/// similarity sequence `G` and one dissimilarity sequence `X_d`.
#[derive(Module, Debug)]
pub struct Dipu<B: Backend> {
    pub(crate) ln_g0: LayerNorm<B>,
    pub(crate) ln_x0: LayerNorm<B>,
    /// Query G, key/value X (eqs. 16 and 21).
    pub(crate) cross_g: MultiHeadAttention<B>,
    /// Query X, key/value G (eqs. 17 and 22).
    pub(crate) cross_x: MultiHeadAttention<B>,
    pub(crate) ln_g1: LayerNorm<B>,
    pub(crate) ln_x1: LayerNorm<B>,
    pub(crate) self_g: MultiHeadAttention<B>,
    pub(crate) self_x: MultiHeadAttention<B>,
    pub(crate) ln_g2: LayerNorm<B>,
    pub(crate) ln_x2: LayerNorm<B>,
    pub(crate) ln_g3: LayerNorm<B>,
    pub(crate) ln_x3: LayerNorm<B>,
    pub(crate) ffn_g: Ffn<B>,
    pub(crate) ffn_x: Ffn<B>,
    pub(crate) cross2: bool,
}

impl<B: Backend> Dipu<B> {
    pub fn new(width: usize, heads: usize, dropout: f64, cross2: bool, device: &B::Device) -> Self {
        let ln = || tensor::layer_norm_config(width).init(device);
        let mha = || {
            MultiHeadAttentionConfig::new(width, heads)
                .with_dropout(dropout)
                .init(device)
        };
        Self {
            ln_g0: ln(),
            ln_x0: ln(),
            cross_g: mha(),
            cross_x: mha(),
            ln_g1: ln(),
            ln_x1: ln(),
            self_g: mha(),
            self_x: mha(),
            ln_g2: ln(),
            ln_x2: ln(),
            ln_g3: ln(),
            ln_x3: ln(),
            ffn_g: Ffn::new(width, 4 * width, width, dropout, device),
            ffn_x: Ffn::new(width, 4 * width, width, dropout, device),
            cross2,
        }
    }

    /// `g: [b, lg, d]`, `x: [b, lx, d]` → (`G_{sX→G}` `[b, lg, d]`, `X_d'`
    /// `[b, lx, d]`). Padding steps of `g` and `x` (their masks) are never
    /// attended to as keys.
    pub fn forward(
        &self,
        pe: &PositionalEncoding<B>,
        g: Tensor<B, 3>,
        x: Tensor<B, 3>,
        masks: (&StepMask<B>, &StepMask<B>),
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (pad_g, pad_x) = (padding(masks.0), padding(masks.1));
        let ln = |n: &LayerNorm<B>, x: Tensor<B, 3>| tensor::layer_norm(n, x);
        // LN(sublayer + residual) (eqs. 16–17, 19–22) as one node.
        let add_ln = |n: &LayerNorm<B>, y: Tensor<B, 3>, residual: Tensor<B, 3>| {
            tensor::add_layer_norm(n, y, residual)
        };
        // (13)-(14): add position, normalise.
        let g0 = ln(&self.ln_g0, pe.forward(g));
        let x0 = ln(&self.ln_x0, pe.forward(x));
        let att =
            |m: &MultiHeadAttention<B>,
             q: Tensor<B, 3>,
             kv: &KeyValue<B>,
             pad: &Option<Tensor<B, 2, Bool>>| attention::attend(m, q, kv, pad);
        // The first and the second cross-attention attend to the same
        // position-encoded inputs under the same weights: their keys and
        // values are projected once.
        let kv_x0 = attention::key_value(&self.cross_g, x0.clone());
        let kv_g0 = attention::key_value(&self.cross_x, g0.clone());
        // (16)-(17): first cross-attention.
        let g1 = add_ln(
            &self.ln_g1,
            att(&self.cross_g, g0.clone(), &kv_x0, &pad_x),
            g0,
        );
        let x1 = add_ln(
            &self.ln_x1,
            att(&self.cross_x, x0.clone(), &kv_g0, &pad_g),
            x0,
        );
        // (19)-(20): self-attention.
        let self_kv =
            |m: &MultiHeadAttention<B>, t: &Tensor<B, 3>| attention::key_value(m, t.clone());
        let g2 = add_ln(
            &self.ln_g2,
            att(
                &self.self_g,
                g1.clone(),
                &self_kv(&self.self_g, &g1),
                &pad_g,
            ),
            g1,
        );
        let x2 = add_ln(
            &self.ln_x2,
            att(
                &self.self_x,
                x1.clone(),
                &self_kv(&self.self_x, &x1),
                &pad_x,
            ),
            x1,
        );
        // (21)-(22): second cross-attention against the position-encoded inputs,
        // with the projections of the first one.
        let (g3, x3) = if self.cross2 {
            (
                add_ln(
                    &self.ln_g3,
                    att(&self.cross_g, g2.clone(), &kv_x0, &pad_x),
                    g2,
                ),
                add_ln(
                    &self.ln_x3,
                    att(&self.cross_x, x2.clone(), &kv_g0, &pad_g),
                    x2,
                ),
            )
        } else {
            (g2, x2)
        };
        // (23)-(24): FFN with residual.
        (
            self.ffn_g.forward(g3.clone()) + g3,
            self.ffn_x.forward(x3.clone()) + x3,
        )
    }
}

/// Gated attention pooling (eqs. 25–29) over the three enhanced global
/// similarity sequences.
#[derive(Module, Debug)]
pub struct Gap<B: Backend> {
    pub(crate) norms: Vec<LayerNorm<B>>,
    pub(crate) gates: Vec<Ffn<B>>,
    pub(crate) score: Ffn<B>,
}

/// What [`Gap::forward`] returns.
#[derive(Debug, Clone)]
pub struct GapOutput<B: Backend> {
    /// `G_s^{[i+1]}` `[b, l, d]`.
    pub pooled: Tensor<B, 3>,
    /// Softmax weights `α` `[b, 3]` (T, V, A).
    pub weights: Tensor<B, 2>,
    /// Sigmoid gates `g` `[b, 3]`.
    pub gates: Tensor<B, 2>,
}

impl<B: Backend> Gap<B> {
    pub fn new(width: usize, device: &B::Device) -> Self {
        let hidden = (width / 2).max(1);
        Self {
            norms: (0..3)
                .map(|_| tensor::layer_norm_config(width).init(device))
                .collect(),
            gates: (0..3)
                .map(|_| Ffn::new(width, hidden, 1, 0.0, device))
                .collect(),
            score: Ffn::new(width, hidden, 1, 0.0, device),
        }
    }

    /// The three enhanced sequences share the global sequence's `mask`.
    pub fn forward(&self, gs: [Tensor<B, 3>; 3], mask: &StepMask<B>) -> GapOutput<B> {
        let mut gated = Vec::with_capacity(3);
        let mut gates = Vec::with_capacity(3);
        let mut scores = Vec::with_capacity(3);
        for (m, g) in gs.into_iter().enumerate() {
            let normed = tensor::layer_norm(&self.norms[m], g);
            // (25): scalar gate from the time-pooled normalised sequence.
            let gate =
                tensor::sigmoid(self.gates[m].forward(masked_time_mean(normed.clone(), mask))); // [b, 1]
            let [b, _] = gate.dims();
            // (26)
            let gm = normed * gate.clone().reshape([b, 1, 1]);
            // (27): attention score from the time-pooled gated sequence.
            scores.push(self.score.forward(masked_time_mean(gm.clone(), mask)));
            gates.push(gate);
            gated.push(gm);
        }
        // (28)
        let weights = softmax(Tensor::cat(scores, 1), 1); // [b, 3]
        let [b, _] = weights.dims();
        // (29)
        let pooled = gated
            .into_iter()
            .enumerate()
            .map(|(m, g)| g * weights.clone().slice([0..b, m..m + 1]).reshape([b, 1, 1]))
            .reduce(|a, c| a + c)
            .expect("three modalities");
        GapOutput {
            pooled,
            weights,
            gates: Tensor::cat(gates, 1),
        }
    }
}

/// One interaction layer: a DIPU per modality (T, V, A) and the GAP that
/// builds the next global similarity sequence.
#[derive(Module, Debug)]
pub struct InteractionLayer<B: Backend> {
    pub(crate) units: Vec<Dipu<B>>,
    pub(crate) gap: Gap<B>,
}

/// Decoupled features of a batch, modalities in the order (T, V, A).
#[derive(Debug, Clone)]
pub struct Decoupled<B: Backend> {
    /// Similarity features `T_s, V_s, A_s` `[b, l_m, d]`.
    pub sim: [Tensor<B, 3>; 3],
    /// Dissimilarity features `T_d, V_d, A_d` `[b, l_m, d]`.
    pub dis: [Tensor<B, 3>; 3],
    /// Real time steps of each modality (T, V, A; `None`: all).
    pub masks: [StepMask<B>; 3],
}

impl<B: Backend> Decoupled<B> {
    /// The first `n` samples.
    pub fn head(&self, n: usize) -> Self {
        let cut = |x: &Tensor<B, 3>| tensor::leading_rows(x.clone(), n);
        let cut_mask = |m: &StepMask<B>| {
            m.as_ref().map(|m| {
                let [_, l] = m.dims();
                m.clone().slice([0..n, 0..l])
            })
        };
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

    /// The step mask of the similarity sequences concatenated along time
    /// (`G_s^{[0]}`).
    pub fn global_mask(&self) -> StepMask<B> {
        let [b, _, _] = self.sim[0].dims();
        let device = self.sim[0].device();
        let parts: Vec<(&StepMask<B>, usize)> = self
            .masks
            .iter()
            .zip(&self.sim)
            .map(|(m, x)| (m, x.dims()[1]))
            .collect();
        concat_masks(&parts, b, &device)
    }

    /// Time-pooled features (over the real steps) stacked as `[T_s; V_s;
    /// A_s; T_d; V_d; A_d]` (`[6·b, d]`), the layout of
    /// [`super::contrastive::build_pairs`].
    pub fn contrastive_matrix(&self) -> Tensor<B, 2> {
        Tensor::cat(
            self.sim
                .iter()
                .chain(self.dis.iter())
                .zip(self.masks.iter().chain(self.masks.iter()))
                .map(|(x, m)| masked_time_mean(x.clone(), m))
                .collect(),
            0,
        )
    }
}

/// Intermediate outputs of the fusion network (for tests and inspection).
#[derive(Debug, Clone)]
pub struct FusionOutput<B: Backend> {
    /// Final global similarity sequence `G_s^{[k]}` `[b, lt + lv + la, d]`.
    pub global: Tensor<B, 3>,
    /// Final dissimilarity sequences `T_d, V_d, A_d`.
    pub dis: [Tensor<B, 3>; 3],
    /// GAP weights of every layer `[b, 3]` (empty without GAP or CMDIE).
    pub gap_weights: Vec<Tensor<B, 2>>,
    /// Prediction `[b, 1]`.
    pub prediction: Tensor<B, 2>,
}

#[derive(Module, Debug)]
pub struct FdCmdie<B: Backend> {
    /// Text encoder (`text_encoder = "linear"`): Linear(d_t → width) per token.
    pub(crate) text: Linear<B>,
    pub(crate) audio: StackedLstm<B>,
    pub(crate) vision: StackedLstm<B>,
    /// Shared similarity encoder `E_s`.
    pub(crate) shared: Projector<B>,
    /// Private dissimilarity encoders `E_d^T, E_d^V, E_d^A`.
    pub(crate) private: Vec<Projector<B>>,
    pub(crate) pe: PositionalEncoding<B>,
    pub(crate) layers: Vec<InteractionLayer<B>>,
    pub(crate) head: Ffn<B>,
    pub(crate) use_cmdie: bool,
    pub(crate) use_gap: bool,
}

impl<B: Backend> FdCmdie<B> {
    pub fn new(c: &FdCmdieConfig, device: &B::Device) -> Self {
        let w = c.width;
        let max_len = c.lens.iter().sum::<usize>().max(1);
        Self {
            text: LinearConfig::new(c.dims[0], w).init(device),
            audio: StackedLstm::new(c.dims[1], w, c.lstm_layers, device),
            vision: StackedLstm::new(c.dims[2], w, c.lstm_layers, device),
            shared: Projector::new(w, c.dropout, device),
            private: (0..3)
                .map(|_| Projector::new(w, c.dropout, device))
                .collect(),
            pe: PositionalEncodingConfig::new(w)
                .with_max_sequence_size(max_len)
                .init(device),
            layers: if c.use_cmdie {
                (0..c.layers)
                    .map(|_| InteractionLayer {
                        units: (0..3)
                            .map(|_| Dipu::new(w, c.heads, c.dropout, c.use_cross_att2, device))
                            .collect(),
                        gap: Gap::new(w, device),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            head: Ffn::new(4 * w, w, 1, c.dropout, device),
            use_cmdie: c.use_cmdie,
            use_gap: c.use_gap,
        }
    }

    /// Feature extraction + decoupling. Inputs `[b, l_m, d_m]`, every step
    /// real.
    pub fn encode(
        &self,
        text: Tensor<B, 3>,
        audio: Tensor<B, 3>,
        vision: Tensor<B, 3>,
    ) -> Decoupled<B> {
        self.encode_masked(text, audio, vision, [None, None, None])
    }

    /// [`Self::encode`] of sequences with padding: `masks` (T, V, A) mark
    /// the real steps. The extraction is per step (Linear) or causal (the
    /// unidirectional LSTMs), so trailing padding never reaches a real
    /// step; the masks go with the features to every later pooling and
    /// attention.
    pub fn encode_masked(
        &self,
        text: Tensor<B, 3>,
        audio: Tensor<B, 3>,
        vision: Tensor<B, 3>,
        masks: [StepMask<B>; 3],
    ) -> Decoupled<B> {
        let f = [
            tensor::linear_nd(&self.text, text),
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
        Decoupled { sim, dis, masks }
    }

    /// Cross-modal deep interaction + prediction.
    pub fn fuse(&self, dec: Decoupled<B>) -> FusionOutput<B> {
        // [design] G_s^{[0]}: the similarity sequences concatenated along time.
        let global_mask = dec.global_mask();
        let masks = dec.masks;
        let mut global = Tensor::cat(dec.sim.to_vec(), 1);
        let mut dis = dec.dis;
        let mut gap_weights = Vec::new();
        if self.use_cmdie {
            for layer in &self.layers {
                let mut enhanced = Vec::with_capacity(3);
                let mut next = Vec::with_capacity(3);
                for ((unit, x), mask) in layer.units.iter().zip(dis).zip(&masks) {
                    let (g, xd) = unit.forward(&self.pe, global.clone(), x, (&global_mask, mask));
                    enhanced.push(g);
                    next.push(xd);
                }
                let [gt, gv, ga]: [Tensor<B, 3>; 3] = enhanced.try_into().expect("three units");
                global = if self.use_gap {
                    let out = layer.gap.forward([gt, gv, ga], &global_mask);
                    gap_weights.push(out.weights);
                    out.pooled
                } else {
                    (gt + gv + ga).div_scalar(3.0)
                };
                dis = next.try_into().expect("three units");
            }
        }
        let fused = Tensor::cat(
            vec![
                masked_time_mean(global.clone(), &global_mask),
                masked_time_mean(dis[0].clone(), &masks[0]),
                masked_time_mean(dis[1].clone(), &masks[1]),
                masked_time_mean(dis[2].clone(), &masks[2]),
            ],
            1,
        );
        let prediction = self.head.forward(fused);
        FusionOutput {
            global,
            dis,
            gap_weights,
            prediction,
        }
    }

    /// `[b, l_m, d_m]` ×3 → `[b, 1]`.
    pub fn forward(
        &self,
        text: Tensor<B, 3>,
        audio: Tensor<B, 3>,
        vision: Tensor<B, 3>,
    ) -> Tensor<B, 2> {
        self.forward_masked(text, audio, vision, [None, None, None])
    }

    /// [`Self::forward`] of padded sequences (`masks`: T, V, A).
    pub fn forward_masked(
        &self,
        text: Tensor<B, 3>,
        audio: Tensor<B, 3>,
        vision: Tensor<B, 3>,
        masks: [StepMask<B>; 3],
    ) -> Tensor<B, 2> {
        self.fuse(self.encode_masked(text, audio, vision, masks))
            .prediction
    }
}
