//! Multi-head attention over burn-nn's [`MultiHeadAttention`] parameters,
//! with the key/value projections separable from the query side so that a
//! key/value sequence attended to twice under the same weights (FD-CMDIE's
//! first and second cross-attention, eqs. 16/21 and 17/22) is projected
//! once.
//!
//! The mathematics is the Transformer's (and PyTorch's
//! `nn.MultiheadAttention`): `softmax(q kᵀ / √d_k)` with padding keys
//! masked out, **dropout on the attention weights**, times `v`, heads
//! concatenated, output projection. burn-nn 0.21's `MultiHeadAttention`
//! applies its dropout to the scores before the mask and the softmax
//! instead; the parameters are the same, so checkpoints are unaffected.

use burn::nn::Dropout;
use burn::nn::attention::MultiHeadAttention;
use burn::prelude::*;
use burn::tensor::activation::softmax;

/// The projected keys and values of one sequence, `[b, l, d]` (heads
/// side by side).
#[derive(Debug, Clone)]
pub struct KeyValue<B: Backend> {
    pub key: Tensor<B, 3>,
    pub value: Tensor<B, 3>,
}

/// `[b, l, d]` → `[b, heads, l, d / heads]`.
pub fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [b, l, d] = x.dims();
    x.reshape([b, l, heads, d / heads]).swap_dims(1, 2)
}

/// `[b, heads, l, d_k]` → `[b, l, heads · d_k]`.
pub fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, h, l, dk] = x.dims();
    x.swap_dims(1, 2).reshape([b, l, h * dk])
}

/// The keys and values of `kv` (`[b, l, d]`) under `m`'s projections.
pub fn key_value<B: Backend>(m: &MultiHeadAttention<B>, kv: Tensor<B, 3>) -> KeyValue<B> {
    KeyValue {
        key: super::linear_nd(&m.key, kv.clone()),
        value: super::linear_nd(&m.value, kv),
    }
}

/// `m`'s attention of `query` (`[b, lq, d]`) over the projected `kv`;
/// `pad` (`[b, lk]`, true = padding) marks keys never attended to.
/// Returns the context after the output projection, `[b, lq, d]`.
pub fn attend<B: Backend>(
    m: &MultiHeadAttention<B>,
    query: Tensor<B, 3>,
    kv: &KeyValue<B>,
    pad: &Option<Tensor<B, 2, Bool>>,
) -> Tensor<B, 3> {
    let q = super::linear_nd(&m.query, query);
    let context = multi_head(
        q,
        kv.key.clone(),
        kv.value.clone(),
        m.n_heads,
        pad,
        m.min_float,
        &m.dropout,
    );
    super::linear_nd(&m.output, context)
}

/// The attention of every head, heads side by side: `q` `[n, lq, d]`,
/// `k`, `v` `[n, lk, d]` → `[n, lq, d]` ([`scaled_dot_product`] per head).
/// On the CPU training backend one node ([`cpu_node`]): burn's form makes
/// a dozen passes over the `[n, heads, lq, lk]` weights, each a new
/// tensor, and as many again backward. On the CUDA training backend the
/// recomputing node ([`super::recompute`]): burn's operations, without
/// keeping the weights for the backward pass.
pub fn multi_head<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    heads: usize,
    pad: &Option<Tensor<B, 2, Bool>>,
    mask_value: f64,
    dropout: &Dropout,
) -> Tensor<B, 3> {
    if let Some(out) = cpu_node::attention(&q, &k, &v, heads, pad, mask_value, dropout) {
        return out;
    }
    let (q, k, v) = (
        split_heads(q, heads),
        split_heads(k, heads),
        split_heads(v, heads),
    );
    if let Some(out) = super::recompute::attention(&q, &k, &v, pad, mask_value, dropout) {
        return merge_heads(out);
    }
    merge_heads(scaled_dot_product(q, k, v, pad, mask_value, dropout))
}

/// `dropout(softmax(q kᵀ / √d_k, masked)) v` for `q`: `[n, h, lq, d_k]`,
/// `k`, `v`: `[n, h, lk, d_k]`; padding keys (`pad` `[n, lk]`) get the
/// score `mask_value` (burn's `min_float`), so a row whose keys are all
/// padding attends uniformly, as in burn.
pub fn scaled_dot_product<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    pad: &Option<Tensor<B, 2, Bool>>,
    mask_value: f64,
    dropout: &Dropout,
) -> Tensor<B, 4> {
    let d_k = q.dims()[3];
    let mut scores = q
        .matmul(k.swap_dims(2, 3))
        .mul_scalar(1.0 / (d_k as f64).sqrt());
    if let Some(pad) = pad {
        let [n, lk] = pad.dims();
        scores = scores.mask_fill(pad.clone().reshape([n, 1, 1, lk]), mask_value);
    }
    let weights = super::dropout(dropout, softmax(scores, 3));
    weights.matmul(v)
}

