//! Distribution helpers (thin wrappers around `statrs`).
//!
//! All functions are total: invalid parameters yield `NaN` instead of panicking.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

fn student(df: f64) -> Option<StudentsT> {
    StudentsT::new(0.0, 1.0, df).ok()
}

/// Survival function `P(T > t)` of Student's t with `df` degrees of freedom.
pub fn t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    if t == f64::INFINITY {
        return 0.0;
    }
    if t == f64::NEG_INFINITY {
        return 1.0;
    }
    student(df).map_or(f64::NAN, |d| d.sf(t))
}

/// Cumulative distribution function `P(T <= t)` of Student's t.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    if t == f64::INFINITY {
        return 1.0;
    }
    if t == f64::NEG_INFINITY {
        return 0.0;
    }
    student(df).map_or(f64::NAN, |d| d.cdf(t))
}

/// Quantile function (percent point function) of Student's t.
///
/// `q` outside `[0, 1]` or invalid `df` gives `NaN`.
pub fn t_ppf(q: f64, df: f64) -> f64 {
    if !(0.0..=1.0).contains(&q) {
        return f64::NAN;
    }
    if q == 0.0 {
        return f64::NEG_INFINITY;
    }
    if q == 1.0 {
        return f64::INFINITY;
    }
    student(df).map_or(f64::NAN, |d| d.inverse_cdf(q))
}

/// Standard normal quantile function.
pub fn norm_ppf(q: f64) -> f64 {
    if !(0.0..=1.0).contains(&q) {
        return f64::NAN;
    }
    Normal::new(0.0, 1.0).map_or(f64::NAN, |d| d.inverse_cdf(q))
}

/// Standard normal survival function `P(Z > z)`.
pub fn norm_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    Normal::new(0.0, 1.0).map_or(f64::NAN, |d| d.sf(z))
}

/// Standard normal cumulative distribution function.
pub fn norm_cdf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    Normal::new(0.0, 1.0).map_or(f64::NAN, |d| d.cdf(z))
}
