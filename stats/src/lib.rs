//! # sigsweep-stats
//!
//! Significance statistics for seed-matched experiment comparisons: "mean of 10 runs,
//! `*` = p < 0.05 under a paired t-test, Holm-corrected". Pure functions over `&[f64]`; all
//! distributions come from `statrs`. Reference values (scipy 1.17, statsmodels 0.15, deepsig
//! 1.2) live in `shared/golden/stats.json` and are checked by `tests/golden.rs`.
//!
//! ## Conventions
//!
//! * **Pairing**: `a[i]` and `b[i]` come from the same seed; differences are `d = a - b`.
//! * **Spread**: standard deviations use `ddof = 1`; paired `df = n - 1`.
//! * **Alternatives** ([`Alternative`]): `two-sided`, `greater` (`mean(d) > 0`), `less`.
//! * **Degenerate t-tests** ([`Outcome`]): constant non-zero differences give `t = ±inf` and
//!   `p = 0` (or `1` for the one-sided alternative in the wrong direction), as in scipy; all-zero
//!   differences — `nan` in scipy — give the explicit [`Outcome::NoDifference`] with `t = 0`,
//!   `p = 1`, so no `NaN` reaches a table.
//! * **Wilcoxon**: scipy 1.17 defaults — zeros dropped (`zero_method="wilcox"`), tied `|d|` get
//!   average ranks; `method="auto"` on `n` pairs (zeros included): the exact signed-rank table
//!   for `n <= 50` without zeros or ties, the exact distribution over all `2^n` sign flips for
//!   `n <= 13` with zeros or ties, otherwise the normal approximation with tie correction and
//!   no continuity correction ([`WilcoxonMethod`]).
//! * **Permutation**: sign flips of `d`; all `2^n` patterns for `n <= 20`, seeded Monte Carlo
//!   (ChaCha8) above.
//! * **Corrections**: statsmodels `multipletests` (adjusted p in input order, clipped to 1,
//!   monotone); `NaN` p-values count as 1.
//! * **ASO**: `deepsig.aso()` defaults (see [`aso`](mod@aso)); `ε_min < 0.5` ⇒ `a` dominates.
//! * **JSON**: non-finite numbers serialise as the strings `"nan"`, `"inf"`, `"-inf"` ([`num`]).
//!
//! ## Layout
//!
//! | module | contents |
//! |---|---|
//! | [`describe`] | mean, std (ddof 1), paired differences |
//! | [`dist`] | t and normal cdf/sf/ppf wrappers |
//! | [`ttest`] | paired and Welch t-tests, CI of the mean difference, Cohen's d_z |
//! | [`wilcoxon`](mod@wilcoxon) | Wilcoxon signed-rank test |
//! | [`permutation`] | sign-flip permutation test |
//! | [`correction`] | Holm, Benjamini–Hochberg, Bonferroni |
//! | [`aso`](mod@aso) | Almost Stochastic Order `ε_min` |
//! | [`mcnemar`](mod@mcnemar) | McNemar's test on discordant pairs (exact binomial or corrected chi-square) |
//! | [`bootstrap`](mod@bootstrap) | paired bootstrap over test examples: percentile CI, shifted-null p |
//! | [`power`] | minimum detectable d_z and impossibility warnings |
//! | [`compare`](mod@compare) | [`compare()`]: everything at once, serialisable |
//! | [`num`] | serde helpers for non-finite floats |

pub mod aso;
pub mod bootstrap;
pub mod compare;
pub mod correction;
pub mod describe;
pub mod dist;
pub mod error;
pub mod mcnemar;
pub mod num;
pub mod permutation;
pub mod power;
pub mod ttest;
pub mod wilcoxon;

pub use aso::{AsoOptions, aso, violation_ratio};
pub use bootstrap::{Bootstrap, paired_bootstrap};
pub use compare::{CompareOptions, Comparison, compare, compare_with, try_compare};
pub use correction::{Correction, adjust, benjamini_hochberg, bonferroni, holm};
pub use describe::{differences, mean, std, variance};
pub use dist::{norm_cdf, norm_ppf, norm_sf, t_cdf, t_ppf, t_sf};
pub use error::{Result, StatsError};
pub use mcnemar::{McNemar, discordant, mcnemar};
pub use permutation::{Permutation, permutation_test};
pub use power::{PowerAnalysis, PowerWarning, min_detectable_dz, min_exact_p, power_analysis};
pub use ttest::{
    Alternative, Outcome, TTest, ci_mean_diff, cohens_dz, corrected_ci_mean_diff,
    corrected_resampled_t, paired_t, t_pvalue, welch_t,
};
pub use wilcoxon::{Wilcoxon, WilcoxonMethod, wilcoxon};
