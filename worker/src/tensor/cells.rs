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
//! burn operations (the linear products of [`super::cpu`]). Other backends
//! (CUDA) keep the composite formulation in `models::mmic::rnn`, which is
//! the same mathematics.
//!
//! * LSTM (PyTorch gate order `i, f, g, o`), from `G = W_ih x + b + W_hh h`:
//!   `c' = σ(G_f) ⊙ c + σ(G_i) ⊙ tanh(G_g)` and `h' = σ(G_o) ⊙ tanh(c')`
//!   ([`lstm`]): two nodes, so neither output has to be sliced out of a
//!   joint one.
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
    self, Cpu, Inner, Prim, cast, from_vec as device_tensor, host, lanewise, on_cpu, parts,
    sigmoid, tanh, tensor,
};

// ---- The arithmetic, on row-major host buffers ----------------------------

// Each row kernel takes its blocks as separate slices of one length and
// computes them element by element through `cpu::lanewise`, which
// vectorises whatever the slices' aliasing; the loops over the rows run
// under `cpu::vectorised`.

/// The four gate blocks of an LSTM row `[i | f | g | o]`.
fn quarters(row: &[f32], h: usize) -> [&[f32]; 4] {
    [
        &row[..h],
        &row[h..2 * h],
        &row[2 * h..3 * h],
        &row[3 * h..4 * h],
    ]
}

/// The three gate blocks of a GRU row `[r | z | n]`.
fn thirds(row: &[f32], h: usize) -> [&[f32]; 3] {
    [&row[..h], &row[h..2 * h], &row[2 * h..3 * h]]
}

fn quarters_mut(row: &mut [f32], h: usize) -> [&mut [f32]; 4] {
    let (i, rest) = row.split_at_mut(h);
    let (f, rest) = rest.split_at_mut(h);
    let (g, o) = rest.split_at_mut(h);
    [i, f, g, o]
}

fn thirds_mut(row: &mut [f32], h: usize) -> [&mut [f32]; 3] {
    let (r, rest) = row.split_at_mut(h);
    let (z, n) = rest.split_at_mut(h);
    [r, z, n]
}

