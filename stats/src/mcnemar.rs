//! McNemar's test for two classifiers evaluated on the same examples.
//!
//! Only the discordant pairs matter: `b` examples the first classifier got
//! right and the second wrong, `c` the other way round. Under the null (equal
//! accuracy) each discordant example is a fair coin.
//!
//! * [`mcnemar`] with `exact = true` (statsmodels' default,
//!   `mcnemar(table, exact=True)`): the statistic is `min(b, c)` and the
//!   two-sided p is `min(1, 2 · BinomCDF(min(b, c); b + c, ½))`.
//! * `exact = false` (statsmodels `exact=False, correction=True`): the
//!   continuity-corrected chi-square `(|b − c| − 1)² / (b + c)` with one
//!   degree of freedom.
//!
//! With no discordant pair at all the classifiers agree everywhere: the
//! statistic is 0 and p = 1 (statsmodels gives NaN for the chi-square form).

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF};

use crate::error::{Result, StatsError};

/// Result of McNemar's test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct McNemar {
    /// Examples only the first classifier got right.
    pub b: u64,
    /// Examples only the second classifier got right.
    pub c: u64,
    /// `min(b, c)` (exact) or the corrected chi-square.
    #[serde(with = "crate::num")]
    pub statistic: f64,
    /// Two-sided p-value.
    #[serde(with = "crate::num")]
    pub p: f64,
    /// Exact binomial (true) or corrected chi-square (false).
    pub exact: bool,
}

/// McNemar's test on the discordant counts `b` and `c`.
pub fn mcnemar(b: u64, c: u64, exact: bool) -> Result<McNemar> {
    let n = b.checked_add(c).ok_or_else(|| {
        StatsError::InvalidParameter(format!("{b} + {c} discordant pairs overflow"))
    })?;
    if n == 0 {
        return Ok(McNemar {
            b,
            c,
            statistic: 0.0,
            p: 1.0,
            exact,
        });
    }
    let (statistic, p) = if exact {
        let k = b.min(c);
        let binom = Binomial::new(0.5, n)
            .map_err(|e| StatsError::InvalidParameter(format!("binomial({n}, 0.5): {e}")))?;
        (k as f64, (2.0 * binom.cdf(k)).min(1.0))
    } else {
        let diff = (b as f64 - c as f64).abs() - 1.0;
        let stat = diff * diff / n as f64;
        let chi2 = ChiSquared::new(1.0)
            .map_err(|e| StatsError::InvalidParameter(format!("chi2(1): {e}")))?;
        (stat, chi2.sf(stat))
    };
    Ok(McNemar {
        b,
        c,
        statistic,
        p,
        exact,
    })
}

/// The discordant counts of two prediction vectors against the same truth:
/// `(b, c)` = (only `first` right, only `second` right).
///
/// # Errors
/// If the three slices differ in length.
pub fn discordant<T: PartialEq>(truth: &[T], first: &[T], second: &[T]) -> Result<(u64, u64)> {
    if truth.len() != first.len() || truth.len() != second.len() {
        return Err(StatsError::LengthMismatch {
            a: first.len(),
            b: second.len().max(truth.len()),
        });
    }
    let mut b = 0;
    let mut c = 0;
    for ((t, x), y) in truth.iter().zip(first).zip(second) {
        match (x == t, y == t) {
            (true, false) => b += 1,
            (false, true) => c += 1,
            _ => {}
        }
    }
    Ok((b, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_discordant_pair_means_no_evidence() -> Result<()> {
        let r = mcnemar(0, 0, true)?;
        assert_eq!((r.statistic, r.p), (0.0, 1.0));
        let r = mcnemar(0, 0, false)?;
        assert_eq!(r.p, 1.0);
        Ok(())
    }

    #[test]
    fn exact_p_is_symmetric_and_capped() -> Result<()> {
        assert_eq!(mcnemar(3, 9, true)?.p, mcnemar(9, 3, true)?.p);
        assert_eq!(mcnemar(5, 5, true)?.p, 1.0);
        // 2 · P(X ≤ 0; n = 1) = 1.
        assert!((mcnemar(1, 0, true)?.p - 1.0).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn discordant_counts() -> Result<()> {
        let truth = [0, 1, 2, 0, 1];
        let a = [0, 1, 0, 1, 1];
        let b = [0, 0, 2, 0, 0];
        assert_eq!(discordant(&truth, &a, &b)?, (2, 2));
        assert!(discordant(&truth, &a, &b[..2]).is_err());
        Ok(())
    }
}
