//! The MMIC / MM-DFN network and MMIC's mutual-information heads.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::batch::HostBatch;
use super::graph::{BlockGraph, BlockLayout, DeepGcn};
use super::rnn::BiRnn;
use crate::tensor::{Rows, dropout, linear, select_rows, tanh};

/// Sizes and switches of the network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub dims: [usize; 3],
    pub n_classes: usize,
    /// Modality width (MM-DFN 200; per direction `hidden / 2`).
    pub hidden: usize,
    /// GCN width (MM-DFN 100).
    pub graph_hidden: usize,
    pub layers: usize,
    /// `lstm` (MMIC paper) or `gru` (MM-DFN) text encoder.
    pub text_lstm: bool,
    pub text_layers: usize,
    pub dropout: f64,
    /// Speaker weights `[γ_a, γ_v, γ_t]`.
    pub gammas: [f64; 3],
    pub gcn_alpha: f64,
    pub gcn_lambda: f64,
    /// Width of the BA entropy projection.
    pub ent_dim: usize,
}

/// Network outputs for one batch.
pub struct Forward<B: Backend> {
    /// Node features `x^a, x^v, x^t` (graph inputs), `[N, hidden]` each.
    pub e: [Tensor<B, 2>; 3],
    /// Fusion `[x^a ‖ o^a ‖ x^v ‖ o^v ‖ x^t ‖ o^t]`, `[N, 3(hidden + graph_hidden)]`.
    pub f: Tensor<B, 2>,
    pub logits: Tensor<B, 2>,
}

#[derive(Module, Debug)]
pub struct MmicNet<B: Backend> {
    text_in: Linear<B>,
    text_rnn: BiRnn<B>,
    audio_in: Linear<B>,
    visual_in: Linear<B>,
    party: BiRnn<B>,
    gcn: DeepGcn<B>,
    classifier: Linear<B>,
    /// CPC predictors `G_φ^m: fusion → modality` for a, v, t.
    pub cpc: Vec<Linear<B>>,
    dropout: Dropout,
}