/// [`multi_head`] as one autodiff node on the CPU training backend, the
/// backward pass written out:
/// `S = q kᵀ / √d_k` (masked), `P = softmax(S)`, `D = P ∘ M`
/// (`M` the keep flags times their scale ≈ `1 / (1 − p)`, each head's
/// weights a part of [`cpu::Dropper`]), `O = D v`; backward `dv = Dᵀ dO`,
/// `dP = (dO vᵀ) ∘ M`, `dS = P ∘ (dP − rowsum(dP ∘ P))` (zero at masked
/// keys), `dq = dS k / √d_k`, `dk = dSᵀ q / √d_k`.
///
/// Nothing of size `[n, h, lq, lk]` is kept between the passes: the
/// backward pass computes each head's `S` again (the same product, so the
/// same bits), `P` from the saved row maxima and normalisers, and the keep
/// flags from the dropout seed. Each head's weights live in one buffer the
/// size of a head (`lq × lk`, in cache) from the first product to the
/// last; stored, the weights and flags were about 630 MB per FD-CMDIE step
/// written and read back.
mod cpu_node {
    use std::sync::Arc;

    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::nn::Dropout;
    use burn::prelude::*;
    use faer::{MatMut, MatRef};

    use crate::tensor::cpu::{self, Dropper, Inner, Prim, host};
    use crate::tensor::products;

    /// Sizes of one call: `n` sequences of `lq` queries and `lk` keys,
    /// `heads` heads of `dk` values each.
    #[derive(Debug, Clone, Copy)]
    struct Dims {
        n: usize,
        lq: usize,
        lk: usize,
        heads: usize,
        dk: usize,
    }

    impl Dims {
        fn d(&self) -> usize {
            self.heads * self.dk
        }

        /// `1 / √d_k`.
        fn scale(&self) -> f32 {
            1.0 / (self.dk as f32).sqrt()
        }

        /// Weights per head: `lq · lk`.
        fn block(&self) -> usize {
            self.lq * self.lk
        }
    }

    /// What both passes need besides `q`, `k` and `v`.
    #[derive(Debug)]
    struct Setting {
        dims: Dims,
        /// `[n, lk]` padding keys (empty: none).
        pad: Arc<[bool]>,
        /// The score of a padding key.
        mask_value: f32,
        /// Dropout on the weights, one dropper per equal slice of the `n`
        /// sequences (a fused model's seeds; empty: no dropout).
        droppers: Vec<Dropper>,
    }

    impl Setting {
        /// A buffer for one head's weights when there is dropout (empty
        /// without).
        fn per_head_dropout(&self) -> Vec<f32> {
            vec![
                0f32;
                if self.droppers.is_empty() {
                    0
                } else {
                    self.dims.block()
                }
            ]
        }

        /// The multipliers of head `h` of sequence `b` into `keep`: part
        /// `b′ · heads + h` of the dropper of `b`'s slice, `b′` its index in
        /// the slice (so a slice draws what a call on that slice alone
        /// draws). `false` without dropout. Inlined, so that it runs under
        /// the caller's [`cpu::vectorised`] target features.
        #[inline(always)]
        fn fill_keep(&self, b: usize, h: usize, keep: &mut [f32]) -> bool {
            let Some(per) = self.dims.n.checked_div(self.droppers.len()) else {
                return false;
            };
            let (slice, local) = (b / per, b % per);
            match self.droppers.get(slice) {
                Some(dropper) => {
                    dropper.fill_scaled((local * self.dims.heads + h) as u64, keep);
                    true
                }
                None => false,
            }
        }
    }

    /// What the forward pass leaves for the backward pass: per row of
    /// every head (`[n, h, lq]`), the maximum of the masked scores and the
    /// reciprocal of the sum of their exponentials.
    #[derive(Debug)]
    struct Saved {
        setting: Setting,
        max: Vec<f32>,
        inv_sum: Vec<f32>,
    }

    #[derive(Debug)]
    struct Attention;

