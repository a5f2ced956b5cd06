//! Paired bootstrap over test examples (Koehn 2004; Berg-Kirkpatrick et al.
//! 2012).
//!
//! Two systems were evaluated on the same `n` test examples. A resample
//! draws `n` example indices uniformly with replacement; the caller's
//! statistic sees it as a weight per example (how often it was drawn) and
//! returns the difference of the two systems' metric on that resample. The
//! same resample is used for both systems, which is what makes the
//! bootstrap *paired*. The unit of replication is the test example: the
//! result answers "on a test set like this one", not "across training
//! randomness".
//!
//! From the `B` resampled differences `Δ*` and the observed `Δ̂`:
//!
//! * the 95% interval is the percentile interval (2.5% and 97.5% quantiles,
//!   numpy's default linear interpolation);
//! * the two-sided p-value tests `Δ = 0` with the shifted null
//!   distribution `Δ* − Δ̂` (Berg-Kirkpatrick et al.'s `δ(x*) > 2δ(x)`,
//!   made two-sided): `p = (1 + #{|Δ* − Δ̂| ≥ |Δ̂|}) / (1 + B)`, the add-one
//!   form that never reports 0 (Davison & Hinkley 1997);
//! * `share_positive` is Koehn's figure: the fraction of resamples with
//!   `Δ* > 0`.
//!
//! Resamples come from a ChaCha8 generator seeded by the caller, so a
//! report is reproducible. Resamples whose statistic is not finite are
//! dropped and counted.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StatsError};

/// Summary of a paired bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// The statistic on the original sample (every weight 1).
    #[serde(with = "crate::num")]
    pub observed: f64,
    /// Percentile 95% interval of the resampled statistic.
    #[serde(with = "crate::num::pair")]
    pub ci95: [f64; 2],
    /// Standard deviation of the resampled statistic (ddof 1): the
    /// bootstrap standard error.
    #[serde(with = "crate::num")]
    pub se: f64,
    /// Two-sided p-value of `statistic = 0` (shifted null, add-one).
    #[serde(with = "crate::num")]
    pub p: f64,
    /// Fraction of resamples with a positive statistic.
    #[serde(with = "crate::num")]
    pub share_positive: f64,
    /// Resamples with a finite statistic.
    pub resamples: usize,
    /// Resamples dropped because the statistic was not finite.
    pub dropped: usize,
}

/// The resampled statistics: `resamples` draws of `n` indices with
/// replacement, each passed to `statistic` as per-example weights.
pub fn resample(
    n: usize,
    resamples: usize,
    seed: u64,
    mut statistic: impl FnMut(&[u32]) -> f64,
) -> Result<Vec<f64>> {
    if n == 0 {
        return Err(StatsError::TooFewSamples { needed: 1, got: 0 });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut weights = vec![0u32; n];
    let mut out = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        weights.iter_mut().for_each(|w| *w = 0);
        for _ in 0..n {
            if let Some(w) = weights.get_mut(rng.random_range(0..n)) {
                *w += 1;
            }
        }
        out.push(statistic(&weights));
    }
    Ok(out)
}

/// Paired bootstrap of `statistic` over `n` examples: the observed value
/// (all weights 1), `resamples` resampled values, and their summary.
pub fn paired_bootstrap(
    n: usize,
    resamples: usize,
    seed: u64,
    mut statistic: impl FnMut(&[u32]) -> f64,
) -> Result<Bootstrap> {
    if resamples < 2 {
        return Err(StatsError::InvalidParameter(format!(
            "a bootstrap needs at least 2 resamples, got {resamples}"
        )));
    }
    let observed = statistic(&vec![1; n]);
    if !observed.is_finite() {
        return Err(StatsError::NonFinite);
    }
    let samples = resample(n, resamples, seed, statistic)?;
    summarize(observed, &samples)
}

/// Summary of resampled statistics around `observed` (see the module docs).
pub fn summarize(observed: f64, samples: &[f64]) -> Result<Bootstrap> {
    let mut finite: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    let dropped = samples.len() - finite.len();
    if finite.len() < 2 {
        return Err(StatsError::TooFewSamples {
            needed: 2,
            got: finite.len(),
        });
    }
    finite.sort_by(f64::total_cmp);
    let b = finite.len();
    let tol = 1e-12 * observed.abs().max(f64::MIN_POSITIVE);
    let extreme = finite
        .iter()
        .filter(|x| (*x - observed).abs() >= observed.abs() - tol)
        .count();
    let positive = finite.iter().filter(|x| **x > 0.0).count();
    Ok(Bootstrap {
        observed,
        ci95: [quantile(&finite, 0.025), quantile(&finite, 0.975)],
        se: crate::describe::std(&finite),
        p: (1 + extreme) as f64 / (1 + b) as f64,
        share_positive: positive as f64 / b as f64,
        resamples: b,
        dropped,
    })
}

/// Quantile `q` of sorted values, numpy's default (linear) interpolation.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let h = last as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(last);
    match (sorted.get(lo), sorted.get(hi)) {
        (Some(a), Some(b)) => a + (h - lo as f64) * (b - a),
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&x, 0.0), 1.0);
        assert_eq!(quantile(&x, 1.0), 4.0);
        assert!((quantile(&x, 0.5) - 2.5).abs() < 1e-12);
        assert!((quantile(&x, 0.025) - 1.075).abs() < 1e-12);
    }

    #[test]
    fn resamples_draw_n_examples_each() -> Result<()> {
        let mut totals = Vec::new();
        resample(7, 50, 1, |w| {
            totals.push(w.iter().sum::<u32>());
            0.0
        })?;
        assert!(totals.iter().all(|t| *t == 7));
        Ok(())
    }

    #[test]
    fn same_seed_same_answer() -> Result<()> {
        let x: Vec<f64> = (0..40).map(|i| f64::from(i % 3) - 0.8).collect();
        let stat = |w: &[u32]| {
            let n: u32 = w.iter().sum();
            w.iter()
                .zip(&x)
                .map(|(w, x)| f64::from(*w) * x)
                .sum::<f64>()
                / f64::from(n)
        };
        let a = paired_bootstrap(x.len(), 500, 9, stat)?;
        let b = paired_bootstrap(x.len(), 500, 9, stat)?;
        assert_eq!(a, b);
        assert!(a.ci95[0] <= a.observed && a.observed <= a.ci95[1]);
        assert!(a.p > 0.0 && a.p <= 1.0);
        Ok(())
    }

    #[test]
    fn a_constant_zero_difference_is_no_evidence() -> Result<()> {
        let r = paired_bootstrap(10, 100, 0, |_| 0.0)?;
        assert_eq!(r.p, 1.0);
        assert_eq!(r.ci95, [0.0, 0.0]);
        Ok(())
    }
}
