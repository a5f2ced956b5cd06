//! LSTM and GRU cell steps fused into one pass each way, for the CPU
//! backend (burn-ndarray under burn-autodiff).
//!
//! Written as separate tensor operations, one LSTM step is about forty
//! autodiff nodes (four gate slices, whose backward each fills a zero tensor
//! of the whole gate width, five activations, the products), and the
//! recurrences of MM-DFN run thousands of steps per batch: on one CPU core
//! that bookkeeping and those passes cost more than the matrix products.
//! Here the elementwise part of a step is one node with its own backward
//! pass, computed row by row in plain Rust. The gate matrix products stay
//! burn operations. Other backends (CUDA) keep the composite formulation in
//! [`super::rnn`], which is the same mathematics.
//!
//! * LSTM (PyTorch gate order `i, f, g, o`), from `G = W_ih x + b + W_hh h`:
//!   `c' = σ(G_f) ⊙ c + σ(G_i) ⊙ tanh(G_g)` ([`lstm_cell`]) and
//!   `h' = σ(G_o) ⊙ tanh(c')` ([`lstm_hidden`]): two nodes, so neither
//!   output has to be sliced out of a joint one.
//! * GRU (PyTorch, `reset_after`), from `X = W_ih x + b_ih` and
//!   `H = W_hh h + b_hh` (gates `r, z, n`): `r = σ(X_r + H_r)`,
//!   `z = σ(X_z + H_z)`, `n = tanh(X_n + r ⊙ H_n)`, `h' = n + z ⊙ (h − n)`
//!   ([`gru`]).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;

use crate::tensor::cpu::{
    Cpu, Inner, Prim, cast, from_vec as device_tensor, host, on_cpu, parts, tensor,
};

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x.clamp(-80.0, 80.0)).exp())
}

fn tanh(x: f32) -> f32 {
    2.0 / (1.0 + (-2.0 * x.clamp(-40.0, 40.0)).exp()) - 1.0
}

// ---- The arithmetic, on row-major host buffers ----------------------------

/// `c'` from the gates `g` (`[b, 4h]`) and `c` (`[b, h]`).
fn lstm_cell_fwd(g: &[f32], c: &[f32], h: usize) -> Vec<f32> {
    let mut out = vec![0f32; c.len()];
    for ((gr, cr), or) in g
        .chunks_exact(4 * h)
        .zip(c.chunks_exact(h))
        .zip(out.chunks_exact_mut(h))
    {
        for k in 0..h {
            let i = sigmoid(gr[k]);
            let f = sigmoid(gr[h + k]);
            let cand = tanh(gr[2 * h + k]);
            or[k] = f * cr[k] + i * cand;
        }
    }
    out
}

/// Gradients of [`lstm_cell_fwd`] for the incoming `dc'`: `(dG, dc)`.
fn lstm_cell_bwd(g: &[f32], c: &[f32], dout: &[f32], h: usize) -> (Vec<f32>, Vec<f32>) {
    let mut dg = vec![0f32; g.len()];
    let mut dc = vec![0f32; c.len()];
    let rows = g
        .chunks_exact(4 * h)
        .zip(c.chunks_exact(h))
        .zip(dout.chunks_exact(h))
        .zip(dg.chunks_exact_mut(4 * h).zip(dc.chunks_exact_mut(h)));
    for (((gr, cr), dr), (dgr, dcr)) in rows {
        for k in 0..h {
            let i = sigmoid(gr[k]);
            let f = sigmoid(gr[h + k]);
            let cand = tanh(gr[2 * h + k]);
            let d = dr[k];
            dgr[k] = d * cand * i * (1.0 - i);
            dgr[h + k] = d * cr[k] * f * (1.0 - f);
            dgr[2 * h + k] = d * i * (1.0 - cand * cand);
            dcr[k] = d * f;
        }
    }
    (dg, dc)
}

