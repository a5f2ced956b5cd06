//! Descriptive statistics: mean, sample standard deviation, paired differences.

/// Arithmetic mean; `NaN` for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample variance with `ddof = 1`; `NaN` for fewer than two values.
pub fn variance(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = mean(xs);
    xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64
}

/// Sample standard deviation with `ddof = 1`; `NaN` for fewer than two values.
pub fn std(xs: &[f64]) -> f64 {
    variance(xs).sqrt()
}

/// Paired differences `a[i] - b[i]` (truncated to the shorter slice).
pub fn differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// Whether all values are equal up to floating-point noise relative to their magnitude.
///
/// Used to detect the zero-variance cases of the t-tests: `[1.0, 1.0, 1.0]` computed as
/// differences of decimals (e.g. `3.1 - 2.1`) may carry a variance of `1e-32` that is not real.
pub(crate) fn is_constant(xs: &[f64]) -> bool {
    let Some(first) = xs.first() else {
        return true;
    };
    let scale = xs.iter().fold(0.0_f64, |acc, x| acc.max(x.abs()));
    let tol = 1e-12 * scale.max(f64::MIN_POSITIVE);
    xs.iter().all(|x| (x - first).abs() <= tol)
}