#[inline(always)]
fn cell_row(out: &mut [f32], c: &[f32], gi: &[f32], gf: &[f32], gg: &[f32]) {
    lanewise([c, gi, gf, gg], [out], |[c, i, f, g]| {
        [sigmoid(f) * c + sigmoid(i) * tanh(g)]
    });
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn cell_row_bwd(
    [dgi, dgf, dgg]: [&mut [f32]; 3],
    dc: &mut [f32],
    gi: &[f32],
    gf: &[f32],
    gg: &[f32],
    c: &[f32],
    dout: &[f32],
) {
    lanewise(
        [gi, gf, gg, c, dout],
        [dc, dgi, dgf, dgg],
        |[gi, gf, gg, c, d]| {
            let (i, f, cand) = (sigmoid(gi), sigmoid(gf), tanh(gg));
            [
                d * f,
                d * cand * i * (1.0 - i),
                d * c * f * (1.0 - f),
                d * i * (1.0 - cand * cand),
            ]
        },
    );
}

#[inline(always)]
fn hidden_row(out: &mut [f32], c: &[f32], go: &[f32]) {
    lanewise([c, go], [out], |[c, g]| [sigmoid(g) * tanh(c)]);
}

#[inline(always)]
fn hidden_row_bwd(dgo: &mut [f32], dc: &mut [f32], go: &[f32], c: &[f32], dout: &[f32]) {
    lanewise([go, c, dout], [dc, dgo], |[g, c, d]| {
        let (o, t) = (sigmoid(g), tanh(c));
        [d * o * (1.0 - t * t), d * t * o * (1.0 - o)]
    });
}

#[inline(always)]
fn gru_row(out: &mut [f32], p: &[f32], [xr, xz, xn]: [&[f32]; 3], [hr, hz, hn]: [&[f32]; 3]) {
    lanewise(
        [p, xr, xz, xn, hr, hz, hn],
        [out],
        |[p, xr, xz, xn, hr, hz, hn]| {
            let r = sigmoid(xr + hr);
            let z = sigmoid(xz + hz);
            let c = tanh(xn + r * hn);
            [c + z * (p - c)]
        },
    );
}

#[inline(always)]
fn gru_row_bwd(
    [dxr, dxz, dxn]: [&mut [f32]; 3],
    [dhr, dhz, dhn]: [&mut [f32]; 3],
    dp: &mut [f32],
    [xr, xz, xn]: [&[f32]; 3],
    [hr, hz, hn]: [&[f32]; 3],
    p: &[f32],
    dout: &[f32],
) {
    lanewise(
        [xr, xz, xn, hr, hz, hn, p, dout],
        [dp, dxr, dhr, dxz, dhz, dxn, dhn],
        |[xr, xz, xn, hr, hz, hn, p, d]| {
            let r = sigmoid(xr + hr);
            let z = sigmoid(xz + hz);
            let c = tanh(xn + r * hn);
            let dc = d * (1.0 - z) * (1.0 - c * c);
            let dz = d * (p - c) * z * (1.0 - z);
            let dr = dc * hn * r * (1.0 - r);
            [d * z, dr, dr, dz, dz, dc, dc * r]
        },
    );
}

/// `out` (`[b, h]`) row by row from the gates `g` (`[b, 4h]`) and a state
/// `c` (`[b, h]`).
fn lstm_rows(g: &[f32], c: &[f32], h: usize, row: impl Fn(&[f32], &[f32], &mut [f32])) -> Vec<f32> {
    let mut out = vec![0f32; c.len()];
    let rows = g
        .chunks_exact(4 * h)
        .zip(c.chunks_exact(h))
        .zip(out.chunks_exact_mut(h));
    // A `for` loop, not `for_each`: the loop must be inlined into the
    // dispatched function to be compiled for its instructions.
    cpu::vectorised(
        #[inline(always)]
        || {
            for ((gr, cr), or) in rows {
                row(gr, cr, or);
            }
        },
    );
    out
}

/// `(dG, dc)` row by row for the incoming `dout`: `row(g, c, dout, dG, dc)`.
fn lstm_rows_bwd(
    g: &[f32],
    c: &[f32],
    dout: &[f32],
    h: usize,
    row: impl Fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32]),
) -> (Vec<f32>, Vec<f32>) {
    let mut dg = vec![0f32; g.len()];
    let mut dc = vec![0f32; c.len()];
    let rows = g
        .chunks_exact(4 * h)
        .zip(c.chunks_exact(h))
        .zip(dout.chunks_exact(h))
        .zip(dg.chunks_exact_mut(4 * h).zip(dc.chunks_exact_mut(h)));
    cpu::vectorised(
        #[inline(always)]
        || {
            for (((gr, cr), dr), (dgr, dcr)) in rows {
                row(gr, cr, dr, dgr, dcr);
            }
        },
    );
    (dg, dc)
}

/// `c'` from the gates `g` (`[b, 4h]`) and `c` (`[b, h]`).
fn lstm_cell_fwd(g: &[f32], c: &[f32], h: usize) -> Vec<f32> {
    lstm_rows(
        g,
        c,
        h,
        #[inline(always)]
        |gr, cr, or| {
            let [gi, gf, gg, _] = quarters(gr, h);
            cell_row(or, cr, gi, gf, gg);
        },
    )
}

/// Gradients of [`lstm_cell_fwd`] for the incoming `dc'`: `(dG, dc)`.
fn lstm_cell_bwd(g: &[f32], c: &[f32], dout: &[f32], h: usize) -> (Vec<f32>, Vec<f32>) {
    lstm_rows_bwd(
        g,
        c,
        dout,
        h,
        #[inline(always)]
        |gr, cr, dr, dgr, dcr| {
            let [gi, gf, gg, _] = quarters(gr, h);
            let [dgi, dgf, dgg, _] = quarters_mut(dgr, h);
            cell_row_bwd([dgi, dgf, dgg], dcr, gi, gf, gg, cr, dr);
        },
    )
}

/// `h'` from the gates `g` (`[b, 4h]`) and `c'` (`[b, h]`).
fn lstm_hidden_fwd(g: &[f32], c: &[f32], h: usize) -> Vec<f32> {
    lstm_rows(
        g,
        c,
        h,
        #[inline(always)]
        |gr, cr, or| hidden_row(or, cr, quarters(gr, h)[3]),
    )
}

