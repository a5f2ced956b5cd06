//! Error type of the statistics crate.

/// Errors returned for inputs on which a statistic cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// Paired samples must have the same length.
    #[error("paired samples differ in length: {a} vs {b}")]
    LengthMismatch {
        /// Length of the first sample.
        a: usize,
        /// Length of the second sample.
        b: usize,
    },
    /// Not enough observations for the requested statistic.
    #[error("need at least {needed} observations, got {got}")]
    TooFewSamples {
        /// Minimum number of observations.
        needed: usize,
        /// Observations supplied.
        got: usize,
    },
    /// An input value was NaN or infinite.
    #[error("non-finite value in input")]
    NonFinite,
    /// A parameter (alpha, quantile, iteration count, ...) was out of range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, StatsError>;

pub(crate) fn check_finite(xs: &[f64]) -> Result<()> {
    if xs.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(StatsError::NonFinite)
    }
}

pub(crate) fn check_paired(a: &[f64], b: &[f64], needed: usize) -> Result<()> {
    if a.len() != b.len() {
        return Err(StatsError::LengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    if a.len() < needed {
        return Err(StatsError::TooFewSamples {
            needed,
            got: a.len(),
        });
    }
    check_finite(a)?;
    check_finite(b)
}