fn t2<B: Backend>(v: Vec<f32>, shape: [usize; 2], device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn idx<B: Backend>(v: Vec<i64>, device: &B::Device) -> Tensor<B, 1, Int> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

impl<B: Backend> MmicNet<B> {
    pub fn new(c: &NetConfig, device: &B::Device) -> Self {
        let h = c.hidden;
        let fused = 3 * (h + c.graph_hidden);
        Self {
            text_in: LinearConfig::new(c.dims[0], h).init(device),
            text_rnn: BiRnn::new(c.text_lstm, h, h, c.text_layers, device),
            audio_in: LinearConfig::new(c.dims[1], h).init(device),
            visual_in: LinearConfig::new(c.dims[2], h).init(device),
            party: BiRnn::new(false, h, h, 2, device),
            gcn: DeepGcn::new(h, c.graph_hidden, c.layers, device),
            classifier: LinearConfig::new(fused, c.n_classes).init(device),
            cpc: (0..3)
                .map(|_| LinearConfig::new(fused, h).init(device))
                .collect(),
            dropout: DropoutConfig::new(c.dropout).init(),
        }
    }

    pub fn forward(&self, hb: &HostBatch, c: &NetConfig, device: &B::Device) -> Forward<B> {
        let n = hb.n;
        let [dt, da, dv] = hb.dims;
        let h = c.hidden;
        // Modality encoders (eq. 1-2).
        // Each step projected from its own rows: slicing one projection of
        // all steps would cost a zero-filled gradient of every step's size
        // per step in the backward pass (quadratic in the dialogue length).
        let steps: Vec<Tensor<B, 2>> = hb
            .text_tm
            .chunks_exact(hb.b * dt)
            .take(hb.t_max)
            .map(|rows| linear(&self.text_in, t2::<B>(rows.to_vec(), [hb.b, dt], device)))
            .collect();
        let masks: Vec<Option<Tensor<B, 2>>> = hb
            .text_masks
            .iter()
            .map(|m| m.as_ref().map(|m| t2::<B>(m.clone(), [hb.b, 1], device)))
            .collect();
        let out = self.text_rnn.forward(steps, &masks, &self.dropout);
        let l = Tensor::cat(out, 0).select(0, idx::<B>(hb.text_valid.clone(), device));
        let lp = linear(&self.text_in, t2::<B>(hb.text.clone(), [n, dt], device));
        let a = linear(&self.audio_in, t2::<B>(hb.audio.clone(), [n, da], device));
        let v = linear(&self.visual_in, t2::<B>(hb.visual.clone(), [n, dv], device));
        // Speaker encoder (eq. 3-4): one shared 2-layer BiGRU over every
        // speaker's own utterances, for the modalities with γ ≠ 0.
        let inputs = [a.clone(), v.clone(), lp];
        let active: Vec<usize> = (0..3).filter(|&m| c.gammas[m] != 0.0).collect();
        let mut e = [a, v, l];
        if !active.is_empty() && hb.q > 0 {
            let mm = active.len();
            let q = hb.q;
            let rows: Vec<Tensor<B, 2>> = active.iter().map(|&m| inputs[m].clone()).collect();
            let all = Tensor::cat(rows, 0);
            // Padding slots read the zero row past the end of `all`.
            let pad = mm * n;
            let steps: Vec<Tensor<B, 2>> = hb
                .party_steps
                .iter()
                .map(|s| {
                    let ids: Vec<usize> = (0..mm)
                        .flat_map(|mi| {
                            s.iter().map(move |&u| {
                                if u == n as i64 {
                                    pad
                                } else {
                                    u as usize + mi * n
                                }
                            })
                        })
                        .collect();
                    select_rows(all.clone(), &Rows::new(ids))
                })
                .collect();
            let masks: Vec<Option<Tensor<B, 2>>> = hb
                .party_masks
                .iter()
                .map(|m| {
                    m.as_ref().map(|m| {
                        let rep: Vec<f32> = (0..mm).flat_map(|_| m.iter().copied()).collect();
                        t2::<B>(rep, [mm * q, 1], device)
                    })
                })
                .collect();
            let out = Tensor::cat(self.party.forward(steps, &masks, &self.dropout), 0);
            for (mi, &m) in active.iter().enumerate() {
                let back: Vec<i64> = hb
                    .party_pos
                    .iter()
                    .map(|&(s, qq)| (s * mm * q + mi * q + qq) as i64)
                    .collect();
                let p = out.clone().select(0, idx::<B>(back, device));
                e[m] = e[m].clone() + p * c.gammas[m];
            }
        }
        // Graph fusion (3.2).
        let x = Tensor::cat(e.to_vec(), 0);
        let graph = BlockGraph::new(x.clone(), &BlockLayout::new(&hb.dialogue_of));
        let out = self
            .gcn
            .forward(x, &graph, c.gcn_alpha, c.gcn_lambda, &self.dropout);
        let w = h + c.graph_hidden;
        let f = Tensor::cat(
            (0..3)
                .map(|m| out.clone().slice([m * n..(m + 1) * n, 0..w]))
                .collect(),
            1,
        );
        let logits = self
            .classifier
            .forward(relu(dropout(&self.dropout, f.clone())));
        Forward { e, f, logits }
    }
}

/// Barber–Agakov head for one pair `(x, y)`: Gaussian predictor
/// `q(y|x) = N(μ(x), diag σ²(x))` (two-layer MLPs) and the fixed entropy
/// projection `ỹ = tanh(P y)`.
#[derive(Module, Debug)]
pub struct BaHead<B: Backend> {
    mu1: Linear<B>,
    mu2: Linear<B>,
    lv1: Linear<B>,
    lv2: Linear<B>,
    ent: Linear<B>,
}

fn lin_fwd<B: Backend>(l: &Linear<B>, x: Tensor<B, 2>, detach: bool) -> Tensor<B, 2> {
    let (mut w, mut b) = (l.weight.val(), l.bias.as_ref().map(|b| b.val()));
    if detach {
        w = w.detach();
        b = b.map(|b| b.detach());
    }
    let y = x.matmul(w);
    match b {
        Some(b) => y + b.unsqueeze_dim(0),
        None => y,
    }
}

impl<B: Backend> BaHead<B> {
    pub fn new(dx: usize, dy: usize, ent_dim: usize, device: &B::Device) -> Self {
        Self {
            mu1: LinearConfig::new(dx, dy).init(device),
            mu2: LinearConfig::new(dy, dy).init(device),
            lv1: LinearConfig::new(dx, dy).init(device),
            lv2: LinearConfig::new(dy, dy).init(device),
            ent: LinearConfig::new(dy, ent_dim).init(device),
        }
    }

    /// `(μ, log σ²)`; with `detach_params` the head's own parameters get
    /// no gradient (the main loss uses the head as a fixed estimator).
    pub fn predict(&self, x: Tensor<B, 2>, detach_params: bool) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let mu = lin_fwd(
            &self.mu2,
            relu(lin_fwd(&self.mu1, x.clone(), detach_params)),
            detach_params,
        );
        let lv = lin_fwd(
            &self.lv2,
            relu(lin_fwd(&self.lv1, x, detach_params)),
            detach_params,
        );
        (mu, lv.clamp(-10.0, 10.0))
    }

    /// `tanh(P y)` with `P` never trained (MMIM quirk: its entropy
    /// projection stays at initialisation).
    pub fn project(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        tanh(lin_fwd(&self.ent, y, true))
    }
}

/// The BA heads for (text → audio) and (text → visual).
#[derive(Module, Debug)]
pub struct MiNet<B: Backend> {
    pub heads: Vec<BaHead<B>>,
}

/// The trained model: the network (main optimiser) and the MI heads
/// (their own optimiser, MMIM stage 0).
#[derive(Module, Debug)]
pub struct Mmic<B: Backend> {
    pub net: MmicNet<B>,
    pub mi: MiNet<B>,
}

impl<B: Backend> Mmic<B> {
    pub fn new(c: &NetConfig, device: &B::Device) -> Self {
        Self {
            net: MmicNet::new(c, device),
            mi: MiNet {
                heads: (0..2)
                    .map(|_| BaHead::new(c.hidden, c.hidden, c.ent_dim, device))
                    .collect(),
            },
        }
    }
}
