//! Sign-flip permutation test on paired differences.
//!
//! Under the null the sign of each difference `d_i = a_i - b_i` is exchangeable. The statistic
//! is the sum (equivalently the mean) of the differences. For `n <= 20` all `2^n` sign patterns
//! are enumerated (the observed pattern included), so the smallest attainable two-sided p is
//! `2 / 2^n`. Above that, `iterations` random patterns are drawn from a seeded ChaCha8 RNG and
//! `p = (1 + #{extreme}) / (1 + iterations)`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::describe::differences;
use crate::error::{Result, StatsError, check_paired};
use crate::ttest::Alternative;

/// Largest `n` enumerated exactly.
pub const EXACT_MAX_N: usize = 20;

/// Result of the sign-flip permutation test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Permutation {
    /// Observed mean difference.
    pub mean_diff: f64,
    /// p-value in `[0, 1]`.
    pub p: f64,
    /// Whether all `2^n` sign patterns were enumerated.
    pub exact: bool,
    /// Number of sign patterns evaluated.
    pub permutations: u64,
    /// The alternative tested.
    pub alternative: Alternative,
}

/// Sign-flip permutation test; `iterations` and `seed` are used only when `n > 20`.
pub fn permutation_test(
    a: &[f64],
    b: &[f64],
    alternative: Alternative,
    iterations: u64,
    seed: u64,
) -> Result<Permutation> {
    check_paired(a, b, 1)?;
    let d = differences(a, b);
    let n = d.len();
    let obs: f64 = d.iter().sum();
    let scale: f64 = d.iter().map(|x| x.abs()).sum();
    let tol = 1e-9 * scale.max(f64::MIN_POSITIVE);
    let extreme = |s: f64| -> bool {
        match alternative {
            Alternative::TwoSided => s.abs() >= obs.abs() - tol,
            Alternative::Greater => s >= obs - tol,
            Alternative::Less => s <= obs + tol,
        }
    };
    let (count, total, exact) = if n <= EXACT_MAX_N {
        let total = 1u64 << n;
        let mut count = 0u64;
        for mask in 0..total {
            let s: f64 = d
                .iter()
                .enumerate()
                .map(|(i, x)| if mask >> i & 1 == 1 { -x } else { *x })
                .sum();
            if extreme(s) {
                count += 1;
            }
        }
        (count, total, true)
    } else {
        if iterations == 0 {
            return Err(StatsError::InvalidParameter(
                "permutation iterations must be positive".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut count = 0u64;
        for _ in 0..iterations {
            let s: f64 = d
                .iter()
                .map(|x| if rng.random::<bool>() { -x } else { *x })
                .sum();
            if extreme(s) {
                count += 1;
            }
        }
        (count + 1, iterations + 1, false)
    };
    Ok(Permutation {
        mean_diff: obs / n as f64,
        p: (count as f64 / total as f64).clamp(0.0, 1.0),
        exact,
        permutations: total,
        alternative,
    })
}
