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

/// NT-Xent (eq. 9) over the rows of `z` `[r, d]`: for every positive pair
/// `(α, β)`, `−log(e^{s(α,β)/τ} / (e^{s(α,β)/τ} + Σ_{(α,γ)∈N} e^{s(α,γ)/τ}))`
/// with cosine similarity `s` and the negatives that share the anchor `α`;
/// averaged over the positive pairs.
pub fn nt_xent<B: Backend>(
    z: Tensor<B, 2>,
    positive: &[(usize, usize)],
    negative: &[(usize, usize)],
    tau: f64,
) -> Tensor<B, 1> {
    nt_xent_batched(z.unsqueeze_dim(0), positive, negative, tau)
}

/// [`nt_xent`] of `K` independent matrices `z` `[K, r, d]` with the same
/// pairs (one per fused seed): `[K]`.
pub fn nt_xent_batched<B: Backend>(
    z: Tensor<B, 3>,
    positive: &[(usize, usize)],
    negative: &[(usize, usize)],
    tau: f64,
) -> Tensor<B, 1> {
    let device = z.device();
    let [k, r, _] = z.dims();
    let zn = normalize(z);
    let sims = zn.clone().matmul(zn.swap_dims(1, 2)); // [K, r, r]
    let mut mask = vec![0f32; r * r];
    for &(a, g) in negative {
        mask[a * r + g] = 1.0;
    }
    let mask = Tensor::<B, 3>::from_data(TensorData::new(mask, [1, r, r]), &device);
    let negsum = (sims.clone().div_scalar(tau).exp() * mask).sum_dim(2); // [K, r, 1]
    let q = positive.len();
    let a_idx = index::<B>(positive.iter().map(|&(a, _)| a as i64).collect(), &device);
    let p_idx: Vec<i64> = (0..k)
        .flat_map(|_| positive.iter().map(|&(_, p)| p as i64))
        .collect();
    let p_idx = Tensor::<B, 3, Int>::from_data(TensorData::new(p_idx, [k, q, 1]), &device);
    let s_ap = sims
        .select(1, a_idx.clone())
        .gather(2, p_idx)
        .div_scalar(tau); // [K, q, 1]
    let neg = negsum.select(1, a_idx);
    let loss = (s_ap.clone().exp() + neg).log() - s_ap;
    loss.reshape([k, q]).mean_dim(1).reshape([k])
}

/// Triplet loss (eqs. 10–11) with cosine distance `d = 1 − s`:
/// mean over triplets of `max(0, d(a,p) − d(a,n) + margin)`.
pub fn triplet<B: Backend>(
    z: Tensor<B, 2>,
    triplets: &[(usize, usize, usize)],
    margin: f64,
) -> Tensor<B, 1> {
    triplet_batched(z.unsqueeze_dim(0), triplets, margin)
}

/// [`triplet`] of `K` independent matrices `z` `[K, r, d]`: `[K]`.
pub fn triplet_batched<B: Backend>(
    z: Tensor<B, 3>,
    triplets: &[(usize, usize, usize)],
    margin: f64,
) -> Tensor<B, 1> {
    let device = z.device();
    let [k, _, _] = z.dims();
    let zn = normalize(z);
    let pick = |f: fn(&(usize, usize, usize)) -> usize| {
        zn.clone().select(
            1,
            index::<B>(triplets.iter().map(|t| f(t) as i64).collect(), &device),
        )
    };
    let (a, p, n) = (pick(|t| t.0), pick(|t| t.1), pick(|t| t.2));
    let s_ap = (a.clone() * p).sum_dim(2);
    let s_an = (a * n).sum_dim(2);
    (s_an - s_ap)
        .add_scalar(margin)
        .clamp_min(0.0)
        .reshape([k, triplets.len()])
        .mean_dim(1)
        .reshape([k])
}
