//! [`super::attention::scaled_dot_product`] as one autodiff node on the
//! backends without a CPU node of their own (the CUDA training backend).
//!
//! burn's composite form keeps, for every attention until the backward
//! pass, the exponentials of the scores, the dropout draws and the dropped
//! weights: three or four `[n, heads, lq, lk]` tensors, which are most of
//! FD-CMDIE's activation memory (its 3 layers run 9 attention units over
//! every encoded sequence). This node keeps `q`, `k`, `v`, the padding mask
//! and the dropout seeds, and computes the weights again in the backward
//! pass (two products, a softmax and the dropout draws more per attention):
//!
//! `S = q kᵀ / √d_k` (padding keys masked), `P = softmax(S)`, `D = P ∘ M`
//! (`M` the dropout draws times `1 / (1 − p)`), `O = D v`; backward
//! `dv = Dᵀ dO`, `dP = (dO vᵀ) ∘ M`, `dS = P ∘ (dP − rowsum(dP ∘ P))`
//! (zero at padding keys), `dq = dS k / √d_k`, `dk = dSᵀ q / √d_k`.
//!
//! The forward pass runs burn's operations in the composite form's order,
//! so its values are the composite form's bit for bit; the gradients equal
//! it to rounding. The draws are [`super::seeded_flags`]' for the call's
//! seeds in both passes (the same seeds, the same draws), so the node runs
//! only where a trainer started the thread's dropout stream
//! ([`super::draws`]) or there is no dropout; elsewhere the composite form
//! runs.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::activation::softmax;

use std::sync::atomic::{AtomicBool, Ordering};

use super::cpu::cast;

static COMPOSITE: AtomicBool = AtomicBool::new(false);

/// Runs burn's composite form instead of the node (`true`) in this process,
/// for a side-by-side measurement (`sigsweep bench train
/// --composite-attention`).
pub fn set_composite(on: bool) {
    COMPOSITE.store(on, Ordering::Relaxed);
}

/// What both passes need besides `q`, `k` and `v`.
#[derive(Debug, Clone)]
struct Setting<I: Backend> {
    /// `[n, 1, 1, lk]`, true at padding keys.
    pad: Option<Tensor<I, 4, Bool>>,
    /// The score of a padding key.
    mask_value: f64,
    /// `1 / √d_k`.
    scale: f64,
    /// The dropout rate and the call's seeds (one per seed slice).
    dropout: Option<(f64, Vec<u64>)>,
}

impl<I: Backend> Setting<I> {
    /// `P = softmax(S)` and the dropout multipliers `r` (0/1 draws; `D =
    /// P ∘ r / (1 − p)`, in that order, as burn's `Dropout`).
    fn weights(&self, q: &Tensor<I, 4>, k: &Tensor<I, 4>) -> (Tensor<I, 4>, Option<Tensor<I, 4>>) {
        let mut scores = q
            .clone()
            .matmul(k.clone().swap_dims(2, 3))
            .mul_scalar(self.scale);
        if let Some(pad) = &self.pad {
            scores = scores.mask_fill(pad.clone(), self.mask_value);
        }
        let p = softmax(scores, 3);
        let r = self
            .dropout
            .as_ref()
            .map(|(prob, seeds)| super::seeded_flags(p.dims(), *prob, seeds, &p.device()));
        (p, r)
    }

    /// `x ∘ r / (1 − p)` (no dropout: `x`).
    fn drop(&self, x: Tensor<I, 4>, r: &Option<Tensor<I, 4>>) -> Tensor<I, 4> {
        match (&self.dropout, r) {
            (Some((prob, _)), Some(r)) => x * r.clone() * (1.0 / (1.0 - prob)),
            _ => x,
        }
    }
}

#[derive(Debug)]
struct Recompute;

