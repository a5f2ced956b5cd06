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
///
/// Solved here rather than with statrs' `inverse_cdf`, which inverts the
/// regularised incomplete beta function and is neither accurate nor total
/// in the tails: its answer stops growing at about `|t| = 9·10⁷` (for
/// `df = 1`, `q = 10⁻⁸` is 10 % off, smaller `q` all give one value), it
/// panics below `q ≈ 10⁻¹⁷⁵` and it loops forever at, for example,
/// `df = 1000, q = 10⁻¹⁰⁰` or `df = 10¹², q = 0.1`. statrs' CDF and
/// density are total, and accurate up to 10⁶ degrees of freedom, so there
/// the quantile is the root of `ln P(T <= t) = ln q`, found by Newton's
/// method safeguarded by bisection over `s = asinh t` (`t` near 0, `ln |t|`
/// in the tails, where the CDF is nearly a power of `|t|`); beyond
/// `|t| = 10¹⁰⁰` it is the tail's power law, above 10⁶ degrees of freedom
/// Hill's expansion. `1 − q` is exact for `q >= 0.5`, so the upper tail is
/// the mirror image of the lower.
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
    let Some(d) = student(df) else {
        return f64::NAN;
    };
    let t = lower_quantile(&d, q.min(1.0 - q));
    if q > 0.5 { -t } else { t }
}

/// The quantile `t <= 0` of `d` at `0 < lower <= 0.5` (0 at 0.5).
fn lower_quantile(d: &StudentsT, lower: f64) -> f64 {
    use statrs::distribution::Continuous;
    // asinh(f64::MAX) is about 710.5: below this no finite t is left.
    const S_MIN: f64 = -710.0;
    if lower >= 0.5 {
        return 0.0;
    }
    if d.freedom() > LARGE_DF {
        return large_df_quantile(d.freedom(), lower);
    }
    // Far in the tail (where `t²` would overflow inside the CDF) the
    // quantile is the power law's: relative error about `df / t²`.
    let far = far_tail_quantile(d.freedom(), lower);
    if far < -1e100 {
        return far;
    }
    let target = lower.ln();
    // Increasing in s; NaN only where statrs' CDF is (absurd df).
    let g = |s: f64| d.cdf(s.sinh()).ln() - target;
    let (mut lo, mut hi) = (-1.0, 0.0);
    loop {
        let at = g(lo);
        if at.is_nan() {
            return f64::NAN;
        }
        if at <= 0.0 {
            break;
        }
        if lo <= S_MIN {
            return f64::NEG_INFINITY;
        }
        hi = lo;
        lo = (2.0 * lo).max(S_MIN);
    }
    let mut s = 0.5 * (lo + hi);
    for _ in 0..200 {
        let t = s.sinh();
        let (cdf, pdf) = (d.cdf(t), d.pdf(t));
        let at = cdf.ln() - target;
        if at.is_nan() {
            return f64::NAN;
        }
        if at > 0.0 {
            hi = s;
        } else {
            lo = s;
        }
        // d g / d s = pdf(t) · cosh(s) / cdf(t).
        let newton = s - at * cdf / (pdf * s.cosh());
        let next = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        let done =
            (next - s).abs() <= 1e-15 * s.abs().max(1.0) || hi - lo <= 1e-15 * s.abs().max(1.0);
        s = next;
        if done {
            break;
        }
    }
    s.sinh()
}

/// Above this many degrees of freedom statrs' CDF loses precision (at
/// `10¹²`, `P(T <= t)` is 4·10⁻⁵ off near `q = 0.1`) and the quantile is
/// Hill's expansion in `1/ν` instead.
const LARGE_DF: f64 = 1e6;

/// The quantile at `lower` for `ν > LARGE_DF`: the normal quantile `z`
/// corrected by the first four terms of the Cornish–Fisher (Hill 1970;
/// Abramowitz & Stegun 26.7.5) expansion, whose next term is below
/// `10⁻¹³ |t|` there even at `q = 10⁻³⁰⁰`.
fn large_df_quantile(df: f64, lower: f64) -> f64 {
    let z = norm_ppf(lower);
    let z2 = z * z;
    let g1 = (z2 + 1.0) * z / 4.0;
    let g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0;
    let g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0;
    let g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0;
    z + (g1 + (g2 + (g3 + g4 / df) / df) / df) / df
}

/// `t` with `P(T <= t) = lower` from the tail's leading term,
/// `P(T <= t) ≈ K ν^((ν−1)/2) |t|^(−ν)` with
/// `K = Γ((ν+1)/2) / (√(νπ) Γ(ν/2))` (`−∞` beyond the range of `f64`).
fn far_tail_quantile(df: f64, lower: f64) -> f64 {
    use statrs::function::gamma::ln_gamma;
    let ln_k =
        ln_gamma((df + 1.0) / 2.0) - ln_gamma(df / 2.0) - 0.5 * (df * std::f64::consts::PI).ln();
    let ln_t = (ln_k + (df - 1.0) / 2.0 * df.ln() - lower.ln()) / df;
    -ln_t.exp()
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
