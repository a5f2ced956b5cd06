//! Contrastive learning of FD-CMDIE §2.3.2: per-sample similar/different
//! sets (eqs. 7–8), in-sample and cross-sample positive/negative pairs,
//! NT-Xent (eq. 9) and the cosine triplet loss (eqs. 10–11).

use burn::prelude::*;
use sigsweep_data::seq::{Array3, SeqSplit};

/// The 7-class sentiment label of a regression label: clip to [-3, 3] and
/// round half to even (numpy's rounding, as in the MMSA metrics).
pub fn label_class(y: f32) -> i32 {
    f64::from(y.clamp(-3.0, 3.0)).round_ties_even() as i32
}

/// Similar and different sets of every training sample.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClSets {
    /// `similar[i]`: up to `k` samples with the same 7-class label, most
    /// similar first (never `i` itself unless `i` has no same-label peer).
    pub similar: Vec<Vec<usize>>,
    /// `different[i]`: up to `k` samples with another label, least similar
    /// first (`[i]` when every sample shares `i`'s label).
    pub different: Vec<Vec<usize>>,
}

/// Picks sample `i`'s sets from its similarity row: the `k` most similar
/// samples with the same class (excluding `i`) and the `k` least similar
/// samples with a different class. Ties go to the lower index. Empty sets
/// fall back to `[i]` so sampling never fails.
pub fn select_sets(sims: &[f32], i: usize, classes: &[i32], k: usize) -> (Vec<usize>, Vec<usize>) {
    let c = classes[i];
    let mut same: Vec<(f32, usize)> = Vec::new();
    let mut diff: Vec<(f32, usize)> = Vec::new();
    for (j, (&s, &cj)) in sims.iter().zip(classes).enumerate() {
        let s = if s.is_nan() { 0.0 } else { s };
        if j == i {
            continue;
        }
        if cj == c {
            same.push((s, j));
        } else {
            diff.push((s, j));
        }
    }
    let desc = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    let asc = |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    type Cmp<'a> = &'a dyn Fn(&(f32, usize), &(f32, usize)) -> std::cmp::Ordering;
    let top = |mut v: Vec<(f32, usize)>, cmp: Cmp<'_>| {
        if v.len() > k && k > 0 {
            v.select_nth_unstable_by(k - 1, cmp);
            v.truncate(k);
        }
        v.truncate(k);
        v.sort_by(cmp);
        let out: Vec<usize> = v.into_iter().map(|(_, j)| j).collect();
        if out.is_empty() { vec![i] } else { out }
    };
    (top(same, &desc), top(diff, &asc))
}

/// Per-sample retrieval features (ConFEDE-style): every modality averaged
/// over time (over the true length when the split has lengths), the three
/// means concatenated `[t; v; a]`, then min-max scaled per dimension over the
/// split. Returns `[n, dim]` row-major and `dim`.
pub fn retrieval_features(split: &SeqSplit) -> (Vec<f32>, usize) {
    let n = split.len();
    let mods: [(&Array3, Option<&Vec<usize>>); 3] = [
        (&split.text, None),
        (&split.vision, split.vision_lengths.as_ref()),
        (&split.audio, split.audio_lengths.as_ref()),
    ];
    let dim: usize = mods.iter().map(|(a, _)| a.shape[2]).sum();
    let mut out = vec![0f32; n * dim];
    for i in 0..n {
        let mut off = 0;
        for (a, lens) in mods {
            let [_, len, d] = a.shape;
            let valid = lens
                .and_then(|l| l.get(i).copied())
                .unwrap_or(len)
                .clamp(1, len.max(1));
            let x = a.sample(i);
            let row = &mut out[i * dim + off..i * dim + off + d];
            for t in 0..valid.min(len) {
                for (r, v) in row.iter_mut().zip(&x[t * d..(t + 1) * d]) {
                    *r += if v.is_finite() { *v } else { 0.0 };
                }
            }
            for r in row.iter_mut() {
                *r /= valid as f32;
            }
            off += d;
        }
    }
    for c in 0..dim {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for i in 0..n {
            lo = lo.min(out[i * dim + c]);
            hi = hi.max(out[i * dim + c]);
        }
        let range = hi - lo;
        for i in 0..n {
            let v = &mut out[i * dim + c];
            *v = if range > 0.0 { (*v - lo) / range } else { 0.0 };
        }
    }
    (out, dim)
}

