//! Power analysis for paired seeds: the minimum detectable effect `d_z` and warnings when
//! significance is out of reach.
//!
//! The minimum detectable standardized paired effect at power `1 - β` for a two-sided paired
//! t-test with `n` seeds at the Bonferroni-style per-test level `α / m` uses the standard
//! t-approximation of the noncentral t power function:
//!
//! `d_z ≈ (t_{1 - α/(2m), n-1} + t_{1-β, n-1}) / sqrt(n)`
//!
//! which is within about 1% of the exact noncentral-t answer for `n >= 5` (e.g. `n = 10, m = 1`:
//! 0.995 vs 0.996 from G*Power) and slightly conservative below that.

use serde::{Deserialize, Serialize};

use crate::dist::t_ppf;

/// Why significance may be impossible or unreliable for a design.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PowerWarning {
    /// Fewer than two paired seeds: no paired test is possible.
    Untestable {
        /// Number of seeds.
        n: usize,
    },
    /// Five or fewer seeds: any test has very low power.
    FewSeeds {
        /// Number of seeds.
        n: usize,
    },
    /// The exact tests (Wilcoxon, sign-flip permutation) cannot go below `2 / 2^n`, which is
    /// above `α` even for a single comparison.
    ExactFloor {
        /// Number of seeds.
        n: usize,
        /// Smallest attainable two-sided p-value `2 / 2^n`.
        min_p: f64,
        /// Significance level.
        alpha: f64,
    },
    /// With `m` comparisons the smallest corrected exact p-value `m · 2 / 2^n` exceeds `α`.
    TooManyComparisons {
        /// Number of comparisons.
        m: usize,
        /// Largest `m` for which the exact tests can still reach `α`.
        max_m: usize,
        /// Smallest attainable two-sided p-value `2 / 2^n`.
        min_p: f64,
    },
}

impl std::fmt::Display for PowerWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PowerWarning::Untestable { n } => {
                write!(f, "only {n} paired seed(s): no paired test is possible")
            }
            PowerWarning::FewSeeds { n } => {
                write!(
                    f,
                    "only {n} seeds: tests have very low power; use more seeds"
                )
            }
            PowerWarning::ExactFloor { n, min_p, alpha } => write!(
                f,
                "exact tests (Wilcoxon, permutation) cannot reach significance with {n} seeds: smallest p = 2/2^{n} = {min_p:.4} > alpha = {alpha}"
            ),
            PowerWarning::TooManyComparisons { m, max_m, min_p } => write!(
                f,
                "exact tests cannot survive correction for {m} comparisons: smallest p = {min_p:.2e}, at most {max_m} comparisons can reach significance"
            ),
        }
    }
}

/// Power analysis of a design with `n` paired seeds and `m` comparisons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerAnalysis {
    /// Paired seeds.
    pub n: usize,
    /// Comparisons.
    pub m: usize,
    /// Family-wise significance level.
    pub alpha: f64,
    /// Target power.
    pub power: f64,
    /// Minimum detectable `|d_z|` (`inf` when `n < 2`).
    #[serde(with = "crate::num")]
    pub min_detectable_dz: f64,
    /// Smallest two-sided p-value attainable by the exact tests, `2 / 2^n`.
    pub min_exact_p: f64,
    /// Warnings, most severe first.
    pub warnings: Vec<PowerWarning>,
}

/// Minimum detectable `|d_z|` for a two-sided paired t-test (see module docs).
///
/// Returns `inf` when `n < 2` and `NaN` for invalid `alpha`, `power` or `m = 0`.
pub fn min_detectable_dz(n: usize, m: usize, alpha: f64, power: f64) -> f64 {
    if m == 0 || !(alpha > 0.0 && alpha < 1.0) || !(power > 0.0 && power < 1.0) {
        return f64::NAN;
    }
    if n < 2 {
        return f64::INFINITY;
    }
    let df = (n - 1) as f64;
    let a = alpha / m as f64;
    (t_ppf(1.0 - a / 2.0, df) + t_ppf(power, df)) / (n as f64).sqrt()
}

/// Smallest two-sided p-value of an exact sign-based test with `n` non-zero pairs: `2 / 2^n`.
pub fn min_exact_p(n: usize) -> f64 {
    (2.0 * 0.5_f64.powi(n.min(2000) as i32)).min(1.0)
}

/// Power analysis at level `alpha` and power `power` (typically 0.05 and 0.8).
pub fn power_analysis(n: usize, m: usize, alpha: f64, power: f64) -> PowerAnalysis {
    let m_eff = m.max(1);
    let min_p = min_exact_p(n);
    let mut warnings = Vec::new();
    if n < 2 {
        warnings.push(PowerWarning::Untestable { n });
    } else if n <= 5 {
        warnings.push(PowerWarning::FewSeeds { n });
    }
    if n >= 1 && min_p > alpha {
        warnings.push(PowerWarning::ExactFloor { n, min_p, alpha });
    } else if n >= 1 && min_p * m_eff as f64 > alpha {
        let max_m = (alpha / min_p).floor() as usize;
        warnings.push(PowerWarning::TooManyComparisons {
            m: m_eff,
            max_m,
            min_p,
        });
    }
    PowerAnalysis {
        n,
        m: m_eff,
        alpha,
        power,
        min_detectable_dz: min_detectable_dz(n, m_eff, alpha, power),
        min_exact_p: min_p,
        warnings,
    }
}