    /// Head `h` of sequence `b` of a `[n, l, d]` buffer: an `l × dk`
    /// matrix with row stride `d`.
    fn head<'a>(x: &'a [f32], dims: &Dims, l: usize, b: usize, h: usize) -> MatRef<'a, f32> {
        let start = b * l * dims.d() + h * dims.dk;
        MatRef::from_row_major_slice_with_stride(&x[start..], l, dims.dk, dims.d())
    }

    /// [`head`], writable. Built as the transpose of a column-major view:
    /// faer 0.23.2's `MatMut::from_row_major_slice_with_stride_mut` lays
    /// the matrix out column-major (row stride 1) after checking row-major
    /// bounds, so writes through it land outside the matrix.
    fn head_mut<'a>(
        x: &'a mut [f32],
        dims: &Dims,
        l: usize,
        b: usize,
        h: usize,
    ) -> MatMut<'a, f32> {
        let start = b * l * dims.d() + h * dims.dk;
        MatMut::from_column_major_slice_with_stride_mut(&mut x[start..], dims.dk, l, dims.d())
            .transpose_mut()
    }

    /// Asks for the cache lines of the `h`-th of `parts` equal parts of
    /// sequence `b + 1` of a `[n, l, d]` buffer (nothing after the last
    /// sequence), so that they arrive while head `h` of sequence `b`
    /// computes. A sequence's heads are strided (rows of `d_k` values `d`
    /// apart); fetched from memory head by head, their products ran at
    /// about half the speed they reach with the operands in cache. One part
    /// per head spreads the requests over the sequence's work.
    #[inline(always)]
    fn prefetch_next(x: &[f32], l: usize, d: usize, (b, h): (usize, usize), parts: usize) {
        let next = x.get((b + 1) * l * d..(b + 2) * l * d).unwrap_or_default();
        let per = next.len().div_ceil(parts.max(1));
        if let Some(part) = next.chunks(per.max(1)).nth(h) {
            cpu::prefetch(part);
        }
    }

    /// `dst = α a b` on this thread.
    fn product(dst: MatMut<'_, f32>, a: MatRef<'_, f32>, b: MatRef<'_, f32>, alpha: f32) {
        let dims = (a.nrows(), a.ncols(), b.ncols());
        products::timed(products::Kind::Attention, dims, || {
            faer::linalg::matmul::matmul(dst, faer::Accum::Replace, a, b, alpha, faer::Par::Seq);
        });
    }

    /// A row-major `rows × cols` matrix over `x`.
    fn rows_mut(x: &mut [f32], rows: usize, cols: usize) -> MatMut<'_, f32> {
        MatMut::from_row_major_slice_mut(x, rows, cols)
    }

    fn rows(x: &[f32], rows: usize, cols: usize) -> MatRef<'_, f32> {
        MatRef::from_row_major_slice(x, rows, cols)
    }

    /// The masked scores `S` of head `h` of sequence `b` into `s`
    /// (`lq × lk`); both passes compute them this way.
    #[inline(always)]
    fn scores(s: &mut [f32], q: &[f32], k: &[f32], set: &Setting, b: usize, h: usize) {
        let Dims { lq, lk, .. } = set.dims;
        product(
            rows_mut(s, lq, lk),
            head(q, &set.dims, lq, b, h),
            head(k, &set.dims, lk, b, h).transpose(),
            set.dims.scale(),
        );
        if !set.pad.is_empty() {
            let (pad, masked) = (&set.pad[b * lk..(b + 1) * lk], set.mask_value);
            for row in s.chunks_exact_mut(lk) {
                for (s, &padded) in row.iter_mut().zip(pad) {
                    *s = if padded { masked } else { *s };
                }
            }
        }
    }

    /// The output `O` and the row statistics `(max, 1 / Σ exp)` (called
    /// under [`cpu::vectorised`]).
    #[inline(always)]
    fn forward(q: &[f32], k: &[f32], v: &[f32], set: &Setting) -> [Vec<f32>; 3] {
        let dims = set.dims;
        let Dims {
            n, lq, lk, heads, ..
        } = dims;
        let d = dims.d();
        let mut out = vec![0f32; n * lq * d];
        let mut max = vec![0f32; n * heads * lq];
        let mut inv_sum = vec![0f32; n * heads * lq];
        let mut s = vec![0f32; dims.block()];
        // Dropout's multipliers of one head (the keep flags times their scale).
        let mut keep = set.per_head_dropout();
        for b in 0..n {
            for h in 0..heads {
                let part = b * heads + h;
                prefetch_next(q, lq, d, (b, h), heads);
                prefetch_next(k, lk, d, (b, h), heads);
                prefetch_next(v, lk, d, (b, h), heads);
                scores(&mut s, q, k, set, b, h);
                set.fill_keep(b, h, &mut keep);
                // Softmax per row, dropout in the same pass.
                let stats = (part * lq..(part + 1) * lq).zip(s.chunks_exact_mut(lk));
                for (i, (r, row)) in stats.enumerate() {
                    let m = cpu::max(row);
                    let inv = 1.0 / cpu::exp_sum(row, m);
                    (max[r], inv_sum[r]) = (m, inv);
                    if keep.is_empty() {
                        for s in row.iter_mut() {
                            *s *= inv;
                        }
                    } else {
                        for (s, &m) in row.iter_mut().zip(&keep[i * lk..(i + 1) * lk]) {
                            *s = *s * inv * m;
                        }
                    }
                }
                product(
                    head_mut(&mut out, &dims, lq, b, h),
                    rows(&s, lq, lk),
                    head(v, &dims, lk, b, h),
                    1.0,
                );
            }
        }
        [out, max, inv_sum]
    }

    impl Backward<Inner, 3> for Attention {
        /// The inputs `q`, `k`, `v` and what [`Saved`] holds.
        type State = (Prim, Prim, Prim, Arc<Saved>);

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (q, k, v, saved) = ops.state;
            let [pq, pk, pv] = ops.parents;
            let dout = grads.consume::<Inner>(&ops.node);
            let (q, k, v, dout) = (host(&q), host(&k), host(&v), host(&dout));
            let [dq, dk, dv] = cpu::vectorised(
                #[inline(always)]
                || gradients(&q, &k, &v, &dout, &saved),
            );
            let Dims { n, lq, lk, .. } = saved.setting.dims;
            let d = saved.setting.dims.d();
            for (parent, grad, l) in [(pq, dq, lq), (pk, dk, lk), (pv, dv, lk)] {
                if let Some(node) = parent {
                    grads.register::<Inner>(node.id, cpu::from_shape(grad, &[n, l, d]));
                }
            }
        }
    }

    /// `[dq, dk, dv]` for the incoming `dout` (called under
    /// [`cpu::vectorised`]).
    #[inline(always)]
    fn gradients(q: &[f32], k: &[f32], v: &[f32], dout: &[f32], saved: &Saved) -> [Vec<f32>; 3] {
        let set = &saved.setting;
        let dims = set.dims;
        let Dims {
            n, lq, lk, heads, ..
        } = dims;
        let (scale, d) = (dims.scale(), dims.d());
        let mut dq = vec![0f32; q.len()];
        let mut dk = vec![0f32; k.len()];
        let mut dv = vec![0f32; v.len()];
        // `P`, the dropped weights `D`, and `dD` turned into `dS`.
        let mut p = vec![0f32; dims.block()];
        let mut dropped = set.per_head_dropout();
        let mut ds = vec![0f32; dims.block()];
        // Dropout's multipliers of one head (the keep flags times their scale).
        let mut keep = set.per_head_dropout();
        for b in 0..n {
            let pad = (!set.pad.is_empty()).then(|| &set.pad[b * lk..(b + 1) * lk]);
            for h in 0..heads {
                let part = b * heads + h;
                prefetch_next(q, lq, d, (b, h), heads);
                prefetch_next(k, lk, d, (b, h), heads);
                prefetch_next(v, lk, d, (b, h), heads);
                prefetch_next(dout, lq, d, (b, h), heads);
                // P again, as the forward pass computed it.
                scores(&mut p, q, k, set, b, h);
                let stats = (part * lq..(part + 1) * lq).zip(p.chunks_exact_mut(lk));
                for (r, row) in stats {
                    cpu::exp_scaled(row, saved.max[r], saved.inv_sum[r]);
                }
                let weights = if set.fill_keep(b, h, &mut keep) {
                    for ((d, &p), &m) in dropped.iter_mut().zip(&p).zip(&keep) {
                        *d = p * m;
                    }
                    &dropped[..]
                } else {
                    &p[..]
                };
                let d_o = head(dout, &dims, lq, b, h);
                // dv = Dᵀ dO.
                product(
                    head_mut(&mut dv, &dims, lk, b, h),
                    rows(weights, lq, lk).transpose(),
                    d_o,
                    1.0,
                );
                // dD = dO vᵀ (dP = dD ∘ M is formed where it is read, below).
                product(
                    rows_mut(&mut ds, lq, lk),
                    d_o,
                    head(v, &dims, lk, b, h).transpose(),
                    1.0,
                );
                // dS = P ∘ (dP − rowsum(dP ∘ P)) / √d_k, zero at masked keys.
                let rows_ = ds.chunks_exact_mut(lk).zip(p.chunks_exact(lk));
                for (i, (g, p)) in rows_.enumerate() {
                    if keep.is_empty() {
                        let dot = cpu::dot(g, p);
                        for (g, &pj) in g.iter_mut().zip(p) {
                            *g = pj * (*g - dot) * scale;
                        }
                    } else {
                        let m = &keep[i * lk..(i + 1) * lk];
                        let dot = cpu::keep_dot(g, m, p);
                        for ((g, &mj), &pj) in g.iter_mut().zip(m).zip(p) {
                            *g = pj * (*g * mj - dot) * scale;
                        }
                    }
                    if let Some(pad) = pad {
                        for (g, &padded) in g.iter_mut().zip(pad) {
                            *g = if padded { 0.0 } else { *g };
                        }
                    }
                }
                let ds_m = rows(&ds, lq, lk);
                product(
                    head_mut(&mut dq, &dims, lq, b, h),
                    ds_m,
                    head(k, &dims, lk, b, h),
                    1.0,
                );
                product(
                    head_mut(&mut dk, &dims, lk, b, h),
                    ds_m.transpose(),
                    head(q, &dims, lq, b, h),
                    1.0,
                );
            }
        }
        [dq, dk, dv]
    }

    /// The node, when `q`, `k`, `v` are on the CPU training backend.
    pub(super) fn attention<B: Backend>(
        q: &Tensor<B, 3>,
        k: &Tensor<B, 3>,
        v: &Tensor<B, 3>,
        heads: usize,
        pad: &Option<Tensor<B, 2, Bool>>,
        mask_value: f64,
        dropout: &Dropout,
    ) -> Option<Tensor<B, 3>> {
        if !cpu::on_cpu(&[q, k, v]) {
            return None;
        }
        let [n, lq, d] = q.dims();
        let [_, lk, _] = k.dims();
        // Shapes that do not fit, and empty ones, go to burn's operations,
        // which report them.
        let pad_fits = pad.as_ref().is_none_or(|p| p.dims() == [n, lk]);
        if heads == 0
            || n * lq * lk * d == 0
            || d % heads != 0
            || k.dims() != [n, lk, d]
            || v.dims() != [n, lk, d]
            || !pad_fits
        {
            return None;
        }
        let device = q.device();
        let pad: Arc<[bool]> = match pad {
            Some(p) => p.clone().into_data().into_vec::<bool>().ok()?.into(),
            None => Arc::from(Vec::new()),
        };
        let droppers: Vec<Dropper> = if dropout.prob > 0.0 && B::ad_enabled(&device) {
            let seeds = crate::tensor::dropout_seeds::<B>(&device);
            if seeds.is_empty() || !n.is_multiple_of(seeds.len()) {
                return None;
            }
            seeds
                .iter()
                .map(|&seed| Dropper::new(dropout.prob, seed))
                .collect()
        } else {
            Vec::new()
        };
        let setting = Setting {
            dims: Dims {
                n,
                lq,
                lk,
                heads,
                dk: d / heads,
            },
            pad,
            mask_value: mask_value as f32,
            droppers,
        };
        let (q, k, v) = (cpu::tracked(q)?, cpu::tracked(k)?, cpu::tracked(v)?);
        let run = |q: &Prim, k: &Prim, v: &Prim| {
            let (q, k, v) = (host(q), host(k), host(v));
            let [out, max, inv_sum] = cpu::vectorised(
                #[inline(always)]
                || forward(&q, &k, &v, &setting),
            );
            (cpu::from_shape(out, &[n, lq, d]), max, inv_sum)
        };
        let out = match Attention
            .prepare::<NoCheckpointing>([q.node.clone(), k.node.clone(), v.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, max, inv_sum) = run(&q.primitive, &k.primitive, &v.primitive);
                let saved = Saved {
                    setting,
                    max,
                    inv_sum,
                };
                prep.finish(
                    (q.primitive, k.primitive, v.primitive, Arc::new(saved)),
                    out,
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(run(&q.primitive, &k.primitive, &v.primitive).0)
            }
        };
        cpu::output(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use burn::nn::DropoutConfig;
    use burn::prelude::*;
    use burn::tensor::Distribution;

    use super::*;
    use crate::tensor::cpu::Cpu;

    /// Empty sequences are left to burn's operations (the node's loops
    /// take rows of at least one key).
    #[test]
    fn cpu_node_leaves_empty_sequences_to_burn() {
        let _guard = crate::backend::training_guard();
        let device = Default::default();
        let dropout = DropoutConfig::new(0.1).init();
        let q = Tensor::<Cpu, 3>::zeros([2, 3, 4], &device).require_grad();
        let none = Tensor::<Cpu, 3>::zeros([2, 0, 4], &device).require_grad();
        assert!(cpu_node::attention(&q, &none, &none, 2, &None, -1e4, &dropout).is_none());
        assert!(cpu_node::attention(&none, &q, &q, 2, &None, -1e4, &dropout).is_none());
    }

    /// The CPU node gives burn's composite attention (split heads, scores,
    /// mask, softmax, dropout, product, merged heads): outputs and the
    /// gradients of `q`, `k` and `v`, with and without padding keys (one
    /// sequence entirely padding), with and without dropout (the composite
    /// then multiplies the weights by the node's keep flags: head `(b, h)`
    /// is part `b · heads + h` of the dropper seeded as the node seeds it).
    #[test]
    fn cpu_attention_node_equals_burns_composite() {
        let _guard = crate::backend::training_guard();
        let device = Default::default();
        let (n, lq, lk, heads, d) = (3, 5, 4, 2, 6);
        let pad_values = vec![
            false, false, true, true, //
            false, false, false, false, //
            true, true, true, true,
        ];
        for with_pad in [false, true] {
            for p in [0.0, 0.3] {
                let dropout = DropoutConfig::new(p).init();
                let pad = with_pad.then(|| {
                    Tensor::<Cpu, 2, Bool>::from_data(
                        TensorData::new(pad_values.clone(), [n, lk]),
                        &device,
                    )
                });
                let normal = |shape: [usize; 3]| {
                    Tensor::<Cpu, 3>::random(shape, Distribution::Normal(0.0, 1.0), &device)
                        .require_grad()
                };
                let (q, k, v) = (normal([n, lq, d]), normal([n, lk, d]), normal([n, lk, d]));
                let w =
                    Tensor::<Cpu, 3>::random([n, lq, d], Distribution::Normal(0.0, 1.0), &device);
                let run = |node: bool| {
                    Cpu::seed(&device, 7);
                    let out = if node {
                        multi_head(q.clone(), k.clone(), v.clone(), heads, &pad, -1e4, &dropout)
                    } else if p == 0.0 {
                        merge_heads(scaled_dot_product(
                            split_heads(q.clone(), heads),
                            split_heads(k.clone(), heads),
                            split_heads(v.clone(), heads),
                            &pad,
                            -1e4,
                            &dropout,
                        ))
                    } else {
                        let seed = crate::tensor::dropout_seed::<Cpu>(&device);
                        let dropper = crate::tensor::cpu::Dropper::new(p, seed);
                        let mut flags = vec![0u8; n * heads * lq * lk];
                        for (part, f) in flags.chunks_exact_mut(lq * lk).enumerate() {
                            dropper.fill(part as u64, f);
                        }
                        let keep = flags.iter().map(|&f| f32::from(f) * dropper.scale);
                        let keep = Tensor::<Cpu, 4>::from_data(
                            TensorData::new(keep.collect::<Vec<_>>(), [n, heads, lq, lk]),
                            &device,
                        );
                        let mut scores = split_heads(q.clone(), heads)
                            .matmul(split_heads(k.clone(), heads).swap_dims(2, 3))
                            .mul_scalar(1.0 / ((d / heads) as f64).sqrt());
                        if let Some(pad) = &pad {
                            scores = scores.mask_fill(pad.clone().reshape([n, 1, 1, lk]), -1e4);
                        }
                        let weights = softmax(scores, 3) * keep;
                        merge_heads(weights.matmul(split_heads(v.clone(), heads)))
                    };
                    let grads = (out.clone() * w.clone()).sum().backward();
                    let g =
                        |t: &Tensor<Cpu, 3>| Tensor::<Cpu, 3>::from_inner(t.grad(&grads).unwrap());
                    [out, g(&q), g(&k), g(&v)]
                };
                for (i, (a, b)) in run(true).into_iter().zip(run(false)).enumerate() {
                    let diff: f32 = (a - b).abs().max().into_scalar();
                    assert!(diff < 1e-5, "pad={with_pad} p={p} output {i}: {diff}");
                }
            }
        }
    }
}