impl<I: Backend> Backward<I, 3> for Recompute {
    /// `q`, `k`, `v` (`[n, heads, l, d_k]`) and the [`Setting`].
    type State = (Tensor<I, 4>, Tensor<I, 4>, Tensor<I, 4>, Setting<I>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (q, k, v, setting) = ops.state;
        let [pq, pk, pv] = ops.parents;
        let dout =
            Tensor::<I, 4>::from_primitive(TensorPrimitive::Float(grads.consume::<I>(&ops.node)));
        let (p, r) = setting.weights(&q, &k);
        if let Some(node) = pv {
            let dropped = setting.drop(p.clone(), &r);
            let dv = dropped.swap_dims(2, 3).matmul(dout.clone());
            grads.register::<I>(node.id, dv.into_primitive().tensor());
        }
        if pq.is_none() && pk.is_none() {
            return;
        }
        let dp = setting.drop(dout.matmul(v.swap_dims(2, 3)), &r);
        let rows = (dp.clone() * p.clone()).sum_dim(3);
        let mut ds = p * (dp - rows);
        if let Some(pad) = &setting.pad {
            ds = ds.mask_fill(pad.clone(), 0.0);
        }
        if let Some(node) = pq {
            let dq = ds.clone().matmul(k).mul_scalar(setting.scale);
            grads.register::<I>(node.id, dq.into_primitive().tensor());
        }
        if let Some(node) = pk {
            let dk = ds.swap_dims(2, 3).matmul(q).mul_scalar(setting.scale);
            grads.register::<I>(node.id, dk.into_primitive().tensor());
        }
    }
}