/// `h'` from the gates `g` (`[b, 4h]`) and `c'` (`[b, h]`).
fn lstm_hidden_fwd(g: &[f32], c: &[f32], h: usize) -> Vec<f32> {
    let mut out = vec![0f32; c.len()];
    for ((gr, cr), or) in g
        .chunks_exact(4 * h)
        .zip(c.chunks_exact(h))
        .zip(out.chunks_exact_mut(h))
    {
        for k in 0..h {
            or[k] = sigmoid(gr[3 * h + k]) * tanh(cr[k]);
        }
    }
    out
}

/// Gradients of [`lstm_hidden_fwd`] for the incoming `dh'`: `(dG, dc')`.
fn lstm_hidden_bwd(g: &[f32], c: &[f32], dout: &[f32], h: usize) -> (Vec<f32>, Vec<f32>) {
    let mut dg = vec![0f32; g.len()];
    let mut dc = vec![0f32; c.len()];
    let rows = g
        .chunks_exact(4 * h)
        .zip(c.chunks_exact(h))
        .zip(dout.chunks_exact(h))
        .zip(dg.chunks_exact_mut(4 * h).zip(dc.chunks_exact_mut(h)));
    for (((gr, cr), dr), (dgr, dcr)) in rows {
        for k in 0..h {
            let o = sigmoid(gr[3 * h + k]);
            let t = tanh(cr[k]);
            let d = dr[k];
            dgr[3 * h + k] = d * t * o * (1.0 - o);
            dcr[k] = d * o * (1.0 - t * t);
        }
    }
    (dg, dc)
}

/// One GRU row: `(r, z, n)`.
fn gru_gates(xr: &[f32], hr: &[f32], h: usize, k: usize) -> (f32, f32, f32) {
    let r = sigmoid(xr[k] + hr[k]);
    let z = sigmoid(xr[h + k] + hr[h + k]);
    let n = tanh(xr[2 * h + k] + r * hr[2 * h + k]);
    (r, z, n)
}

/// `h'` from `X` and `H` (`[b, 3h]`) and `h` (`[b, h]`).
fn gru_fwd(x: &[f32], hg: &[f32], hprev: &[f32], h: usize) -> Vec<f32> {
    let mut out = vec![0f32; hprev.len()];
    let rows = x
        .chunks_exact(3 * h)
        .zip(hg.chunks_exact(3 * h))
        .zip(hprev.chunks_exact(h))
        .zip(out.chunks_exact_mut(h));
    for (((xr, hr), pr), or) in rows {
        for k in 0..h {
            let (_, z, n) = gru_gates(xr, hr, h, k);
            or[k] = n + z * (pr[k] - n);
        }
    }
    out
}

/// Gradients of [`gru_fwd`] for the incoming `dh'`: `(dX, dH, dh)`.
fn gru_bwd(
    x: &[f32],
    hg: &[f32],
    hprev: &[f32],
    dout: &[f32],
    h: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0f32; x.len()];
    let mut dhg = vec![0f32; hg.len()];
    let mut dh = vec![0f32; hprev.len()];
    let rows = x
        .chunks_exact(3 * h)
        .zip(hg.chunks_exact(3 * h))
        .zip(hprev.chunks_exact(h))
        .zip(dout.chunks_exact(h))
        .zip(
            dx.chunks_exact_mut(3 * h)
                .zip(dhg.chunks_exact_mut(3 * h))
                .zip(dh.chunks_exact_mut(h)),
        );
    for ((((xr, hr), pr), dr), ((dxr, dhr), dpr)) in rows {
        for k in 0..h {
            let (r, z, n) = gru_gates(xr, hr, h, k);
            let d = dr[k];
            let dn = d * (1.0 - z) * (1.0 - n * n);
            let dz = d * (pr[k] - n) * z * (1.0 - z);
            let dr_ = dn * hr[2 * h + k] * r * (1.0 - r);
            dxr[k] = dr_;
            dhr[k] = dr_;
            dxr[h + k] = dz;
            dhr[h + k] = dz;
            dxr[2 * h + k] = dn;
            dhr[2 * h + k] = dn * r;
            dpr[k] = d * z;
        }
    }
    (dx, dhg, dh)
}

