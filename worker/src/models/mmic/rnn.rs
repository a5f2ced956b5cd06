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

use crate::tensor::cells;
use crate::tensor::{self, linear, sigmoid, tanh};

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
    /// and returned unchanged by a GRU). Returns the new `(h, c)`. On the
    /// CPU backend the elementwise part is one fused node
    /// ([`crate::tensor::cells`]); elsewhere [`Self::step_composite`].
    pub fn step(
        &self,
        x: Tensor<B, 2>,
        h: Tensor<B, 2>,
        c: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        self.step_with(x, h, c, true)
    }

    /// [`Self::step`] as separate tensor operations on any backend.
    pub fn step_composite(
        &self,
        x: Tensor<B, 2>,
        h: Tensor<B, 2>,
        c: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        self.step_with(x, h, c, false)
    }

    fn step_with(
        &self,
        x: Tensor<B, 2>,
        h: Tensor<B, 2>,
        c: Tensor<B, 2>,
        fused: bool,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let (xg, hg) = if fused {
            (linear(&self.ih, x), linear(&self.hh, h.clone()))
        } else {
            (self.ih.forward(x), self.hh.forward(h.clone()))
        };
        if self.lstm {
            let g = xg + hg;
            match fused.then(|| cells::lstm(&g, &c)).flatten() {
                Some(out) => out,
                None => Self::lstm_gates(g, c, self.hidden),
            }
        } else {
            match fused.then(|| cells::gru(&xg, &hg, &h)).flatten() {
                Some(h) => (h, c),
                None => Self::gru_gates(xg, hg, h, c, self.hidden),
            }
        }
    }

    fn lstm_gates(g: Tensor<B, 2>, c: Tensor<B, 2>, hd: usize) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let part = |i: usize| g.clone().narrow(1, i * hd, hd);
        let i = sigmoid(part(0));
        let f = sigmoid(part(1));
        let cand = tanh(part(2));
        let o = sigmoid(part(3));
        let c = f * c + i * cand;
        let h = o * tanh(c.clone());
        (h, c)
    }

    fn gru_gates(
        xg: Tensor<B, 2>,
        hg: Tensor<B, 2>,
        h: Tensor<B, 2>,
        c: Tensor<B, 2>,
        hd: usize,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let part = |t: &Tensor<B, 2>, i: usize| t.clone().narrow(1, i * hd, hd);
        let r = sigmoid(part(&xg, 0) + part(&hg, 0));
        let z = sigmoid(part(&xg, 1) + part(&hg, 1));
        let n = tanh(part(&xg, 2) + r * part(&hg, 2));
        let h = n.clone() + z * (h - n);
        (h, c)
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
                xs = xs
                    .into_iter()
                    .map(|x| tensor::dropout(dropout, x))
                    .collect();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Cell;
    use crate::backend::Cpu;
    use burn::prelude::*;
    use burn::tensor::Distribution;

    fn max_diff(a: Tensor<Cpu, 2>, b: Tensor<Cpu, 2>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// The fused CPU step and the composite one give the same outputs and
    /// the same gradients for inputs, states and weights, over two steps.
    #[test]
    fn fused_cpu_steps_equal_the_composite_ones() {
        let _guard = crate::backend::training_guard();
        let device = Default::default();
        for lstm in [true, false] {
            let cell: Cell<Cpu> = if lstm {
                Cell::lstm(5, 4, &device)
            } else {
                Cell::gru(5, 4, &device)
            };
            let rand = |shape: [usize; 2]| {
                Tensor::<Cpu, 2>::random(shape, Distribution::Normal(0.0, 1.5), &device)
                    .require_grad()
            };
            let (x0, x1, h, c) = (rand([3, 5]), rand([3, 5]), rand([3, 4]), rand([3, 4]));
            let w = Tensor::<Cpu, 2>::random([3, 4], Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool| {
                let step = |x: Tensor<Cpu, 2>, h, c| {
                    if fused {
                        cell.step(x, h, c)
                    } else {
                        cell.step_composite(x, h, c)
                    }
                };
                let (h1, c1) = step(x0.clone(), h.clone(), c.clone());
                let (h2, c2) = step(x1.clone(), h1, c1);
                let loss = (h2.clone() * w.clone()).sum() + (c2 * w.clone() * 0.5).sum();
                let grads = loss.backward();
                let g = |t: &Tensor<Cpu, 2>| Tensor::<Cpu, 2>::from_inner(t.grad(&grads).unwrap());
                let mut out = vec![h2, g(&x0), g(&x1), g(&h)];
                if lstm {
                    out.push(g(&c));
                }
                for l in [&cell.ih, &cell.hh] {
                    out.push(Tensor::from_inner(l.weight.val().grad(&grads).unwrap()));
                }
                out
            };
            let (fused, composite) = (run(true), run(false));
            for (i, (a, b)) in fused.into_iter().zip(composite).enumerate() {
                let d = max_diff(a, b);
                assert!(d < 1e-5, "lstm={lstm} output {i}: max difference {d}");
            }
        }
    }
}
