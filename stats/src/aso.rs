//! Almost Stochastic Order (Dror et al. 2019; del Barrio et al. 2018), following the
//! conventions of `deepsig.aso()` (deepsig 1.2.x) defaults:
//!
//! * the empirical quantile function is `F⁻¹(t) = sorted[clamp(ceil(n t) - 1, 0, n - 1)]`;
//! * the violation ratio is `ε_W2 = ∫_{F⁻¹<G⁻¹} (G⁻¹ - F⁻¹)² / ∫ (G⁻¹ - F⁻¹)²`, integrated on
//!   `t = dt, 2dt, … < 1` with `dt = 0.005` (like deepsig, the first grid point is left out of
//!   the violation integral; an all-zero distance gives `0.5`);
//! * σ̂ is the (ddof 0) standard deviation of `sqrt(nm/(n+m)) (ε_boot - ε)` over
//!   `bootstrap_iterations = 1000` re-samples drawn from the quantile functions with the original
//!   sample sizes;
//! * `ε_min = clip(ε - σ̂ / sqrt(nm/(n+m)) · Φ⁻¹(1 - confidence), 0, 1)` with `confidence = 0.95`
//!   (Bonferroni-adjusted as `c + (1 - c)/num_comparisons` when there are several comparisons).
//!
//! `ε_min < 0.5` means that `a` almost stochastically dominates `b` (higher is better; negate
//! both samples for lower-is-better metrics). The RNG is ChaCha8 seeded by `seed`, so results
//! are deterministic but not bit-identical to numpy's.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dist::norm_ppf;
use crate::error::{Result, StatsError, check_finite};

/// Parameters of [`aso`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AsoOptions {
    /// Confidence level, default `0.95`.
    pub confidence_level: f64,
    /// Number of comparisons for the Bonferroni adjustment of the confidence level, default 1.
    pub num_comparisons: usize,
    /// Bootstrap iterations, default 1000.
    pub bootstrap_iterations: usize,
    /// Integration step, default `0.005`.
    pub dt: f64,
    /// RNG seed.
    pub seed: u64,
}

impl Default for AsoOptions {
    fn default() -> Self {
        Self {
            confidence_level: 0.95,
            num_comparisons: 1,
            bootstrap_iterations: 1000,
            dt: 0.005,
            seed: 1234,
        }
    }
}

fn quantile(sorted: &[f64], t: f64) -> f64 {
    let n = sorted.len();
    let idx = (n as f64 * t).ceil() as i64 - 1;
    sorted[idx.clamp(0, n as i64 - 1) as usize]
}

fn grid(dt: f64) -> Vec<f64> {
    // numpy.arange(dt, 1, dt): length ceil((1 - dt) / dt), values dt + i * dt.
    let len = ((1.0 - dt) / dt).ceil().max(0.0) as usize;
    (0..len).map(|i| dt + i as f64 * dt).collect()
}

/// Violation ratio `ε_W2` of `a` (sorted) against `b` (sorted).
fn violation_ratio_sorted(a: &[f64], b: &[f64], ts: &[f64], dt: f64) -> f64 {
    let mut w2 = 0.0;
    let mut viol = 0.0;
    for (i, &t) in ts.iter().enumerate() {
        let f = quantile(a, t);
        let g = quantile(b, t);
        let diff = g - f;
        w2 += diff * diff * dt;
        if i > 0 && f < g {
            viol += diff * diff * dt;
        }
    }
    if w2 == 0.0 { 0.5 } else { viol / w2 }
}

/// Violation ratio `ε_W2(a, b)` (no bootstrap).
pub fn violation_ratio(a: &[f64], b: &[f64], dt: f64) -> Result<f64> {
    let (sa, sb) = prepare(a, b)?;
    if !(dt > 0.0 && dt < 1.0) {
        return Err(StatsError::InvalidParameter(format!(
            "dt {dt} not in (0, 1)"
        )));
    }
    Ok(violation_ratio_sorted(&sa, &sb, &grid(dt), dt))
}

fn prepare(a: &[f64], b: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
    for s in [a, b] {
        if s.is_empty() {
            return Err(StatsError::TooFewSamples { needed: 1, got: 0 });
        }
        check_finite(s)?;
    }
    let mut sa = a.to_vec();
    let mut sb = b.to_vec();
    sa.sort_by(f64::total_cmp);
    sb.sort_by(f64::total_cmp);
    Ok((sa, sb))
}

/// `ε_min` of the ASO test of `a` against `b` (samples need not be paired or equally long).
pub fn aso(a: &[f64], b: &[f64], opts: &AsoOptions) -> Result<f64> {
    let (sa, sb) = prepare(a, b)?;
    if !(opts.dt > 0.0 && opts.dt < 1.0) {
        return Err(StatsError::InvalidParameter(format!(
            "dt {} not in (0, 1)",
            opts.dt
        )));
    }
    if !(opts.confidence_level > 0.0 && opts.confidence_level < 1.0) {
        return Err(StatsError::InvalidParameter(format!(
            "confidence level {} not in (0, 1)",
            opts.confidence_level
        )));
    }
    if opts.bootstrap_iterations == 0 || opts.num_comparisons == 0 {
        return Err(StatsError::InvalidParameter(
            "bootstrap iterations and number of comparisons must be positive".into(),
        ));
    }
    let mut confidence = opts.confidence_level;
    if opts.num_comparisons > 1 {
        confidence += (1.0 - confidence) / opts.num_comparisons as f64;
    }
    let ts = grid(opts.dt);
    let eps = violation_ratio_sorted(&sa, &sb, &ts, opts.dt);
    let (n, m) = (sa.len() as f64, sb.len() as f64);
    let c = (n * m / (n + m)).sqrt();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut ra = vec![0.0; sa.len()];
    let mut rb = vec![0.0; sb.len()];
    let mut samples = Vec::with_capacity(opts.bootstrap_iterations);
    for _ in 0..opts.bootstrap_iterations {
        for x in ra.iter_mut() {
            *x = quantile(&sa, rng.random::<f64>());
        }
        for x in rb.iter_mut() {
            *x = quantile(&sb, rng.random::<f64>());
        }
        ra.sort_by(f64::total_cmp);
        rb.sort_by(f64::total_cmp);
        samples.push(c * (violation_ratio_sorted(&ra, &rb, &ts, opts.dt) - eps));
    }
    let k = samples.len() as f64;
    let mu = samples.iter().sum::<f64>() / k;
    let sigma = (samples.iter().map(|s| (s - mu) * (s - mu)).sum::<f64>() / k).sqrt();
    let eps_min = eps - sigma / c * norm_ppf(1.0 - confidence);
    Ok(eps_min.clamp(0.0, 1.0))
}