/// Builds the similar/different sets of `n` samples from `[n, dim]`
/// features by cosine similarity (eqs. 7–8). The similarity matrix is
/// computed in row blocks with a matmul on `B`.
pub fn build_sets<B: Backend>(
    features: &[f32],
    dim: usize,
    classes: &[i32],
    k: usize,
    device: &B::Device,
) -> ClSets {
    let n = classes.len();
    let mut normed = features.to_vec();
    for row in normed.chunks_mut(dim.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    let all = Tensor::<B, 2>::from_data(TensorData::new(normed, [n, dim]), device);
    let all_t = all.clone().transpose();
    let mut sets = ClSets::default();
    let block = 512;
    let mut start = 0;
    while start < n {
        let end = (start + block).min(n);
        let sims = all
            .clone()
            .slice([start..end, 0..dim])
            .matmul(all_t.clone());
        let data = sims.into_data().convert::<f32>();
        let values = data
            .as_slice::<f32>()
            .map(<[f32]>::to_vec)
            .unwrap_or_default();
        for (r, row) in values.chunks(n).enumerate() {
            let (s, d) = select_sets(row, start + r, classes, k);
            sets.similar.push(s);
            sets.different.push(d);
        }
        start = end;
    }
    sets
}

/// Feature kinds of the contrastive matrix, in row-block order.
pub const TS: usize = 0;
pub const VS: usize = 1;
pub const AS: usize = 2;
pub const TD: usize = 3;
pub const VD: usize = 4;
pub const AD: usize = 5;

/// Pairs of one contrastive batch, as rows of the matrix
/// `Z = [T_s; V_s; A_s; T_d; V_d; A_d]` (each block `[e, d]` over the
/// extended batch of `e = b·(1 + p + n)` samples: the `b` anchors, then
/// `p` similar samples per anchor, then `n` different samples per anchor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClPairs {
    pub positive: Vec<(usize, usize)>,
    pub negative: Vec<(usize, usize)>,
    pub triplets: Vec<(usize, usize, usize)>,
}

/// Slot of anchor `i`'s `q`-th similar sample in the extended batch.
pub fn similar_slot(b: usize, p: usize, i: usize, q: usize) -> usize {
    b + i * p + q
}

/// Slot of anchor `i`'s `q`-th different sample in the extended batch.
pub fn different_slot(b: usize, p: usize, n: usize, i: usize, q: usize) -> usize {
    b + b * p + i * n + q
}

/// The pairs of §2.3.2 for `b` anchors with `p` similar and `n` different
/// samples drawn each:
/// * `Positive_in`: `(T_s, V_s)`, `(T_s, A_s)` of the anchor and of each similar sample;
/// * `Positive_out`: same-modality similarity features of anchor and similar sample;
/// * `Negative_in`: `(T_s, X_d)` for X ∈ {T, V, A} of the anchor and of each similar sample;
/// * `Negative_out`: same-modality similarity features of anchor and different sample;
/// * triplets: anchor `T_s^i`, positives `V_s^i, A_s^i`, negatives `T_d^i, V_d^i, A_d^i`.
pub fn build_pairs(b: usize, p: usize, n: usize) -> ClPairs {
    let e = b * (1 + p + n);
    let row = |kind: usize, slot: usize| kind * e + slot;
    let mut out = ClPairs::default();
    for i in 0..b {
        let sims: Vec<usize> = (0..p).map(|q| similar_slot(b, p, i, q)).collect();
        let diffs: Vec<usize> = (0..n).map(|q| different_slot(b, p, n, i, q)).collect();
        for &s in std::iter::once(&i).chain(&sims) {
            out.positive.push((row(TS, s), row(VS, s)));
            out.positive.push((row(TS, s), row(AS, s)));
            for kind in [TD, VD, AD] {
                out.negative.push((row(TS, s), row(kind, s)));
            }
        }
        for &j in &sims {
            for kind in [TS, VS, AS] {
                out.positive.push((row(kind, i), row(kind, j)));
            }
        }
        for &j in &diffs {
            for kind in [TS, VS, AS] {
                out.negative.push((row(kind, i), row(kind, j)));
            }
        }
        for pos in [VS, AS] {
            for neg in [TD, VD, AD] {
                out.triplets.push((row(TS, i), row(pos, i), row(neg, i)));
            }
        }
    }
    out
}