/// The node on `Autodiff<I>` for `q` `[n, h, lq, d_k]`, `k`, `v`
/// `[n, h, lk, d_k]`, `pad` `[n, lk]`; `seeds` the dropout call's seeds
/// when `dropout.prob > 0`.
fn node<I: Backend>(
    q: Tensor<Autodiff<I>, 4>,
    k: Tensor<Autodiff<I>, 4>,
    v: Tensor<Autodiff<I>, 4>,
    pad: Option<Tensor<Autodiff<I>, 2, Bool>>,
    mask_value: f64,
    dropout: Option<(f64, Vec<u64>)>,
) -> Tensor<Autodiff<I>, 4> {
    let [n, _, _, d_k] = q.dims();
    let (q, k, v) = (
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
    );
    let inner = |p| Tensor::<I, 4>::from_primitive(TensorPrimitive::Float(p));
    let setting = Setting {
        pad: pad.map(|p| {
            let lk = p.dims()[1];
            p.inner().reshape([n, 1, 1, lk])
        }),
        mask_value,
        scale: 1.0 / (d_k as f64).sqrt(),
        dropout,
    };
    let (qi, ki, vi) = (
        inner(q.primitive.clone()),
        inner(k.primitive.clone()),
        inner(v.primitive.clone()),
    );
    let (p, r) = setting.weights(&qi, &ki);
    let out = setting.drop(p, &r).matmul(vi.clone());
    let out = match Recompute
        .prepare::<NoCheckpointing>([q.node, k.node, v.node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((qi, ki, vi, setting), out.into_primitive().tensor()),
        OpsKind::UnTracked(prep) => prep.finish(out.into_primitive().tensor()),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The node for `B` when `B` is `Autodiff<I>` (and training: autodiff on);
/// `None` for any other backend, or when the dropout draws could not be
/// drawn again (no dropout stream on this thread).
fn on<B: Backend, I: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    pad: &Option<Tensor<B, 2, Bool>>,
    mask_value: f64,
    dropout: &Dropout,
) -> Option<Tensor<B, 4>> {
    let q = cast::<_, Tensor<Autodiff<I>, 4>>(q.clone())?;
    let k = cast::<_, Tensor<Autodiff<I>, 4>>(k.clone())?;
    let v = cast::<_, Tensor<Autodiff<I>, 4>>(v.clone())?;
    let pad = match pad {
        Some(p) => Some(cast::<_, Tensor<Autodiff<I>, 2, Bool>>(p.clone())?),
        None => None,
    };
    let [n, _, _, _] = q.dims();
    if pad.as_ref().is_some_and(|p| p.dims()[0] != n) {
        return None;
    }
    let dropout = if dropout.prob > 0.0 {
        // Without a stream `next` draws nothing, and the composite form
        // draws from the backend's generator, as burn does.
        Some((dropout.prob, super::draws::next()?))
    } else {
        None
    };
    cast(node::<I>(q, k, v, pad, mask_value, dropout))
}

/// The recomputing node when `B` is the CUDA training backend, or the CPU
/// training backend with [`super::cpu::generic_ops`] on (its CPU nodes
/// off: the CUDA backend's graph, run on the CPU); `None` otherwise.
pub(super) fn attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    pad: &Option<Tensor<B, 2, Bool>>,
    mask_value: f64,
    dropout: &Dropout,
) -> Option<Tensor<B, 4>> {
    if !B::ad_enabled(&q.device()) || COMPOSITE.load(Ordering::Relaxed) {
        return None;
    }
    #[cfg(feature = "cuda")]
    if let Some(out) = on::<B, burn::backend::Cuda<f32>>(q, k, v, pad, mask_value, dropout) {
        return Some(out);
    }
    if super::cpu::generic_ops() {
        return on::<B, super::cpu::Inner>(q, k, v, pad, mask_value, dropout);
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use burn::prelude::*;
    use burn::tensor::Distribution;
    use burn::tensor::activation::softmax;

    use crate::backend::Cpu;
    use crate::tensor::cpu::Inner;

    /// The node gives burn's composite form's values bit for bit and its
    /// gradients to rounding, with and without padding (a sequence whose
    /// keys are all padding included) and dropout, for one seed and for
    /// two fused seeds (a slice each): the backward pass draws the forward
    /// pass's dropout again.
    #[test]
    fn recomputing_node_equals_burns_composite_form() {
        let _guard = crate::backend::training_guard();
        let device = Default::default();
        let (n, heads, lq, lk, dk) = (2, 3, 5, 4, 4);
        let pad_values = vec![
            false, false, true, false, //
            true, true, true, true,
        ];
        for with_pad in [false, true] {
            for (p, seeds) in [(0.0, vec![]), (0.3, vec![11]), (0.3, vec![11, 12])] {
                let pad = with_pad.then(|| {
                    Tensor::<Cpu, 2, Bool>::from_data(
                        TensorData::new(pad_values.clone(), [n, lk]),
                        &device,
                    )
                });
                let normal = |shape: [usize; 4]| {
                    Tensor::<Cpu, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device)
                        .require_grad()
                };
                let (q, k, v) = (
                    normal([n, heads, lq, dk]),
                    normal([n, heads, lk, dk]),
                    normal([n, heads, lk, dk]),
                );
                let w = Tensor::<Cpu, 4>::random(
                    [n, heads, lq, dk],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                );
                let dropout = (p > 0.0).then(|| (p, seeds.clone()));
                let run = |node: bool| {
                    let out = if node {
                        super::node::<Inner>(
                            q.clone(),
                            k.clone(),
                            v.clone(),
                            pad.clone(),
                            -1e4,
                            dropout.clone(),
                        )
                    } else {
                        let mut scores = q
                            .clone()
                            .matmul(k.clone().swap_dims(2, 3))
                            .mul_scalar(1.0 / (dk as f64).sqrt());
                        if let Some(pad) = &pad {
                            scores = scores.mask_fill(pad.clone().reshape([n, 1, 1, lk]), -1e4);
                        }
                        let mut weights = softmax(scores, 3);
                        if p > 0.0 {
                            let r = crate::tensor::seeded_flags::<Cpu, 4>(
                                weights.dims(),
                                p,
                                &seeds,
                                &device,
                            );
                            weights = weights * r * (1.0 / (1.0 - p));
                        }
                        weights.matmul(v.clone())
                    };
                    let grads = (out.clone() * w.clone()).sum().backward();
                    let g =
                        |t: &Tensor<Cpu, 4>| Tensor::<Cpu, 4>::from_inner(t.grad(&grads).unwrap());
                    (out, [g(&q), g(&k), g(&v)])
                };
                let ((out, grads), (want, want_grads)) = (run(true), run(false));
                let what = format!("pad {with_pad}, p {p}, seeds {seeds:?}");
                assert_eq!(
                    out.into_data().to_vec::<f32>().unwrap(),
                    want.into_data().to_vec::<f32>().unwrap(),
                    "{what}: values"
                );
                for (name, got, want) in [
                    ("q", &grads[0], &want_grads[0]),
                    ("k", &grads[1], &want_grads[1]),
                    ("v", &grads[2], &want_grads[2]),
                ] {
                    let d: f32 = (got.clone() - want.clone()).abs().max().into_scalar();
                    let scale: f32 = want.clone().abs().max().into_scalar();
                    assert!(d <= 1e-5 * scale.max(1.0), "{what}: d{name} off by {d}");
                }
            }
        }
    }
}
