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
/// tensor, and as many again backward.
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
    merge_heads(scaled_dot_product(
        split_heads(q, heads),
        split_heads(k, heads),
        split_heads(v, heads),
        pad,
        mask_value,
        dropout,
    ))
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
/// (`M` the keep flags times their scale ≈ `1 / (1 − p)`, drawn as
/// [`super::dropout`] draws them, [`cpu::keep_flags`], in the same
/// `[n, h, lq, lk]` order), `O = D v`; backward `dv = Dᵀ dO`,
/// `dP = (dO vᵀ) ∘ M`, `dS = P ∘ (dP − rowsum(dP ∘ P))` (zero
/// at masked keys), `dq = dS k / √d_k`, `dk = dSᵀ q / √d_k`.
mod cpu_node {
    use std::sync::Arc;

    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::nn::Dropout;
    use burn::prelude::*;
    use faer::{MatMut, MatRef};

    use crate::tensor::cpu::{self, Inner, Prim, host};

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

    /// What the backward pass needs besides the inputs.
    #[derive(Debug)]
    struct Saved {
        dims: Dims,
        /// `P`, `[n, h, lq, lk]`.
        probs: Vec<f32>,
        /// Dropout keep flags in the layout of `probs` (empty: no dropout),
        /// and the scale `1 / (1 − p)` of a kept weight.
        keep: Vec<u8>,
        keep_scale: f32,
        /// `[n, lk]` padding keys (empty: none).
        pad: Arc<[bool]>,
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

    /// `dst = α a b` on this thread.
    fn product(dst: MatMut<'_, f32>, a: MatRef<'_, f32>, b: MatRef<'_, f32>, alpha: f32) {
        faer::linalg::matmul::matmul(dst, faer::Accum::Replace, a, b, alpha, faer::Par::Seq);
    }

    /// A row-major `rows × cols` matrix over `x`.
    fn rows_mut(x: &mut [f32], rows: usize, cols: usize) -> MatMut<'_, f32> {
        MatMut::from_row_major_slice_mut(x, rows, cols)
    }