/// Gradients of [`lstm_hidden_fwd`] for the incoming `dh'`: `(dG, dc')`.
fn lstm_hidden_bwd(g: &[f32], c: &[f32], dout: &[f32], h: usize) -> (Vec<f32>, Vec<f32>) {
    lstm_rows_bwd(
        g,
        c,
        dout,
        h,
        #[inline(always)]
        |gr, cr, dr, dgr, dcr| {
            let [_, _, _, dgo] = quarters_mut(dgr, h);
            hidden_row_bwd(dgo, dcr, quarters(gr, h)[3], cr, dr);
        },
    )
}

/// `h'` from `X` and `H` (`[b, 3h]`) and `h` (`[b, h]`).
fn gru_fwd(x: &[f32], hg: &[f32], hprev: &[f32], h: usize) -> Vec<f32> {
    let mut out = vec![0f32; hprev.len()];
    let rows = x
        .chunks_exact(3 * h)
        .zip(hg.chunks_exact(3 * h))
        .zip(hprev.chunks_exact(h))
        .zip(out.chunks_exact_mut(h));
    cpu::vectorised(
        #[inline(always)]
        || {
            for (((xr, hr), pr), or) in rows {
                gru_row(or, pr, thirds(xr, h), thirds(hr, h));
            }
        },
    );
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
        .zip(hprev.chunks_exact(h).zip(dout.chunks_exact(h)))
        .zip(
            dx.chunks_exact_mut(3 * h)
                .zip(dhg.chunks_exact_mut(3 * h))
                .zip(dh.chunks_exact_mut(h)),
        );
    cpu::vectorised(
        #[inline(always)]
        || {
            for (((xr, hr), (pr, dr)), ((dxr, dhr), dpr)) in rows {
                gru_row_bwd(
                    thirds_mut(dxr, h),
                    thirds_mut(dhr, h),
                    dpr,
                    thirds(xr, h),
                    thirds(hr, h),
                    pr,
                    dr,
                );
            }
        },
    );
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

/// A whole LSTM layer over a sequence as one node: every step's cell in
/// the forward pass, backpropagation through time by hand in the backward
/// pass (no autodiff nodes, gathers or stacking per step).
#[derive(Debug)]
struct LstmSequence;

/// What [`LstmSequence`]'s backward pass needs.
#[derive(Debug)]
struct SequenceSaved {
    /// Sequences, steps, hidden width.
    b: usize,
    steps: usize,
    h: usize,
    /// Gate pre-activations per step, `[T, b, 4h]`.
    gates: Vec<f32>,
    /// Cell states `c_0 = 0, c_1, …, c_T`, `[T + 1, b, h]`.
    cells: Vec<f32>,
    /// Hidden states `h_0 = 0, h_1, …, h_{T−1}` (the inputs of each step's
    /// recurrent product), `[T, b, h]`.
    hidden: Vec<f32>,
}

/// `dst (+)= a b` for row-major `a` (`m × k`) and `b` (`k × n`).
fn product(
    dst: &mut [f32],
    a: &[f32],
    (m, k): (usize, usize),
    b: faer::MatRef<'_, f32>,
    add: bool,
) {
    let n = b.ncols();
    crate::tensor::cpu::gemm(dst, n, faer::MatRef::from_row_major_slice(a, m, k), b, add);
}

/// The forward pass: the outputs `[b, T, h]` (sample-major) and what the
/// backward pass needs. `xg` holds the input products with the input bias,
/// row `i·T + t`; `wh` is `[h, 4h]`, `bh` `[4h]`.
fn sequence_fwd(
    xg: &[f32],
    wh: &[f32],
    bh: &[f32],
    b: usize,
    steps: usize,
    h: usize,
) -> (Vec<f32>, SequenceSaved) {
    let g4 = 4 * h;
    let whm = faer::MatRef::from_row_major_slice(wh, h, g4);
    let mut out = vec![0f32; b * steps * h];
    let mut gates = vec![0f32; steps * b * g4];
    let mut cells = vec![0f32; (steps + 1) * b * h];
    let mut hidden = vec![0f32; steps * b * h];
    for t in 0..steps {
        let g = &mut gates[t * b * g4..(t + 1) * b * g4];
        for (i, row) in g.chunks_exact_mut(g4).enumerate() {
            let x = &xg[(i * steps + t) * g4..(i * steps + t + 1) * g4];
            row.iter_mut()
                .zip(x)
                .zip(bh)
                .for_each(|((r, &x), &bias)| *r = x + bias);
        }
        let h_prev = &hidden[t * b * h..(t + 1) * b * h];
        if t > 0 {
            product(g, h_prev, (b, h), whm, true);
        }
        let c = lstm_cell_fwd(g, &cells[t * b * h..(t + 1) * b * h], h);
        let hn = lstm_hidden_fwd(g, &c, h);
        cells[(t + 1) * b * h..(t + 2) * b * h].copy_from_slice(&c);
        for (i, row) in hn.chunks_exact(h).enumerate() {
            out[(i * steps + t) * h..(i * steps + t + 1) * h].copy_from_slice(row);
        }
        if t + 1 < steps {
            hidden[(t + 1) * b * h..(t + 2) * b * h].copy_from_slice(&hn);
        }
    }
    let saved = SequenceSaved {
        b,
        steps,
        h,
        gates,
        cells,
        hidden,
    };
    (out, saved)
}

impl Backward<Inner, 3> for LstmSequence {
    /// What the forward pass saved, and `W_h`.
    type State = (std::sync::Arc<SequenceSaved>, Prim);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (saved, wh) = ops.state;
        let SequenceSaved { b, steps, h, .. } = *saved;
        let g4 = 4 * h;
        let dout = grads.consume::<Inner>(&ops.node);
        let (dout, wh) = (host(&dout), host(&wh));
        let wht = faer::MatRef::from_row_major_slice(&wh, h, g4).transpose();
        let mut dxg = vec![0f32; b * steps * g4];
        let mut dwh = vec![0f32; h * g4];
        let mut dbh = vec![0f32; g4];
        let mut dh_next = vec![0f32; b * h];
        let mut dc_next = vec![0f32; b * h];
        for t in (0..steps).rev() {
            let g = &saved.gates[t * b * g4..(t + 1) * b * g4];
            let c_prev = &saved.cells[t * b * h..(t + 1) * b * h];
            let c = &saved.cells[(t + 1) * b * h..(t + 2) * b * h];
            // dh_t = dout_t + (what flows back from step t + 1).
            for (i, row) in dh_next.chunks_exact_mut(h).enumerate() {
                let d = &dout[(i * steps + t) * h..(i * steps + t + 1) * h];
                row.iter_mut().zip(d).for_each(|(r, &d)| *r += d);
            }
            let (dg_o, dc_h) = lstm_hidden_bwd(g, c, &dh_next, h);
            dc_next.iter_mut().zip(&dc_h).for_each(|(a, &b)| *a += b);
            let (mut dg, dc_prev) = lstm_cell_bwd(g, c_prev, &dc_next, h);
            // The output gate's block comes from the hidden part only.
            for (row, o) in dg.chunks_exact_mut(g4).zip(dg_o.chunks_exact(g4)) {
                row[3 * h..].copy_from_slice(&o[3 * h..]);
            }
            for (i, row) in dg.chunks_exact(g4).enumerate() {
                dxg[(i * steps + t) * g4..(i * steps + t + 1) * g4].copy_from_slice(row);
            }
            crate::tensor::cpu::add_rows(&mut dbh, &dg);
            if t > 0 {
                let h_prev = &saved.hidden[t * b * h..(t + 1) * b * h];
                // dW_h += h_{t−1}ᵀ dG; dh_{t−1} = dG W_hᵀ.
                crate::tensor::cpu::gemm(
                    &mut dwh,
                    g4,
                    faer::MatRef::from_row_major_slice(h_prev, b, h).transpose(),
                    faer::MatRef::from_row_major_slice(&dg, b, g4),
                    true,
                );
                product(&mut dh_next, &dg, (b, g4), wht, false);
            }
            dc_next = dc_prev;
        }
        let [pxg, pwh, pbh] = ops.parents;
        if let Some(node) = pxg {
            grads.register::<Inner>(node.id, device_tensor(dxg, [b * steps, g4]));
        }
        if let Some(node) = pwh {
            grads.register::<Inner>(node.id, device_tensor(dwh, [h, g4]));
        }
        if let Some(node) = pbh {
            grads.register::<Inner>(node.id, crate::tensor::cpu::from_shape(dbh, &[g4]));
        }
    }
}

