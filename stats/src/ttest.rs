//! Paired and Welch t-tests, confidence interval of the mean difference, Cohen's d_z.

use serde::{Deserialize, Serialize};

use crate::describe::{differences, is_constant, mean, std, variance};
use crate::dist::{t_cdf, t_ppf, t_sf};
use crate::error::{Result, StatsError, check_finite, check_paired};

/// Alternative hypothesis about `mean(a - b)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Alternative {
    /// `mean(a - b) != 0`.
    #[default]
    #[serde(rename = "two-sided")]
    TwoSided,
    /// `mean(a - b) > 0`.
    #[serde(rename = "greater")]
    Greater,
    /// `mean(a - b) < 0`.
    #[serde(rename = "less")]
    Less,
}

/// How a test statistic came about; the degenerate cases are explicit instead of `NaN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Ordinary finite statistic.
    #[default]
    Regular,
    /// Differences are constant and non-zero: the statistic is `±inf`, p is 0 (or 1 for the
    /// one-sided alternative pointing the wrong way). Same as scipy.
    ZeroVariance,
    /// All differences are zero: scipy returns `nan`; we report `statistic = 0`, `p = 1`
    /// and this marker so that tables can print "no difference".
    NoDifference,
}

/// Result of a t-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TTest {
    /// t statistic (`±inf` for [`Outcome::ZeroVariance`], `0` for [`Outcome::NoDifference`]).
    pub t: f64,
    /// Degrees of freedom (`n - 1` for the paired test, Welch–Satterthwaite for Welch).
    pub df: f64,
    /// p-value for `alternative`, always in `[0, 1]`.
    pub p: f64,
    /// The alternative hypothesis tested.
    pub alternative: Alternative,
    /// Regular or degenerate case.
    pub outcome: Outcome,
}

/// p-value of a finite or infinite t statistic under `alternative`.
pub fn t_pvalue(t: f64, df: f64, alternative: Alternative) -> f64 {
    let p = match alternative {
        Alternative::TwoSided => 2.0 * t_sf(t.abs(), df),
        Alternative::Greater => t_sf(t, df),
        Alternative::Less => t_cdf(t, df),
    };
    p.clamp(0.0, 1.0)
}

fn degenerate(sign: f64, df: f64, alternative: Alternative) -> TTest {
    if sign == 0.0 {
        return TTest {
            t: 0.0,
            df,
            p: 1.0,
            alternative,
            outcome: Outcome::NoDifference,
        };
    }
    let t = if sign > 0.0 {
        f64::INFINITY
    } else {
        f64::NEG_INFINITY
    };
    TTest {
        t,
        df,
        p: t_pvalue(t, df, alternative),
        alternative,
        outcome: Outcome::ZeroVariance,
    }
}

/// Paired (dependent-samples) t-test on `d = a - b`, like `scipy.stats.ttest_rel`.
///
/// Requires equal lengths and `n >= 2`; `df = n - 1`.
pub fn paired_t(a: &[f64], b: &[f64], alternative: Alternative) -> Result<TTest> {
    paired_with_se(a, b, alternative, |d| std(d) / (d.len() as f64).sqrt())
}

/// A t-test on the paired differences `a − b` with `df = n − 1` and the
/// standard error `se(d)`; degenerate cases as in [`paired_t`].
fn paired_with_se(
    a: &[f64],
    b: &[f64],
    alternative: Alternative,
    se: impl Fn(&[f64]) -> f64,
) -> Result<TTest> {
    check_paired(a, b, 2)?;
    let d = differences(a, b);
    let df = d.len() as f64 - 1.0;
    let m = mean(&d);
    if d.iter().all(|x| *x == 0.0) {
        return Ok(degenerate(0.0, df, alternative));
    }
    if is_constant(&d) {
        return Ok(degenerate(m.signum(), df, alternative));
    }
    let t = m / se(&d);
    Ok(TTest {
        t,
        df,
        p: t_pvalue(t, df, alternative),
        alternative,
        outcome: Outcome::Regular,
    })
}

