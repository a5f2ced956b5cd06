//! MMIC's losses as plain tensor functions (each tested against a hand
//! computation in `worker/tests/mmic.rs`).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Row-wise L2 normalisation (`x / max(‖x‖, 1e-8)`).
pub fn normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-8);
    x / norm
}

/// Row-wise `log Σ_j exp(x_ij)` (stable), `[n, 1]`.
pub fn logsumexp_rows<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let m = x.clone().max_dim(1).detach();
    (x - m.clone()).exp().sum_dim(1).log() + m
}

/// Focal loss (MM-DFN): `−mean_i (1 − p_i)^γ · α_{y_i} · log p_i` with `p_i`
/// the probability of the true class taken without gradient; `γ = 0` is
/// the plain (optionally class-weighted) cross-entropy. `class_weights`:
/// one weight per class or empty.
pub fn focal_loss<B: Backend>(
    logits: Tensor<B, 2>,
    labels: &[usize],
    gamma: f64,
    class_weights: &[f32],
) -> Tensor<B, 1> {
    let device = logits.device();
    let n = labels.len();
    let idx = Tensor::<B, 2, Int>::from_data(
        TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [n, 1]),
        &device,
    );
    let logp = log_softmax(logits, 1).gather(1, idx);
    let mut per = logp.clone();
    if gamma != 0.0 {
        let pt = logp.detach().exp();
        per = per * (pt.neg() + 1.0).clamp_min(0.0).powf_scalar(gamma);
    }
    if !class_weights.is_empty() {
        let w: Vec<f32> = labels.iter().map(|&l| class_weights[l]).collect();
        per = per * Tensor::<B, 2>::from_data(TensorData::new(w, [n, 1]), &device);
    }
    per.mean().neg()
}

/// Supervised contrastive loss (SupCon, MMIC eq. 7–9) over the rows of `z`
/// (L2-normalised here), temperature `tau`, averaged over anchors.
///
/// `with_copy`: the views are `X = [z; detach(z)]` (eq. 7, 2N rows). As eqs.
/// (8)–(9) print them, the positives of anchor `i` are `P(i)`: every row
/// with its label but `i` itself, so its own copy `N + i` is one; the
/// denominator runs over `A(i) = I − {i, N + i}`: every row but the anchor
/// and its copy. The copies are constants, gradients reach `z` only through
/// its live rows. Without the copy (`with_copy = false`), `A(i) = I − {i}`
/// and anchors without a positive are left out of the mean (0 if none).
pub fn supcon_loss<B: Backend>(
    z: Tensor<B, 2>,
    labels: &[usize],
    tau: f64,
    with_copy: bool,
) -> Tensor<B, 1> {
    let device = z.device();
    let n = labels.len();
    let zn = normalize(z);
    let (sim, views) = if with_copy {
        let zd = zn.clone().detach();
        let s_ll = zn.clone().matmul(zn.clone().transpose());
        let s_ld = zn.matmul(zd.transpose());
        let s_dl = s_ld.clone().transpose();
        let s_dd = s_ll.clone().detach();
        let top = Tensor::cat(vec![s_ll, s_ld], 1);
        let bottom = Tensor::cat(vec![s_dl, s_dd], 1);
        (Tensor::cat(vec![top, bottom], 0), 2 * n)
    } else {
        (zn.clone().matmul(zn.transpose()), n)
    };
    let sim = sim / tau;
    let mut pos = vec![0f32; views * views];
    let mut not_self = vec![1f32; views * views];
    let mut has_pos = vec![0f32; views];
    let mut inv_count = vec![0f32; views];
    for a in 0..views {
        not_self[a * views + a] = 0.0;
        if with_copy {
            // A(i) = I − {i, N + i}: the anchor's copy is no denominator term.
            not_self[a * views + (a + n) % views] = 0.0;
        }
        let mut count = 0usize;
        for b in 0..views {
            if a != b && labels[a % n] == labels[b % n] {
                pos[a * views + b] = 1.0;
                count += 1;
            }
        }
        if count > 0 {
            has_pos[a] = 1.0;
            inv_count[a] = 1.0 / count as f32;
        }
    }
    let anchors: f32 = has_pos.iter().sum();
    if anchors == 0.0 {
        return (crate::tensor::sum_all(sim) * 0.0).reshape([1]);
    }
    let t = |v: Vec<f32>, shape: [usize; 2]| {
        Tensor::<B, 2>::from_data(TensorData::new(v, shape), &device)
    };
    let not_self = t(not_self, [views, views]);
    let pos = t(pos, [views, views]);
    let m = sim.clone().max_dim(1).detach();
    let shifted = sim - m;
    let denom = (shifted.clone().exp() * not_self).sum_dim(1).log();
    let log_prob = shifted - denom;
    let per_anchor = (log_prob * pos).sum_dim(1) * t(inv_count, [views, 1]);
    (crate::tensor::sum_all(per_anchor).neg() / anchors as f64).reshape([1])
}

