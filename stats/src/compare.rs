//! One-call comparison of two seed-matched samples.

use serde::{Deserialize, Serialize};

use crate::aso::{AsoOptions, aso};
use crate::describe::{differences, mean, std};
use crate::error::{Result, StatsError};
use crate::permutation::permutation_test;
use crate::ttest::{Alternative, ci_mean_diff, cohens_dz, paired_t, welch_t};
use crate::wilcoxon::wilcoxon;

/// Options of [`compare_with`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOptions {
    /// Monte-Carlo iterations of the permutation test when `n > 20` (default 10 000).
    pub permutation_iterations: u64,
    /// Seed of the permutation test and of the ASO bootstrap (default 0).
    pub seed: u64,
    /// ASO parameters (its `seed` is overridden by `seed`).
    pub aso: AsoOptions,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            permutation_iterations: 10_000,
            seed: 0,
            aso: AsoOptions::default(),
        }
    }
}

/// Everything about `a` vs `b` at once (`sigsweep stats --json`).
///
/// Differences are `a - b`, pairs by position. Values that cannot be computed (too few pairs)
/// are `NaN`; in JSON non-finite values are the strings `"nan"`, `"inf"`, `"-inf"` (see
/// [`crate::num`]). Degenerate t-tests follow [`crate::Outcome`]: constant non-zero differences
/// give `t = ±inf`, `p = 0`; all-zero differences give `t = 0`, `p = 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Number of pairs.
    pub n: usize,
    /// Mean of `a`.
    #[serde(with = "crate::num")]
    pub mean_a: f64,
    /// Mean of `b`.
    #[serde(with = "crate::num")]
    pub mean_b: f64,
    /// Mean of `a - b`.
    #[serde(with = "crate::num")]
    pub mean_diff: f64,
    /// Standard deviation of `a - b` (ddof 1).
    #[serde(with = "crate::num")]
    pub std_diff: f64,
    /// Paired t statistic.
    #[serde(with = "crate::num")]
    pub t: f64,
    /// Degrees of freedom `n - 1`.
    #[serde(with = "crate::num")]
    pub df: f64,
    /// Paired t-test p, two-sided.
    #[serde(with = "crate::num")]
    pub p_two_sided: f64,
    /// Paired t-test p, `mean(a - b) > 0`.
    #[serde(with = "crate::num")]
    pub p_greater: f64,
    /// Paired t-test p, `mean(a - b) < 0`.
    #[serde(with = "crate::num")]
    pub p_less: f64,
    /// 95% confidence interval of the mean difference.
    #[serde(with = "crate::num::pair")]
    pub ci95: [f64; 2],
    /// Cohen's d_z.
    #[serde(with = "crate::num")]
    pub cohens_dz: f64,
    /// Wilcoxon signed-rank p, two-sided.
    #[serde(with = "crate::num")]
    pub wilcoxon_p: f64,
    /// Sign-flip permutation p, two-sided.
    #[serde(with = "crate::num")]
    pub permutation_p: f64,
    /// Welch t-test p (treating the samples as unpaired), two-sided.
    #[serde(with = "crate::num")]
    pub welch_p: f64,
    /// ASO `ε_min` of `a` over `b` (higher is better).
    #[serde(with = "crate::num")]
    pub aso_eps_min: f64,
}

/// [`compare_with`] with default options. Samples of different lengths are truncated to the
/// shorter one; never panics.
pub fn compare(a: &[f64], b: &[f64]) -> Comparison {
    compare_with(a, b, &CompareOptions::default())
}

/// Strict variant of [`compare`]: errors on length mismatch, `n < 2` or non-finite input.
pub fn try_compare(a: &[f64], b: &[f64], opts: &CompareOptions) -> Result<Comparison> {
    crate::error::check_paired(a, b, 2)?;
    let c = compare_with(a, b, opts);
    if c.n < 2 {
        return Err(StatsError::TooFewSamples {
            needed: 2,
            got: c.n,
        });
    }
    Ok(c)
}

/// Compare with explicit options (see [`compare`]).
pub fn compare_with(a: &[f64], b: &[f64], opts: &CompareOptions) -> Comparison {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let nan = f64::NAN;
    let d = differences(a, b);
    let tt = |alt| paired_t(a, b, alt).ok();
    let two = tt(Alternative::TwoSided);
    let aso_opts = AsoOptions {
        seed: opts.seed,
        ..opts.aso
    };
    Comparison {
        n,
        mean_a: mean(a),
        mean_b: mean(b),
        mean_diff: mean(&d),
        std_diff: std(&d),
        t: two.map_or(nan, |r| r.t),
        df: two.map_or(nan, |r| r.df),
        p_two_sided: two.map_or(nan, |r| r.p),
        p_greater: tt(Alternative::Greater).map_or(nan, |r| r.p),
        p_less: tt(Alternative::Less).map_or(nan, |r| r.p),
        ci95: ci_mean_diff(a, b, 0.95).map_or([nan, nan], |(l, h)| [l, h]),
        cohens_dz: cohens_dz(a, b).unwrap_or(nan),
        wilcoxon_p: wilcoxon(a, b, Alternative::TwoSided).map_or(nan, |r| r.p),
        permutation_p: permutation_test(
            a,
            b,
            Alternative::TwoSided,
            opts.permutation_iterations,
            opts.seed,
        )
        .map_or(nan, |r| r.p),
        welch_p: welch_t(a, b, Alternative::TwoSided).map_or(nan, |r| r.p),
        aso_eps_min: aso(a, b, &aso_opts).unwrap_or(nan),
    }
}