// ---- Entry points: `None` when `B` is not the CPU training backend --------

/// A whole LSTM layer on the CPU from zero states: the outputs `[b, T, h]`
/// for the input products `xg` (`[b·T, 4h]`, row `i·T + t`, input bias
/// included), the recurrent weight `wh` (`[h, 4h]`, gates `i, f, g, o`) and
/// bias `bh` (`[4h]`).
pub fn lstm_layer<B: Backend>(
    xg: &Tensor<B, 2>,
    wh: &Tensor<B, 2>,
    bh: &Tensor<B, 1>,
    b: usize,
    steps: usize,
) -> Option<Tensor<B, 3>> {
    if !on_cpu(&[xg, wh]) || !on_cpu(&[bh]) {
        return None;
    }
    let [h, g4] = wh.dims();
    if g4 != 4 * h || xg.dims() != [b * steps, g4] || bh.dims() != [g4] || steps == 0 || b == 0 {
        return None;
    }
    let xg = parts(cast(xg.clone())?);
    let wh = parts(cast(wh.clone())?);
    let bh = crate::tensor::cpu::tracked(bh)?;
    let run = |xg: &Prim, wh: &Prim, bh: &Prim| {
        sequence_fwd(&host(xg), &host(wh), &host(bh), b, steps, h)
    };
    let shape = [b, steps, h];
    let out = match LstmSequence
        .prepare::<NoCheckpointing>([xg.node.clone(), wh.node.clone(), bh.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, saved) = run(&xg.primitive, &wh.primitive, &bh.primitive);
            prep.finish(
                (std::sync::Arc::new(saved), wh.primitive),
                crate::tensor::cpu::from_shape(out, &shape),
            )
        }
        OpsKind::UnTracked(prep) => {
            let (out, _) = run(&xg.primitive, &wh.primitive, &bh.primitive);
            prep.finish(crate::tensor::cpu::from_shape(out, &shape))
        }
    };
    cast(Tensor::<Cpu, 3>::from_primitive(
        burn::tensor::TensorPrimitive::Float(out),
    ))
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
            .map(|i| {
                (((i as u32 + 1).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 250.0 - 2.0
            })
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

#[cfg(test)]
mod sequence_tests {
    #![allow(clippy::unwrap_used)]
    use crate::backend::Cpu;
    use burn::nn::LstmConfig;
    use burn::prelude::*;
    use burn::tensor::Distribution;

    /// `tensor::lstm_sequence` gives burn-nn's `Lstm` outputs and the same
    /// gradients for the input and every gate's weights and biases: with
    /// biases through the whole-layer node ([`super::lstm_layer`]), without
    /// through the per-step cells.
    #[test]
    fn fused_lstm_sequence_equals_burn_nn_lstm() {
        for bias in [true, false] {
            lstm_sequence_equals_burn_nn_lstm(bias);
        }
    }

    fn lstm_sequence_equals_burn_nn_lstm(bias: bool) {
        let _guard = crate::backend::training_guard();
        let device = Default::default();
        let lstm = LstmConfig::new(5, 4, bias).init::<Cpu>(&device);
        let x = Tensor::<Cpu, 3>::random([3, 6, 5], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let w = Tensor::<Cpu, 3>::random([3, 6, 4], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let y = if fused {
                crate::tensor::lstm_sequence(&lstm, x.clone())
            } else {
                lstm.forward(x.clone(), None).0
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            let mut out: Vec<Vec<f32>> = vec![
                crate::tensor::to_f32_vec(y),
                crate::tensor::to_f32_vec(Tensor::<Cpu, 3>::from_inner(x.grad(&grads).unwrap())),
            ];
            for g in [
                &lstm.input_gate,
                &lstm.forget_gate,
                &lstm.cell_gate,
                &lstm.output_gate,
            ] {
                for l in [&g.input_transform, &g.hidden_transform] {
                    let gw = Tensor::<Cpu, 2>::from_inner(l.weight.val().grad(&grads).unwrap());
                    out.push(crate::tensor::to_f32_vec(gw));
                    if let Some(b) = &l.bias {
                        let gb = Tensor::<Cpu, 1>::from_inner(b.val().grad(&grads).unwrap());
                        out.push(crate::tensor::to_f32_vec(gb));
                    }
                }
            }
            out
        };
        let (fused, burn_nn) = (run(true), run(false));
        assert_eq!(fused.len(), burn_nn.len());
        for (i, (a, b)) in fused.iter().zip(&burn_nn).enumerate() {
            let d = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-5, "bias={bias} output {i}: max difference {d}");
        }
    }
}