    fn rows(x: &[f32], rows: usize, cols: usize) -> MatRef<'_, f32> {
        MatRef::from_row_major_slice(x, rows, cols)
    }

    /// The output `O` and the weights `P` (called under
    /// [`cpu::vectorised`]).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn forward(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        dims: Dims,
        pad: &[bool],
        mask_value: f32,
        keep: &[u8],
        keep_scale: f32,
    ) -> (Vec<f32>, Vec<f32>) {
        let Dims {
            n, lq, lk, heads, ..
        } = dims;
        let (scale, block) = (dims.scale(), dims.block());
        let mut out = vec![0f32; n * lq * dims.d()];
        let mut probs = vec![0f32; n * heads * block];
        let mut d = vec![0f32; if keep.is_empty() { 0 } else { block }];
        for b in 0..n {
            let pad = (!pad.is_empty()).then(|| &pad[b * lk..(b + 1) * lk]);
            for h in 0..heads {
                let at = (b * heads + h) * block;
                let p = &mut probs[at..at + block];
                let kh = head(k, &dims, lk, b, h);
                product(
                    rows_mut(p, lq, lk),
                    head(q, &dims, lq, b, h),
                    kh.transpose(),
                    scale,
                );
                // Softmax per row, the dropped weights `D` written in the
                // same pass as the normalisation.
                let keep = (!keep.is_empty()).then(|| &keep[at..at + block]);
                for (i, row) in p.chunks_exact_mut(lk).enumerate() {
                    if let Some(pad) = pad {
                        row.iter_mut()
                            .zip(pad)
                            .filter(|(_, padded)| **padded)
                            .for_each(|(s, _)| *s = mask_value);
                    }
                    let max = cpu::max(row);
                    let inv = 1.0 / cpu::exp_sum(row, max);
                    match keep {
                        None => row.iter_mut().for_each(|s| *s *= inv),
                        Some(keep) => {
                            let cells = row
                                .iter_mut()
                                .zip(&keep[i * lk..(i + 1) * lk])
                                .zip(&mut d[i * lk..(i + 1) * lk]);
                            for ((s, &k), d) in cells {
                                *s *= inv;
                                *d = *s * f32::from(k) * keep_scale;
                            }
                        }
                    }
                }
                let weights = if keep.is_none() { &*p } else { &d[..] };
                product(
                    head_mut(&mut out, &dims, lq, b, h),
                    rows(weights, lq, lk),
                    head(v, &dims, lk, b, h),
                    1.0,
                );
            }
        }
        (out, probs)
    }

    impl Backward<Inner, 3> for Attention {
        /// The inputs `q`, `k`, `v` and what [`Saved`] holds.
        type State = (Prim, Prim, Prim, Arc<Saved>);

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (q, k, v, saved) = ops.state;
            let [pq, pk, pv] = ops.parents;
            let dout = grads.consume::<Inner>(&ops.node);
            let dims = saved.dims;
            let (q, k, v, dout) = (host(&q), host(&k), host(&v), host(&dout));
            let [dq, dk, dv] = cpu::vectorised(
                #[inline(always)]
                || gradients(&q, &k, &v, &dout, &saved),
            );
            let Dims { n, lq, lk, .. } = dims;
            let d = dims.d();
            let shape = |l: usize| [n, l, d];
            for (parent, grad, l) in [(pq, dq, lq), (pk, dk, lk), (pv, dv, lk)] {
                if let Some(node) = parent {
                    grads.register::<Inner>(node.id, cpu::from_shape(grad, &shape(l)));
                }
            }
        }
    }

    /// `[dq, dk, dv]` for the incoming `dout` (called under
    /// [`cpu::vectorised`]).
    #[inline(always)]
    fn gradients(q: &[f32], k: &[f32], v: &[f32], dout: &[f32], saved: &Saved) -> [Vec<f32>; 3] {
        let dims = saved.dims;
        let Dims {
            n, lq, lk, heads, ..
        } = dims;
        let (scale, block) = (dims.scale(), dims.block());
        let mut dq = vec![0f32; q.len()];
        let mut dk_ = vec![0f32; k.len()];
        let mut dv = vec![0f32; v.len()];
        let mut ds = vec![0f32; block];
        let mut d = vec![0f32; if saved.keep.is_empty() { 0 } else { block }];
        for b in 0..n {
            let pad = (!saved.pad.is_empty()).then(|| &saved.pad[b * lk..(b + 1) * lk]);
            for h in 0..heads {
                let at = (b * heads + h) * block;
                let p = &saved.probs[at..at + block];
                let d_o = head(&dout, &dims, lq, b, h);
                // dv = Dᵀ dO.
                let weights = if saved.keep.is_empty() {
                    p
                } else {
                    cpu::apply_keep(p, &saved.keep[at..at + block], saved.keep_scale, &mut d);
                    &d[..]
                };
                product(
                    head_mut(&mut dv, &dims, lk, b, h),
                    rows(weights, lq, lk).transpose(),
                    d_o,
                    1.0,
                );
                // dD = dO vᵀ, then dP = dD ∘ M / (1 − p).
                product(
                    rows_mut(&mut ds, lq, lk),
                    d_o,
                    head(&v, &dims, lk, b, h).transpose(),
                    1.0,
                );
                // dS = P ∘ (dP − rowsum(dP ∘ P)) / √d_k, zero at masked keys.
                let keep = (!saved.keep.is_empty()).then(|| &saved.keep[at..at + block]);
                for (i, (g, p)) in ds.chunks_exact_mut(lk).zip(p.chunks_exact(lk)).enumerate() {
                    let dot = match keep {
                        None => cpu::dot(g, p),
                        Some(keep) => {
                            cpu::keep_dot(g, &keep[i * lk..(i + 1) * lk], saved.keep_scale, p)
                        }
                    };
                    g.iter_mut()
                        .zip(p)
                        .for_each(|(g, &pj)| *g = pj * (*g - dot) * scale);
                    if let Some(pad) = pad {
                        g.iter_mut()
                            .zip(pad)
                            .filter(|(_, padded)| **padded)
                            .for_each(|(g, _)| *g = 0.0);
                    }
                }
                let ds_m = rows(&ds, lq, lk);
                product(
                    head_mut(&mut dq, &dims, lq, b, h),
                    ds_m,
                    head(&k, &dims, lk, b, h),
                    1.0,
                );
                product(
                    head_mut(&mut dk_, &dims, lk, b, h),
                    ds_m.transpose(),
                    head(&q, &dims, lq, b, h),
                    1.0,
                );
            }
        }
        [dq, dk_, dv]
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
        // Shapes that do not fit go to burn's operations, which report them.
        let pad_fits = pad.as_ref().is_none_or(|p| p.dims() == [n, lk]);
        if heads == 0
            || d % heads != 0
            || k.dims() != [n, lk, d]
            || v.dims() != [n, lk, d]
            || !pad_fits
        {
            return None;
        }
        let dims = Dims {
            n,
            lq,
            lk,
            heads,
            dk: d / heads,
        };
        let device = q.device();
        let pad: Arc<[bool]> = match pad {
            Some(p) => p.clone().into_data().into_vec::<bool>().ok()?.into(),
            None => Arc::from(Vec::new()),
        };
        let (keep, keep_scale) = if dropout.prob > 0.0 && B::ad_enabled(&device) {
            let seed = crate::tensor::dropout_seed::<B>(&device);
            cpu::keep_flags(n * heads * lq * lk, dropout.prob, seed)
        } else {
            (Vec::new(), 1.0)
        };
        let (q, k, v) = (cpu::tracked(q)?, cpu::tracked(k)?, cpu::tracked(v)?);
        let run = |q: &Prim, k: &Prim, v: &Prim| {
            let (out, probs) = cpu::vectorised(
                #[inline(always)]
                || {
                    forward(
                        &host(q),
                        &host(k),
                        &host(v),
                        dims,
                        &pad,
                        mask_value as f32,
                        &keep,
                        keep_scale,
                    )
                },
            );
            (cpu::from_shape(out, &[n, lq, d]), probs)
        };
        let out = match Attention
            .prepare::<NoCheckpointing>([q.node.clone(), k.node.clone(), v.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, probs) = run(&q.primitive, &k.primitive, &v.primitive);
                let saved = Saved {
                    dims,
                    probs,
                    keep,
                    keep_scale,
                    pad,
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

    /// The CPU node gives burn's composite attention (split heads, scores,
    /// mask, softmax, dropout, product, merged heads): outputs and the
    /// gradients of `q`, `k` and `v`, with and without padding keys (one
    /// sequence entirely padding), with and without dropout (the same
    /// generator state draws the same keep flags).
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
                    } else {
                        merge_heads(scaled_dot_product(
                            split_heads(q.clone(), heads),
                            split_heads(k.clone(), heads),
                            split_heads(v.clone(), heads),
                            &pad,
                            -1e4,
                            &dropout,
                        ))
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
