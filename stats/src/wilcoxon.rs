//! Wilcoxon signed-rank test with `scipy.stats.wilcoxon` defaults (scipy 1.17).
//!
//! * `zero_method = "wilcox"`: zero differences are dropped before ranking; tied `|d|` get the
//!   average of their ranks.
//! * `method = "auto"`, decided on `n`, the number of pairs *including* zero differences:
//!   - `n > 50`: the normal approximation ([`WilcoxonMethod::Normal`]);
//!   - otherwise, with no zero difference and no tied `|d|`: the exact null distribution of the
//!     signed-rank sum ([`WilcoxonMethod::Exact`]);
//!   - otherwise (zeros or ties), `n <= 13`: the exact permutation distribution of `r_plus`
//!     over all `2^n` sign flips of the differences, with the averaged ranks
//!     ([`WilcoxonMethod::Permutation`]; scipy runs `permutation_test`, which enumerates
//!     them all below its 9 999 resamples);
//!   - otherwise (zeros or ties, `13 < n <= 50`): the normal approximation.
//!
//!   The normal approximation counts only the non-zero differences, corrects the variance for
//!   ties and applies no continuity correction (scipy's `correction=False`).
//! * The reported statistic is `min(r_plus, r_minus)` for the two-sided test and `r_plus`
//!   for one-sided alternatives.
//!
//! Metrics reported to a few decimals (accuracy, F1) often tie or repeat across seeds, so the
//! permutation branch is the common one for ten seeds: the exact signed-rank table would
//! give different (anti-conservative or conservative) p-values there.

use serde::{Deserialize, Serialize};

use crate::describe::differences;
use crate::dist::{norm_cdf, norm_sf};
use crate::error::{Result, check_paired};
use crate::ttest::{Alternative, Outcome};

/// Largest number of pairs (zero differences included) for which an exact distribution is
/// used; above it, the normal approximation.
pub const EXACT_MAX_N: usize = 50;

/// Largest number of pairs (zero differences included) for which zeros or ties are handled by
/// the exact permutation distribution; above it (up to [`EXACT_MAX_N`]), the normal
/// approximation.
pub const PERMUTATION_MAX_N: usize = 13;

/// How the p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WilcoxonMethod {
    /// Exact signed-rank distribution (no zero difference, no tie).
    Exact,
    /// Exact distribution of `r_plus` over every sign flip, ranks averaged (zeros or ties,
    /// at most [`PERMUTATION_MAX_N`] pairs).
    Permutation,
    /// Normal approximation with tie correction.
    Normal,
}

/// Result of the Wilcoxon signed-rank test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Wilcoxon {
    /// `min(r_plus, r_minus)` (two-sided) or `r_plus` (one-sided).
    pub statistic: f64,
    /// p-value in `[0, 1]` (`1` when every difference is zero).
    pub p: f64,
    /// Number of non-zero differences actually ranked.
    pub n_nonzero: usize,
    /// Exact or normal approximation.
    pub method: WilcoxonMethod,
    /// The alternative tested.
    pub alternative: Alternative,
    /// [`Outcome::NoDifference`] when all differences are zero (scipy gives `nan`).
    pub outcome: Outcome,
}

/// Average ranks (1-based) of `xs`, ties receiving the mean of their ranks.
pub fn rank_average(xs: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by(|&i, &j| xs[i].total_cmp(&xs[j]));
    let mut ranks = vec![0.0; xs.len()];
    let mut start = 0;
    while start < idx.len() {
        let mut end = start + 1;
        while end < idx.len() && xs[idx[end]] == xs[idx[start]] {
            end += 1;
        }
        let avg = (start + end + 1) as f64 / 2.0;
        for &k in &idx[start..end] {
            ranks[k] = avg;
        }
        start = end;
    }
    ranks
}

/// How many of the `2^len` sign assignments of `weights` give each sum of the positive
/// ones, `0..=Σ weights`.
fn sign_flip_counts(weights: &[usize]) -> Vec<f64> {
    let max: usize = weights.iter().sum();
    let mut counts = vec![0.0; max + 1];
    counts[0] = 1.0;
    for &w in weights {
        for k in (w..=max).rev() {
            counts[k] += counts[k - w];
        }
    }
    counts
}