/// CPC / InfoNCE between modality representations `h` and the predictions
/// `pred = G(fusion)` (MMIM D.3, MMIC eq. 14–17): both L2-normalised,
/// `s_ij = ⟨h_i, pred_j⟩`, `−mean_i (s_ii − log Σ_j exp s_ij)`.
pub fn cpc_loss<B: Backend>(h: Tensor<B, 2>, pred: Tensor<B, 2>) -> Tensor<B, 1> {
    let h = normalize(h);
    let p = normalize(pred);
    let pos = (h.clone() * p.clone()).sum_dim(1);
    let scores = h.matmul(p.transpose());
    (pos - logsumexp_rows(scores)).mean().neg()
}

/// Gaussian log-likelihood of `y` under `N(mu, diag(exp(logvar)))`, summed
/// over dimensions and averaged over rows, without the `−½ log 2π`
/// constant: `mean_i Σ_d −½ [(y − μ)² e^{−logvar} + logvar]`.
pub fn gaussian_lld<B: Backend>(
    mu: Tensor<B, 2>,
    logvar: Tensor<B, 2>,
    y: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let sq = (y - mu).powf_scalar(2.0);
    let per = (sq * logvar.clone().neg().exp() + logvar) * (-0.5);
    per.sum_dim(1).mean()
}

/// Biased covariance `mean_i (x_i − μ)(x_i − μ)ᵀ`, `[d, d]`.
pub fn covariance<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let [n, _] = x.dims();
    let c = x.clone() - x.mean_dim(0);
    c.clone().transpose().matmul(c) / n as f64
}

/// `log det` of a symmetric positive-definite `[d, d]` matrix through a
/// Cholesky factorisation written in tensor ops (differentiable; meant
/// for small `d`).
pub fn logdet_spd<B: Backend>(m: Tensor<B, 2>) -> Tensor<B, 1> {
    let [d, _] = m.dims();
    let device = m.device();
    let mut cols: Vec<Tensor<B, 1>> = Vec::with_capacity(d);
    let mut total: Option<Tensor<B, 1>> = None;
    for j in 0..d {
        let mut v: Tensor<B, 1> = m.clone().slice([0..d, j..j + 1]).reshape([d]);
        for col in &cols {
            let ljk = col.clone().slice(j..j + 1);
            v = v - col.clone() * ljk;
        }
        let ljj = v.clone().slice(j..j + 1).clamp_min(1e-12).sqrt();
        let mask: Vec<f32> = (0..d).map(|i| if i > j { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::<B, 1>::from_data(TensorData::new(mask, [d]), &device);
        let mut onehot = vec![0f32; d];
        onehot[j] = 1.0;
        let onehot = Tensor::<B, 1>::from_data(TensorData::new(onehot, [d]), &device);
        // Column j of L: L_jj on the diagonal, v_i / L_jj below it.
        let col = v / ljj.clone() * mask + onehot * ljj.clone();
        cols.push(col);
        let term = ljj.log() * 2.0;
        total = Some(match total {
            None => term,
            Some(t) => t + term,
        });
    }
    total.unwrap_or_else(|| Tensor::zeros([1], &device))
}

/// Gaussian-mixture entropy estimate (MMIM / MMIC eq. 12):
/// `¼ Σ_g log det(Σ_g + εI)` over the groups (rows of each tensor are the
/// group's samples). Groups with fewer than `d + 1` rows are skipped;
/// `None` when every group is skipped.
pub fn gmm_entropy<B: Backend>(groups: Vec<Tensor<B, 2>>, eps: f64) -> Option<Tensor<B, 1>> {
    let mut total: Option<Tensor<B, 1>> = None;
    for g in groups {
        let [n, d] = g.dims();
        if n < d + 1 {
            continue;
        }
        let eye = Tensor::<B, 2>::eye(d, &g.device()) * eps;
        let term = logdet_spd(covariance(g) + eye) * 0.25;
        total = Some(match total {
            None => term,
            Some(t) => t + term,
        });
    }
    total
}