/// Welch's unequal-variances t-test on independent samples, like
/// `scipy.stats.ttest_ind(a, b, equal_var=False)`.
///
/// Each sample needs at least two values.
pub fn welch_t(a: &[f64], b: &[f64], alternative: Alternative) -> Result<TTest> {
    for s in [a, b] {
        if s.len() < 2 {
            return Err(StatsError::TooFewSamples {
                needed: 2,
                got: s.len(),
            });
        }
    }
    check_finite(a)?;
    check_finite(b)?;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (variance(a) / na, variance(b) / nb);
    let diff = mean(a) - mean(b);
    let se2 = va + vb;
    if se2 <= 0.0 || (is_constant(a) && is_constant(b)) {
        let df = na + nb - 2.0;
        let sign = if diff.abs() <= 1e-12 * mean(a).abs().max(mean(b).abs()) {
            0.0
        } else {
            diff.signum()
        };
        return Ok(degenerate(sign, df, alternative));
    }
    let df = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let t = diff / se2.sqrt();
    Ok(TTest {
        t,
        df,
        p: t_pvalue(t, df, alternative),
        alternative,
        outcome: Outcome::Regular,
    })
}

/// Confidence interval of the mean paired difference `mean(a - b)` at level `level`
/// (e.g. `0.95`), using the t quantile with `n - 1` degrees of freedom.
///
/// With zero variance the interval collapses to the mean difference.
pub fn ci_mean_diff(a: &[f64], b: &[f64], level: f64) -> Result<(f64, f64)> {
    check_paired(a, b, 2)?;
    if !(level > 0.0 && level < 1.0) {
        return Err(StatsError::InvalidParameter(format!(
            "confidence level {level} not in (0, 1)"
        )));
    }
    let d = differences(a, b);
    let n = d.len() as f64;
    let m = mean(&d);
    if is_constant(&d) {
        return Ok((m, m));
    }
    let half = t_ppf(0.5 + level / 2.0, n - 1.0) * std(&d) / n.sqrt();
    Ok((m - half, m + half))
}

/// Cohen's d_z = mean(a - b) / std(a - b) (ddof 1).
///
/// Constant non-zero differences give `±inf`, all-zero differences give `0`.
pub fn cohens_dz(a: &[f64], b: &[f64]) -> Result<f64> {
    check_paired(a, b, 2)?;
    let d = differences(a, b);
    let m = mean(&d);
    if d.iter().all(|x| *x == 0.0) {
        return Ok(0.0);
    }
    if is_constant(&d) {
        return Ok(if m > 0.0 {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        });
    }
    Ok(m / std(&d))
}

/// Nadeau & Bengio's (2003) corrected resampled t-test on paired
/// differences from resampled train/test splits (k-fold cross-validation,
/// possibly repeated over seeds), where the folds share training data and
/// the differences are correlated: the variance of the mean difference is
/// `(1/J + n_test/n_train) · s²` instead of `s²/J`, with `J` differences
/// and `df = J − 1` (for k-fold, `n_test/n_train = 1/(k − 1)`; Bouckaert &
/// Frank 2004). Degenerate cases as in [`paired_t`].
pub fn corrected_resampled_t(
    a: &[f64],
    b: &[f64],
    test_train_ratio: f64,
    alternative: Alternative,
) -> Result<TTest> {
    if !(test_train_ratio.is_finite() && test_train_ratio >= 0.0) {
        return Err(StatsError::InvalidParameter(format!(
            "test/train ratio {test_train_ratio} must be finite and non-negative"
        )));
    }
    paired_with_se(a, b, alternative, |d| {
        ((1.0 / d.len() as f64 + test_train_ratio) * variance(d)).sqrt()
    })
}

/// The interval of the mean paired difference that goes with
/// [`corrected_resampled_t`].
pub fn corrected_ci_mean_diff(
    a: &[f64],
    b: &[f64],
    test_train_ratio: f64,
    level: f64,
) -> Result<(f64, f64)> {
    check_paired(a, b, 2)?;
    let d = differences(a, b);
    let n = d.len() as f64;
    let m = mean(&d);
    if is_constant(&d) {
        return Ok((m, m));
    }
    let half =
        t_ppf(0.5 + level / 2.0, n - 1.0) * ((1.0 / n + test_train_ratio) * variance(&d)).sqrt();
    Ok((m - half, m + half))
}