/// Wilcoxon signed-rank test on the paired differences `a - b`.
pub fn wilcoxon(a: &[f64], b: &[f64], alternative: Alternative) -> Result<Wilcoxon> {
    check_paired(a, b, 1)?;
    let pairs = a.len();
    let d: Vec<f64> = differences(a, b)
        .into_iter()
        .filter(|x| *x != 0.0)
        .collect();
    let n = d.len();
    if n == 0 {
        return Ok(Wilcoxon {
            statistic: 0.0,
            p: 1.0,
            n_nonzero: 0,
            method: WilcoxonMethod::Exact,
            alternative,
            outcome: Outcome::NoDifference,
        });
    }
    let abs: Vec<f64> = d.iter().map(|x| x.abs()).collect();
    let ranks = rank_average(&abs);
    let r_plus: f64 = d
        .iter()
        .zip(&ranks)
        .filter(|(x, _)| **x > 0.0)
        .map(|(_, r)| r)
        .sum();
    let total = (n * (n + 1)) as f64 / 2.0;
    let r_minus = total - r_plus;
    let statistic = match alternative {
        Alternative::TwoSided => r_plus.min(r_minus),
        _ => r_plus,
    };
    let ties = tie_sizes(&abs);
    let method = if pairs > EXACT_MAX_N {
        WilcoxonMethod::Normal
    } else if n == pairs && ties.iter().all(|&t| t == 1) {
        WilcoxonMethod::Exact
    } else if pairs <= PERMUTATION_MAX_N {
        WilcoxonMethod::Permutation
    } else {
        WilcoxonMethod::Normal
    };
    let p = match method {
        WilcoxonMethod::Exact => exact_p(n, r_plus, alternative),
        WilcoxonMethod::Permutation => permutation_p(&ranks, r_plus, alternative),
        WilcoxonMethod::Normal => normal_p(n, &ties, r_plus, alternative),
    };
    Ok(Wilcoxon {
        statistic,
        p: p.clamp(0.0, 1.0),
        n_nonzero: n,
        method,
        alternative,
        outcome: Outcome::Regular,
    })
}

/// Sizes of the groups of equal values of `xs` (1 for a value that is not tied).
fn tie_sizes(xs: &[f64]) -> Vec<usize> {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.chunk_by(|x, y| x == y).map(<[f64]>::len).collect()
}

/// `(P(W <= w), P(W >= w))` for `W` distributed as `counts` (weights of the values
/// `0, 1, 2, …`).
fn tails(counts: &[f64], w: usize) -> (f64, f64) {
    let all: f64 = counts.iter().sum();
    let at_most: f64 = counts.iter().take(w + 1).sum();
    let at_least: f64 = counts.iter().skip(w).sum();
    (at_most / all, at_least / all)
}

/// One- or two-sided p from the lower and upper tails.
fn sided(alternative: Alternative, (less, greater): (f64, f64)) -> f64 {
    match alternative {
        Alternative::TwoSided => 2.0 * less.min(greater),
        Alternative::Greater => greater,
        Alternative::Less => less,
    }
}

/// The exact signed-rank distribution of ranks `1..=n` (no ties, so `r_plus` is whole).
/// scipy rounds a fractional statistic conservatively (up for the lower tail, down for the
/// upper), which is what this does should one arrive.
fn exact_p(n: usize, r_plus: f64, alternative: Alternative) -> f64 {
    let counts = sign_flip_counts(&(1..=n).collect::<Vec<_>>());
    let max = counts.len() - 1;
    let at = |w: f64| (w.max(0.0) as usize).min(max);
    let less = tails(&counts, at(r_plus.ceil())).0;
    let greater = tails(&counts, at(r_plus.floor())).1;
    sided(alternative, (less, greater))
}

/// The exact distribution of `r_plus` over every sign assignment of `ranks` (averaged ranks,
/// so whole or half: counted on twice the rank). Flipping a zero difference changes nothing,
/// so the `2^zeros` copies of each assignment scipy enumerates leave the proportions alone.
fn permutation_p(ranks: &[f64], r_plus: f64, alternative: Alternative) -> f64 {
    let doubled: Vec<usize> = ranks.iter().map(|r| (2.0 * r).round() as usize).collect();
    let counts = sign_flip_counts(&doubled);
    let w = ((2.0 * r_plus).round().max(0.0) as usize).min(counts.len() - 1);
    sided(alternative, tails(&counts, w))
}

/// The normal approximation over the `n` non-zero differences, the variance corrected for
/// ties, no continuity correction.
fn normal_p(n: usize, ties: &[usize], r_plus: f64, alternative: Alternative) -> f64 {
    let nf = n as f64;
    let mn = nf * (nf + 1.0) / 4.0;
    let tie_correction: f64 = ties
        .iter()
        .map(|&t| {
            let t = t as f64;
            t * t * t - t
        })
        .sum();
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_correction / 48.0;
    let z = (r_plus - mn) / var.sqrt();
    match alternative {
        Alternative::TwoSided => 2.0 * norm_sf(z.abs()),
        Alternative::Greater => norm_sf(z),
        Alternative::Less => norm_cdf(z),
    }
}
