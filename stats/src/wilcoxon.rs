//! Wilcoxon signed-rank test with `scipy.stats.wilcoxon` defaults.
//!
//! * `zero_method = "wilcox"`: zero differences are dropped before ranking.
//! * `method = "auto"`: when the number of non-zero differences is `<= 50` the exact null
//!   distribution of the signed-rank sum is used (scipy 1.17 does so even with tied `|d|`, in which
//!   case the exact table is only approximate; tied ranks are averaged); otherwise the normal
//!   approximation with tie correction and no continuity correction.
//! * The reported statistic is `min(r_plus, r_minus)` for the two-sided test and `r_plus`
//!   for one-sided alternatives.

use serde::{Deserialize, Serialize};

use crate::describe::differences;
use crate::dist::{norm_cdf, norm_sf};
use crate::error::{Result, check_paired};
use crate::ttest::{Alternative, Outcome};

/// Largest number of non-zero differences for which the exact distribution is used.
pub const EXACT_MAX_N: usize = 50;

/// How the p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WilcoxonMethod {
    /// Exact signed-rank distribution.
    Exact,
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

/// Counts of sign assignments of ranks `1..=n` with positive-rank sum `k`, `k = 0..=n(n+1)/2`.
fn signed_rank_counts(n: usize) -> Vec<f64> {
    let max = n * (n + 1) / 2;
    let mut c = vec![0.0; max + 1];
    c[0] = 1.0;
    for r in 1..=n {
        for k in (r..=max).rev() {
            c[k] += c[k - r];
        }
    }
    c
}

/// Wilcoxon signed-rank test on the paired differences `a - b`.
pub fn wilcoxon(a: &[f64], b: &[f64], alternative: Alternative) -> Result<Wilcoxon> {
    check_paired(a, b, 1)?;
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
    let (p, method) = if n <= EXACT_MAX_N {
        let counts = signed_rank_counts(n);
        let all: f64 = counts.iter().sum();
        let max = counts.len() - 1;
        // P(W <= floor(k)) and P(W >= ceil(k)).
        let cdf = |k: f64| -> f64 {
            let k = k.floor();
            if k < 0.0 {
                return 0.0;
            }
            let k = (k as usize).min(max);
            counts[..=k].iter().sum::<f64>() / all
        };
        let sf = |k: f64| -> f64 {
            let k = k.ceil().max(0.0) as usize;
            if k > max {
                return 0.0;
            }
            counts[k..].iter().sum::<f64>() / all
        };
        let p = match alternative {
            Alternative::TwoSided => 2.0 * cdf(r_plus).min(sf(r_plus)),
            Alternative::Greater => sf(r_plus),
            Alternative::Less => cdf(r_plus),
        };
        (p, WilcoxonMethod::Exact)
    } else {
        let nf = n as f64;
        let mn = nf * (nf + 1.0) / 4.0;
        let mut var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0;
        // Tie correction: subtract sum(t^3 - t) / 48 over groups of tied |d|.
        let mut sorted = abs.clone();
        sorted.sort_by(f64::total_cmp);
        let mut i = 0;
        while i < sorted.len() {
            let mut j = i + 1;
            while j < sorted.len() && sorted[j] == sorted[i] {
                j += 1;
            }
            let t = (j - i) as f64;
            var -= (t * t * t - t) / 48.0;
            i = j;
        }
        let z = (r_plus - mn) / var.sqrt();
        let p = match alternative {
            Alternative::TwoSided => 2.0 * norm_sf(z.abs()),
            Alternative::Greater => norm_sf(z),
            Alternative::Less => norm_cdf(z),
        };
        (p, WilcoxonMethod::Normal)
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