/// Rows of `z` (its last axis) scaled to unit L2 norm.
pub fn normalize<B: Backend, const D: usize>(z: Tensor<B, D>) -> Tensor<B, D> {
    let norm = z
        .clone()
        .powf_scalar(2.0)
        .sum_dim(D - 1)
        .sqrt()
        .clamp_min(1e-8);
    z / norm
}

fn index<B: Backend>(idx: Vec<i64>, device: &B::Device) -> Tensor<B, 1, Int> {
    let n = idx.len();
    Tensor::from_data(TensorData::new(idx, [n]), device)
}

/// Additive mask of a denominator term that is not there.
const ABSENT: f32 = -1e30;

/// Pairs of one contrastive batch whose samples are present, per seed.
///
/// The slots of an extended batch (see [`ClPairs`]) are fixed by the batch
/// size and the number of slots per anchor; a slot is *inactive* when its
/// anchor has fewer similar (or different) samples than slots — a class
/// with fewer than `k_cl` other samples — and every pair touching an
/// inactive slot is left out of eqs. (9)–(12).
fn row_active(active: &[bool], e: usize, row: usize) -> bool {
    active.is_empty() || e == 0 || active.get(row % e).copied().unwrap_or(true)
}

/// FD-CMDIE's contrastive loss, eqs. (9)–(12), of `K` independent matrices
/// `z` `[K, 6e, d]` (one per fused seed; `K = 1` unfused) over `b` anchors,
/// with the pairs of [`build_pairs`] and, per seed, which of the `e` slots
/// of the extended batch are present (`active[k]`; empty = all):
///
/// * eq. (9): `ℓ^i = Σ_{(α,β)∈P^i} −log(e^{s(α,β)/τ} / Σ_{(α,γ)∈P^i∪N^i, γ≠β} e^{s(α,γ)/τ})`
///   with cosine similarity `s` — the denominator as printed: every pair of
///   anchor i's that starts at `α`, positive or negative, except `(α,β)`;
/// * eqs. (10)–(11): `ℓ_Tri^i = Σ max(0, d(a,p) − d(a,n) + margin)`, `d = 1 − s`;
/// * eq. (12): `L_cl = (1/n) Σ_i ℓ^i + λ_Tri · (1/n) Σ_i ℓ_Tri^i`, `n = b`.
///
/// Returns `[NT-Xent part, triplet part]` per seed as `([K], [K])`; the
/// caller weighs the triplet part by `λ_Tri`. A positive pair whose anchor
/// row has no other present pair has an empty denominator and is skipped.
pub fn cl_loss_batched<B: Backend>(
    z: Tensor<B, 3>,
    pairs: &ClPairs,
    active: &[Vec<bool>],
    b: usize,
    tau: f64,
    margin: f64,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let device = z.device();
    let [k, r, _] = z.dims();
    let e = r / 6;
    let zn = normalize(z);
    // Every pair of P ∪ N once: positives first, then negatives.
    let all: Vec<(usize, usize)> = pairs
        .positive
        .iter()
        .chain(&pairs.negative)
        .copied()
        .collect();
    let pick = |rows: Vec<i64>| zn.clone().select(1, index::<B>(rows, &device));
    let left = pick(all.iter().map(|&(a, _)| a as i64).collect());
    let right = pick(all.iter().map(|&(_, g)| g as i64).collect());
    let sims = (left * right)
        .sum_dim(2)
        .reshape([k, all.len()])
        .div_scalar(tau);
    // Partners of each row: the indices (into `all`) of the pairs starting there.
    let mut partners: std::collections::HashMap<usize, Vec<usize>> = Default::default();
    for (u, &(a, _)) in all.iter().enumerate() {
        partners.entry(a).or_default().push(u);
    }
    let q = pairs.positive.len();
    let m = pairs
        .positive
        .iter()
        .map(|(a, _)| partners[a].len().saturating_sub(1))
        .max()
        .unwrap_or(0)
        .max(1);
    let mut gather = Vec::with_capacity(k * q * m);
    let mut mask = Vec::with_capacity(k * q * m);
    let mut weight = Vec::with_capacity(k * q);
    for seed in 0..k {
        let act = active.get(seed).map(Vec::as_slice).unwrap_or(&[]);
        for (u, &(a, g)) in pairs.positive.iter().enumerate() {
            let mut present = 0;
            let list = &partners[&a];
            for slot in 0..m {
                let other = list.iter().copied().filter(|&v| v != u).nth(slot);
                match other {
                    Some(v) if row_active(act, e, all[v].1) => {
                        gather.push(v as i64);
                        mask.push(0.0);
                        present += 1;
                    }
                    _ => {
                        gather.push(u as i64);
                        mask.push(ABSENT);
                    }
                }
            }
            let on = row_active(act, e, a) && row_active(act, e, g) && present > 0;
            weight.push(if on { 1.0f32 } else { 0.0 });
        }
    }
    let gather = Tensor::<B, 2, Int>::from_data(TensorData::new(gather, [k, q * m]), &device);
    let mask = Tensor::<B, 3>::from_data(TensorData::new(mask, [k, q, m]), &device);
    let weight = Tensor::<B, 2>::from_data(TensorData::new(weight, [k, q]), &device);
    let s_pos = sims.clone().slice([0..k, 0..q]);
    let terms = sims.gather(1, gather).reshape([k, q, m]) + mask;
    let top = terms.clone().max_dim(2).detach();
    let denom = ((terms - top.clone()).exp().sum_dim(2).log() + top).reshape([k, q]);
    let nt = ((denom - s_pos) * weight).sum_dim(1).reshape([k]) / b.max(1) as f64;

    let tri = if pairs.triplets.is_empty() {
        Tensor::zeros([k], &device)
    } else {
        let t = &pairs.triplets;
        let (a, p, n) = (
            pick(t.iter().map(|x| x.0 as i64).collect()),
            pick(t.iter().map(|x| x.1 as i64).collect()),
            pick(t.iter().map(|x| x.2 as i64).collect()),
        );
        let s_ap = (a.clone() * p).sum_dim(2);
        let s_an = (a * n).sum_dim(2);
        // d(a,p) − d(a,n) = s(a,n) − s(a,p).
        (s_an - s_ap)
            .add_scalar(margin)
            .clamp_min(0.0)
            .reshape([k, t.len()])
            .sum_dim(1)
            .reshape([k])
            / b.max(1) as f64
    };
    (nt, tri)
}