// ---- The autodiff nodes ---------------------------------------------------

/// Which two-input LSTM node.
#[derive(Debug, Clone, Copy)]
enum LstmPart {
    Cell,
    Hidden,
}

#[derive(Debug)]
struct LstmStep(LstmPart);

impl Backward<Inner, 2> for LstmStep {
    /// The gates, the cell state and `[rows, width]`.
    type State = (Prim, Prim, [usize; 2]);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (g, c, [b, h]) = ops.state;
        let dout = grads.consume::<Inner>(&ops.node);
        let (dout, g, c) = (host(&dout), host(&g), host(&c));
        let (dg, dc) = match self.0 {
            LstmPart::Cell => lstm_cell_bwd(&g, &c, &dout, h),
            LstmPart::Hidden => lstm_hidden_bwd(&g, &c, &dout, h),
        };
        let [pg, pc] = ops.parents;
        if let Some(node) = pg {
            grads.register::<Inner>(node.id, device_tensor(dg, [b, 4 * h]));
        }
        if let Some(node) = pc {
            grads.register::<Inner>(node.id, device_tensor(dc, [b, h]));
        }
    }
}

fn lstm_node(part: LstmPart, g: Tensor<Cpu, 2>, c: Tensor<Cpu, 2>) -> Tensor<Cpu, 2> {
    let [b, h] = c.dims();
    let g = parts(g);
    let c = parts(c);
    let forward = |gp: &Prim, cp: &Prim| {
        let (gv, cv) = (host(gp), host(cp));
        let out = match part {
            LstmPart::Cell => lstm_cell_fwd(&gv, &cv, h),
            LstmPart::Hidden => lstm_hidden_fwd(&gv, &cv, h),
        };
        device_tensor(out, [b, h])
    };
    let out = match LstmStep(part)
        .prepare::<NoCheckpointing>([g.node.clone(), c.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = forward(&g.primitive, &c.primitive);
            prep.finish((g.primitive, c.primitive, [b, h]), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&g.primitive, &c.primitive)),
    };
    tensor(out)
}

#[derive(Debug)]
struct GruStep;

impl Backward<Inner, 3> for GruStep {
    /// `X`, `H`, `h` and `[rows, width]`.
    type State = (Prim, Prim, Prim, [usize; 2]);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, hg, hp, [b, h]) = ops.state;
        let dout = grads.consume::<Inner>(&ops.node);
        let (dx, dhg, dh) = gru_bwd(&host(&x), &host(&hg), &host(&hp), &host(&dout), h);
        let [px, phg, ph] = ops.parents;
        if let Some(node) = px {
            grads.register::<Inner>(node.id, device_tensor(dx, [b, 3 * h]));
        }
        if let Some(node) = phg {
            grads.register::<Inner>(node.id, device_tensor(dhg, [b, 3 * h]));
        }
        if let Some(node) = ph {
            grads.register::<Inner>(node.id, device_tensor(dh, [b, h]));
        }
    }
}

fn gru_node(x: Tensor<Cpu, 2>, hg: Tensor<Cpu, 2>, hp: Tensor<Cpu, 2>) -> Tensor<Cpu, 2> {
    let [b, h] = hp.dims();
    let x = parts(x);
    let hg = parts(hg);
    let hp = parts(hp);
    let forward = |xp: &Prim, gp: &Prim, pp: &Prim| {
        device_tensor(gru_fwd(&host(xp), &host(gp), &host(pp), h), [b, h])
    };
    let out = match GruStep
        .prepare::<NoCheckpointing>([x.node.clone(), hg.node.clone(), hp.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = forward(&x.primitive, &hg.primitive, &hp.primitive);
            prep.finish((x.primitive, hg.primitive, hp.primitive, [b, h]), out)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(&x.primitive, &hg.primitive, &hp.primitive))
        }
    };
    tensor(out)
}

// ---- Entry points: `None` when `B` is not the CPU training backend --------

