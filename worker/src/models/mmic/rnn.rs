//! Recurrent cells with fused gates and a stepwise, per-timestep API.
//!
//! burn-nn's `Lstm`/`Gru` write every step into one output tensor with
//! `slice_assign`, which makes the backward pass quadratic in the sequence
//! length; here every timestep is its own tensor (inputs and outputs are
//! `Vec`s over time), so the cost is linear. Gate equations follow
//! PyTorch's `nn.LSTM` / `nn.GRU` (GRU with `reset_after`, i.e.
//! `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`), initialised
//! uniform(±1/√hidden) like PyTorch.

use burn::module::Module;
use burn::nn::{Dropout, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::tanh;

/// `σ(x) = (1 + tanh(x / 2)) / 2`: one transcendental pass. burn-ndarray
/// has no sigmoid of its own, and the backend's default runs two
/// exponentials and a logarithm (six passes over the tensor), which showed
/// in profiles of the recurrent steps.
fn sigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    tanh(x * 0.5) * 0.5 + 0.5
}

/// One LSTM or GRU cell (kind fixed at construction).
#[derive(Module, Debug)]
pub struct Cell<B: Backend> {
    ih: Linear<B>,
    hh: Linear<B>,
    hidden: usize,
    lstm: bool,
}

fn uniform_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    k: f64,
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Uniform { min: -k, max: k })
        .init(device)
}

impl<B: Backend> Cell<B> {
    pub fn lstm(d_in: usize, hidden: usize, device: &B::Device) -> Self {
        let k = 1.0 / (hidden as f64).sqrt();
        Self {
            ih: uniform_linear(d_in, 4 * hidden, k, true, device),
            hh: uniform_linear(hidden, 4 * hidden, k, false, device),
            hidden,
            lstm: true,
        }
    }

    pub fn gru(d_in: usize, hidden: usize, device: &B::Device) -> Self {
        let k = 1.0 / (hidden as f64).sqrt();
        Self {
            ih: uniform_linear(d_in, 3 * hidden, k, true, device),
            hh: uniform_linear(hidden, 3 * hidden, k, true, device),
            hidden,
            lstm: false,
        }
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// One step. `x`: `[b, d_in]`, `h`/`c`: `[b, hidden]` (`c` is ignored
    /// and returned unchanged by a GRU). Returns the new `(h, c)`.
    pub fn step(
        &self,
        x: Tensor<B, 2>,
        h: Tensor<B, 2>,
        c: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let hd = self.hidden;
        let xg = self.ih.forward(x);
        let hg = self.hh.forward(h.clone());
        let [b, _] = xg.dims();
        let part = |t: &Tensor<B, 2>, i: usize| t.clone().slice([0..b, i * hd..(i + 1) * hd]);
        if self.lstm {
            let g = xg + hg;
            let i = sigmoid(part(&g, 0));
            let f = sigmoid(part(&g, 1));
            let cand = tanh(part(&g, 2));
            let o = sigmoid(part(&g, 3));
            let c = f * c + i * cand;
            let h = o * tanh(c.clone());
            (h, c)
        } else {
            let r = sigmoid(part(&xg, 0) + part(&hg, 0));
            let z = sigmoid(part(&xg, 1) + part(&hg, 1));
            let n = tanh(part(&xg, 2) + r * part(&hg, 2));
            let h = n.clone() + z * (h - n);
            (h, c)
        }
    }
}

/// A bidirectional layer.
#[derive(Module, Debug)]
pub struct BiLayer<B: Backend> {
    fwd: Cell<B>,
    bwd: Cell<B>,
}

/// A stack of bidirectional layers (PyTorch `bidirectional=True,
/// num_layers=n`), dropout between layers.
#[derive(Module, Debug)]
pub struct BiRnn<B: Backend> {
    layers: Vec<BiLayer<B>>,
}

impl<B: Backend> BiRnn<B> {
    /// `lstm`: LSTM cells, else GRU. Each direction has `d_out / 2` units.
    pub fn new(lstm: bool, d_in: usize, d_out: usize, n_layers: usize, device: &B::Device) -> Self {
        let h = d_out / 2;
        let layers = (0..n_layers)
            .map(|l| {
                let d = if l == 0 { d_in } else { 2 * h };
                let mk = || {
                    if lstm {
                        Cell::lstm(d, h, device)
                    } else {
                        Cell::gru(d, h, device)
                    }
                };
                BiLayer {
                    fwd: mk(),
                    bwd: mk(),
                }
            })
            .collect();
        Self { layers }
    }

    /// Runs over `inputs` (one `[b, d_in]` tensor per timestep). Sequences
    /// are left-packed (valid prefix, then padding); `masks[t]` is `None`
    /// when every sequence is valid at `t`, else `[b, 1]` with 1 for valid.
    /// The backward direction keeps a zero state through trailing padding,
    /// which gives exactly the outputs of packed sequences at valid steps.
    pub fn forward(
        &self,
        inputs: Vec<Tensor<B, 2>>,
        masks: &[Option<Tensor<B, 2>>],
        dropout: &Dropout,
    ) -> Vec<Tensor<B, 2>> {
        let mut xs = inputs;
        let steps = xs.len();
        for (l, layer) in self.layers.iter().enumerate() {
            if l > 0 {
                xs = xs.into_iter().map(|x| dropout.forward(x)).collect();
            }
            let b = xs[0].dims()[0];
            let device = xs[0].device();
            let hd = layer.fwd.hidden();
            let zero = Tensor::<B, 2>::zeros([b, hd], &device);
            let mut out_f = Vec::with_capacity(steps);
            let (mut h, mut c) = (zero.clone(), zero.clone());
            for x in &xs {
                (h, c) = layer.fwd.step(x.clone(), h, c);
                out_f.push(h.clone());
            }
            let mut out_b = vec![zero.clone(); steps];
            let (mut h, mut c) = (zero.clone(), zero);
            for t in (0..steps).rev() {
                let (hn, cn) = layer.bwd.step(xs[t].clone(), h.clone(), c.clone());
                match &masks[t] {
                    None => (h, c) = (hn, cn),
                    Some(m) => {
                        h = h.clone() + m.clone() * (hn - h);
                        c = c.clone() + m.clone() * (cn - c);
                    }
                }
                out_b[t] = h.clone();
            }
            xs = out_f
                .into_iter()
                .zip(out_b)
                .map(|(f, b)| Tensor::cat(vec![f, b], 1))
                .collect();
        }
        xs
    }
}