/// [`cl_loss_batched`] of one matrix `z` `[6e, d]` with every slot in
/// `active` (empty = all present): `(NT-Xent part, triplet part)`.
pub fn cl_loss<B: Backend>(
    z: Tensor<B, 2>,
    pairs: &ClPairs,
    active: &[bool],
    b: usize,
    tau: f64,
    margin: f64,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    cl_loss_batched(
        z.unsqueeze_dim(0),
        pairs,
        &[active.to_vec()],
        b,
        tau,
        margin,
    )
}

/// Which contrastive samples an anchor is paired with (`cl_pairs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairMode {
    /// The paper: every member of `similar^i` and `different^i` (k_cl each).
    All,
    /// ConFEDE-style: `cl_samples` members drawn with replacement from each
    /// set per step.
    Sampled,
}

/// The samples of one contrastive batch: the `b` anchors, then `per_anchor`
/// similar-sample slots per anchor, then `per_anchor` different-sample
/// slots per anchor; `active[slot]` is false for a padding slot (an anchor
/// with fewer set members than slots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClBatch {
    pub samples: Vec<usize>,
    pub active: Vec<bool>,
    pub per_anchor: usize,
}

/// The extended batch of `anchors` with [`PairMode::All`]: each anchor's
/// whole similar and different set, padded to `k` slots with the anchor
/// itself (inactive). A set that is only the anchor (select_sets' fallback
/// when it has no peer) contributes no pair.
pub fn all_members(sets: &ClSets, anchors: &[usize], k: usize) -> ClBatch {
    let mut samples = anchors.to_vec();
    let mut active = vec![true; anchors.len()];
    for pool in [&sets.similar, &sets.different] {
        for &i in anchors {
            let members: Vec<usize> = pool[i].iter().copied().filter(|&j| j != i).collect();
            for slot in 0..k {
                match members.get(slot) {
                    Some(&j) => {
                        samples.push(j);
                        active.push(true);
                    }
                    None => {
                        samples.push(i);
                        active.push(false);
                    }
                }
            }
        }
    }
    ClBatch {
        samples,
        active,
        per_anchor: k,
    }
}
