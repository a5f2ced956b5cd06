//! The multimodal dialogue graph (MM-DFN `create_big_adj`) and the deep
//! GCN with gated dynamic fusion (MM-DFN `GCNII_lyc`, spec C.5–C.6).

use burn::module::Module;
use burn::nn::{Dropout, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::losses::normalize;
use super::rnn::Cell;
use crate::tensor::{self, Rows, linear, select_rows};

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

/// Where each node of the `3N`-node graph sits when the graph is handled
/// blockwise: its adjacency is block-diagonal by dialogue (intra-modal edges
/// join the utterances of one dialogue; inter-modal edges join the three
/// nodes of one utterance), so [`BlockGraph`] keeps one `L×L` block per
/// (modality, dialogue), padded to the batch's longest dialogue, plus the
/// inter-modal weights as three vectors: `O(Σ L²)` work per propagation
/// instead of the dense `O((3N)²)`.
#[derive(Debug, Clone)]
pub struct BlockLayout {
    n: usize,
    /// Blocks (`3 × dialogues`) and the padded block size.
    blocks: usize,
    lmax: usize,
    /// Slot `(block, t)` → node index, or `3N` (a zero row) for padding.
    pad: Vec<i64>,
    /// Node → slot.
    unpad: Vec<i64>,
    /// `[blocks, lmax, lmax]`: 1 where both slots hold a node.
    mask: Vec<f32>,
}

impl BlockLayout {
    /// `dialogue_of[i]`: the dialogue of utterance `i` (contiguous).
    pub fn new(dialogue_of: &[usize]) -> Self {
        let n = dialogue_of.len();
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        let mut i = 0;
        while i < n {
            let mut j = i;
            while j < n && dialogue_of[j] == dialogue_of[i] {
                j += 1;
            }
            ranges.push((i, j));
            i = j;
        }
        let lmax = ranges.iter().map(|(a, b)| b - a).max().unwrap_or(0).max(1);
        let blocks = 3 * ranges.len();
        let mut pad = vec![(3 * n) as i64; blocks * lmax];
        let mut unpad = vec![0i64; 3 * n];
        let mut mask = vec![0f32; blocks * lmax * lmax];
        for m in 0..3 {
            for (d, &(start, end)) in ranges.iter().enumerate() {
                let block = m * ranges.len() + d;
                let len = end - start;
                for t in 0..len {
                    let node = m * n + start + t;
                    pad[block * lmax + t] = node as i64;
                    unpad[node] = (block * lmax + t) as i64;
                    let row = (block * lmax + t) * lmax;
                    mask[row..row + len].iter_mut().for_each(|v| *v = 1.0);
                }
            }
        }
        Self {
            n,
            blocks,
            lmax,
            pad,
            unpad,
            mask,
        }
    }
}

/// The normalised adjacency `D^{-1/2} (W ⊙ M) D^{-1/2}` of
/// [`normalized_adjacency`], kept blockwise ([`BlockLayout`]); the same
/// graph, at a fraction of the cost.
pub struct BlockGraph<B: Backend> {
    blocks: usize,
    lmax: usize,
    pad: Rows<B>,
    unpad: Rows<B>,
    /// The rows of each modality (`m·N..(m+1)·N`).
    modality: [Rows<B>; 3],
    /// `[blocks, lmax, lmax]` normalised intra-modal weights.
    intra: Tensor<B, 3>,
    /// `[N, 1]` normalised inter-modal weights: audio–visual, audio–text,
    /// visual–text.
    av: Tensor<B, 2>,
    at: Tensor<B, 2>,
    vt: Tensor<B, 2>,
}

/// Rows `rows` of `[k, d]` gathered into `[blocks, lmax, d]` (padding rows
/// are zeros).
fn padded<B: Backend>(x: Tensor<B, 2>, g: &BlockGraph<B>) -> Tensor<B, 3> {
    let [_, d] = x.dims();
    select_rows(x, &g.pad).reshape([g.blocks, g.lmax, d])
}

impl<B: Backend> BlockGraph<B> {
    /// The graph of node features `x` (`[3N, d]`, node order as in
    /// [`graph_mask`]) over `layout`.
    pub fn new(x: Tensor<B, 2>, layout: &BlockLayout) -> Self {
        let device = x.device();
        let n = layout.n;
        let rows = |v: &[i64]| Rows::new(v.iter().map(|&r| r as usize).collect());
        let mut g = Self {
            blocks: layout.blocks,
            lmax: layout.lmax,
            pad: rows(&layout.pad),
            unpad: rows(&layout.unpad),
            modality: [0, 1, 2].map(|m| Rows::range(m * n, n)),
            intra: Tensor::zeros([1, 1, 1], &device),
            av: Tensor::zeros([1, 1], &device),
            at: Tensor::zeros([1, 1], &device),
            vt: Tensor::zeros([1, 1], &device),
        };
        let weight = |cos: Tensor<B, 3>| {
            (cos.clamp(-1.0, 1.0) * 0.99999).acos().neg() / std::f64::consts::PI + 1.0
        };
        let xn = normalize(x);
        let xp = padded(xn.clone(), &g);
        let mask = Tensor::<B, 3>::from_data(
            TensorData::new(
                layout.mask.clone(),
                [layout.blocks, layout.lmax, layout.lmax],
            ),
            &device,
        );
        let w = weight(xp.clone().matmul(xp.swap_dims(1, 2))) * mask;
        let part = |m: usize| select_rows(xn.clone(), &g.modality[m]);
        let pair = |a: usize, b: usize| -> Tensor<B, 2> {
            let cos = (part(a) * part(b)).sum_dim(1);
            weight(cos.unsqueeze::<3>()).squeeze_dim::<2>(0)
        };
        let (av, at, vt) = (pair(0, 1), pair(0, 2), pair(1, 2));
        let intra_deg = select_rows(
            w.clone()
                .sum_dim(2)
                .reshape([layout.blocks * layout.lmax, 1]),
            &g.unpad,
        );
        let inter_deg = Tensor::cat(
            vec![
                av.clone() + at.clone(),
                av.clone() + vt.clone(),
                at.clone() + vt.clone(),
            ],
            0,
        );
        let dinv = (intra_deg + inter_deg).clamp_min(1e-12).powf_scalar(-0.5);
        let dp = padded(dinv.clone(), &g);
        g.intra = w * dp.clone() * dp.swap_dims(1, 2);
        let d = |m: usize| select_rows(dinv.clone(), &g.modality[m]);
        g.av = av * d(0) * d(1);
        g.at = at * d(0) * d(2);
        g.vt = vt * d(1) * d(2);
        g
    }

    /// `Â h` for `h`: `[3N, k]`.
    pub fn propagate(&self, h: Tensor<B, 2>) -> Tensor<B, 2> {
        let [_, k] = h.dims();
        let intra = self
            .intra
            .clone()
            .matmul(padded(h.clone(), self))
            .reshape([self.blocks * self.lmax, k]);
        let intra = select_rows(intra, &self.unpad);
        let part = |m: usize| select_rows(h.clone(), &self.modality[m]);
        let (a, v, t) = (part(0), part(1), part(2));
        let inter = Tensor::cat(
            vec![
                self.av.clone() * v.clone() + self.at.clone() * t.clone(),
                self.av.clone() * a.clone() + self.vt.clone() * t,
                self.at.clone() * a + self.vt.clone() * v,
            ],
            0,
        );
        intra + inter
    }
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

    /// One graph convolution of the propagated `s = Â Ĥ`:
    /// `θ·[S ‖ H0] W + (1 − θ)·((1 − α) S + α H0)` (before ReLU).
    pub fn conv(
        conv: &Linear<B>,
        s: Tensor<B, 2>,
        h0: Tensor<B, 2>,
        alpha: f64,
        theta: f64,
    ) -> Tensor<B, 2> {
        let support = Tensor::cat(vec![s.clone(), h0.clone()], 1);
        let r = s * (1.0 - alpha) + h0 * alpha;
        linear(conv, support) * theta + r * (1.0 - theta)
    }

    /// `x`: `[3N, d_in]`, `graph`: its normalised adjacency. Returns
    /// `[dropout(x) ‖ H_K]`, `[3N, d_in + hidden]`.
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        graph: &BlockGraph<B>,
        alpha: f64,
        lambda: f64,
        dropout: &Dropout,
    ) -> Tensor<B, 2> {
        let x = tensor::dropout(dropout, x);
        let h0 = relu(linear(&self.fc0, x.clone()));
        let mut h = tensor::dropout(dropout, h0.clone());
        let mut hs = Tensor::zeros(h.dims(), &h.device());
        let mut cs = hs.clone();
        for (i, conv) in self.convs.iter().enumerate() {
            let k = (i + 1) as f64;
            let theta = (lambda / k + 1.0).ln();
            let q = h;
            (hs, cs) = self.cell.step(q.clone(), hs, cs);
            let z = Self::conv(conv, graph.propagate(hs.clone()), h0.clone(), alpha, theta);
            h = tensor::dropout(dropout, relu(z)) + q;
        }
        Tensor::cat(vec![x, h], 1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{BlockGraph, BlockLayout, graph_mask, normalized_adjacency};
    use burn::prelude::*;

    type B = burn::backend::NdArray<f32>;

    /// The blockwise graph is the dense `D^{-1/2}(W ⊙ M)D^{-1/2}`: the same
    /// propagation, dialogue lengths 1 to 7 in one batch.
    #[test]
    fn blockwise_propagation_equals_the_dense_adjacency() {
        let device = Default::default();
        let lens = [3usize, 1, 7, 4];
        let dialogue_of: Vec<usize> = lens
            .iter()
            .enumerate()
            .flat_map(|(d, &l)| std::iter::repeat_n(d, l))
            .collect();
        let n = dialogue_of.len();
        let x = Tensor::<B, 2>::random(
            [3 * n, 5],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let h = Tensor::<B, 2>::random(
            [3 * n, 4],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mask = Tensor::<B, 2>::from_data(
            TensorData::new(graph_mask(&dialogue_of), [3 * n, 3 * n]),
            &device,
        );
        let dense = normalized_adjacency(x.clone(), mask).matmul(h.clone());
        let blocks = BlockGraph::new(x, &BlockLayout::new(&dialogue_of)).propagate(h);
        let (a, b): (Vec<f32>, Vec<f32>) = (
            dense.into_data().to_vec().unwrap(),
            blocks.into_data().to_vec().unwrap(),
        );
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "max |dense − blockwise| = {worst}");
    }
}