/// LSTM step on the CPU: `(h', c')` from the gates `g = W_ih x + b + W_hh h`
/// (`[b, 4h]`) and `c` (`[b, h]`).
pub fn lstm<B: Backend>(
    g: &Tensor<B, 2>,
    c: &Tensor<B, 2>,
) -> Option<(Tensor<B, 2>, Tensor<B, 2>)> {
    if !on_cpu(&[g, c]) {
        return None;
    }
    let g: Tensor<Cpu, 2> = cast(g.clone())?;
    let c: Tensor<Cpu, 2> = cast(c.clone())?;
    let c2 = lstm_node(LstmPart::Cell, g.clone(), c);
    let h2 = lstm_node(LstmPart::Hidden, g, c2.clone());
    Some((cast(h2)?, cast(c2)?))
}

/// GRU step on the CPU: `h'` from `X = W_ih x + b_ih`, `H = W_hh h + b_hh`
/// (`[b, 3h]`) and `h` (`[b, h]`).
pub fn gru<B: Backend>(
    x: &Tensor<B, 2>,
    hg: &Tensor<B, 2>,
    h: &Tensor<B, 2>,
) -> Option<Tensor<B, 2>> {
    if !on_cpu(&[x, hg, h]) {
        return None;
    }
    let out = gru_node(cast(x.clone())?, cast(hg.clone())?, cast(h.clone())?);
    cast(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    //! The fused steps against finite differences of their own forward
    //! passes (the composite formulation is compared in `rnn`'s tests).
    use super::*;

    fn numeric(f: &dyn Fn(&[f32]) -> f32, x: &[f32]) -> Vec<f32> {
        let eps = 1e-3f32;
        (0..x.len())
            .map(|i| {
                let (mut a, mut b) = (x.to_vec(), x.to_vec());
                a[i] += eps;
                b[i] -= eps;
                (f(&a) - f(&b)) / (2.0 * eps)
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2e-3, "{what}: max |analytic − numeric| = {worst}");
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32 + 1).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    #[test]
    fn lstm_backward_matches_finite_differences() {
        let (b, h) = (3, 4);
        let (g, c, w) = (values(b * 4 * h, 1), values(b * h, 2), values(b * h, 3));
        let loss_cell = |g: &[f32], c: &[f32]| -> f32 {
            lstm_cell_fwd(g, c, h)
                .iter()
                .zip(&w)
                .map(|(a, b)| a * b)
                .sum()
        };
        let (dg, dc) = lstm_cell_bwd(&g, &c, &w, h);
        close(&dg, &numeric(&|x| loss_cell(x, &c), &g), "cell dG");
        close(&dc, &numeric(&|x| loss_cell(&g, x), &c), "cell dc");
        let loss_hidden = |g: &[f32], c: &[f32]| -> f32 {
            lstm_hidden_fwd(g, c, h)
                .iter()
                .zip(&w)
                .map(|(a, b)| a * b)
                .sum()
        };
        let (dg, dc) = lstm_hidden_bwd(&g, &c, &w, h);
        close(&dg, &numeric(&|x| loss_hidden(x, &c), &g), "hidden dG");
        close(&dc, &numeric(&|x| loss_hidden(&g, x), &c), "hidden dc");
    }

    #[test]
    fn gru_backward_matches_finite_differences() {
        let (b, h) = (3, 4);
        let (x, hg, hp, w) = (
            values(b * 3 * h, 4),
            values(b * 3 * h, 5),
            values(b * h, 6),
            values(b * h, 7),
        );
        let loss = |x: &[f32], hg: &[f32], hp: &[f32]| -> f32 {
            gru_fwd(x, hg, hp, h)
                .iter()
                .zip(&w)
                .map(|(a, b)| a * b)
                .sum()
        };
        let (dx, dhg, dh) = gru_bwd(&x, &hg, &hp, &w, h);
        close(&dx, &numeric(&|v| loss(v, &hg, &hp), &x), "dX");
        close(&dhg, &numeric(&|v| loss(&x, v, &hp), &hg), "dH");
        close(&dh, &numeric(&|v| loss(&x, &hg, v), &hp), "dh");
    }
}
