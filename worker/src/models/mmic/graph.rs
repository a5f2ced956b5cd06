//! The multimodal dialogue graph (MM-DFN `create_big_adj`) and the deep
//! GCN with gated dynamic fusion (MM-DFN `GCNII_lyc`, spec C.5–C.6).

use burn::module::Module;
use burn::nn::{Dropout, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::losses::normalize;
use super::rnn::Cell;

/// Edge weight of every ordered pair of rows of `x`:
/// `1 − arccos(0.99999 · cos(x_i, x_j)) / π`, `[n, n]`.
pub fn edge_weights<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let xn = normalize(x);
    let cos = xn.clone().matmul(xn.transpose()).clamp(-1.0, 1.0);
    (cos * 0.99999).acos().neg() / std::f64::consts::PI + 1.0
}

/// 0/1 edge mask of the `3N`-node graph in the node order
/// `[all audio; all visual; all text]` (each block in utterance order):
/// intra-modal edges between all utterances of the same dialogue (self
/// loops included), inter-modal edges between the nodes of the same
/// utterance. `dialogue_of[i]`: the dialogue of utterance `i`. Row-major
/// `[3N × 3N]`.
pub fn graph_mask(dialogue_of: &[usize]) -> Vec<f32> {
    let n = dialogue_of.len();
    let nn = 3 * n;
    let mut m = vec![0f32; nn * nn];
    // Utterances of a dialogue are contiguous: find each one's range.
    let mut start = vec![0usize; n];
    let mut end = vec![0usize; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && dialogue_of[j] == dialogue_of[i] {
            j += 1;
        }
        for k in i..j {
            start[k] = i;
            end[k] = j;
        }
        i = j;
    }
    for ma in 0..3 {
        for mb in 0..3 {
            for i in 0..n {
                let row = (ma * n + i) * nn + mb * n;
                if ma == mb {
                    for j in start[i]..end[i] {
                        m[row + j] = 1.0;
                    }
                } else {
                    m[row + i] = 1.0;
                }
            }
        }
    }
    m
}

/// `D^{-1/2} (W ⊙ M) D^{-1/2}` with `W = edge_weights(x)`, `M` the edge
/// mask and `D` the row sums.
pub fn normalized_adjacency<B: Backend>(x: Tensor<B, 2>, mask: Tensor<B, 2>) -> Tensor<B, 2> {
    let a = edge_weights(x) * mask;
    let dinv = a.clone().sum_dim(1).clamp_min(1e-12).powf_scalar(-0.5);
    a * dinv.clone() * dinv.transpose()
}

/// `GCNII_lyc` with `variant`, `reason_flag` (LSTM gate across layers) and
/// `use_residue`.
#[derive(Module, Debug)]
pub struct DeepGcn<B: Backend> {
    fc0: Linear<B>,
    cell: Cell<B>,
    convs: Vec<Linear<B>>,
}

impl<B: Backend> DeepGcn<B> {
    pub fn new(d_in: usize, hidden: usize, layers: usize, device: &B::Device) -> Self {
        let k = 1.0 / (hidden as f64).sqrt();
        Self {
            fc0: LinearConfig::new(d_in, hidden).init(device),
            cell: Cell::lstm(hidden, hidden, device),
            convs: (0..layers)
                .map(|_| {
                    LinearConfig::new(2 * hidden, hidden)
                        .with_bias(false)
                        .with_initializer(Initializer::Uniform { min: -k, max: k })
                        .init(device)
                })
                .collect(),
        }
    }

    pub fn layers(&self) -> usize {
        self.convs.len()
    }

    /// One graph convolution: `S = Â Ĥ`,
    /// `θ·[S ‖ H0] W + (1 − θ)·((1 − α) S + α H0)` (before ReLU).
    pub fn conv(
        conv: &Linear<B>,
        adj: Tensor<B, 2>,
        hhat: Tensor<B, 2>,
        h0: Tensor<B, 2>,
        alpha: f64,
        theta: f64,
    ) -> Tensor<B, 2> {
        let s = adj.matmul(hhat);
        let support = Tensor::cat(vec![s.clone(), h0.clone()], 1);
        let r = s * (1.0 - alpha) + h0 * alpha;
        conv.forward(support) * theta + r * (1.0 - theta)
    }

    /// `x`: `[3N, d_in]`, `adj`: normalised `[3N, 3N]`. Returns
    /// `[dropout(x) ‖ H_K]`, `[3N, d_in + hidden]`.
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        adj: Tensor<B, 2>,
        alpha: f64,
        lambda: f64,
        dropout: &Dropout,
    ) -> Tensor<B, 2> {
        let x = dropout.forward(x);
        let h0 = relu(self.fc0.forward(x.clone()));
        let mut h = dropout.forward(h0.clone());
        let mut hs = Tensor::zeros(h.dims(), &h.device());
        let mut cs = hs.clone();
        for (i, conv) in self.convs.iter().enumerate() {
            let k = (i + 1) as f64;
            let theta = (lambda / k + 1.0).ln();
            let q = h;
            (hs, cs) = self.cell.step(q.clone(), hs, cs);
            let z = Self::conv(conv, adj.clone(), hs.clone(), h0.clone(), alpha, theta);
            h = dropout.forward(relu(z)) + q;
        }
        Tensor::cat(vec![x, h], 1)
    }
}
