//! The aggregated report: what [`crate::build()`] produces and every renderer consumes.

use serde::{Deserialize, Serialize};
use sigsweep_stats::PowerAnalysis;

use crate::model::{Correction, Goal, TestKind};

pub use crate::model::ALPHA;

/// Which test produced a row's p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsedTest {
    /// The requested paired test, on seeds present in both configurations.
    Paired,
    /// Cross-validation: Nadeau & Bengio's corrected resampled t-test on
    /// (seed, fold) pairs (the folds share training data).
    CorrectedResampled,
    /// Fewer than two common seeds: Welch's unpaired t-test on all completed seeds.
    WelchFallback,
    /// Not enough data for any test.
    None,
}

/// A configuration compared with the baseline on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowComparison {
    /// Seed by seed against the baseline, direction-aware: on how many
    /// paired seeds this configuration was better, equal or worse.
    #[serde(default)]
    pub seeds: SeedCounts,
    /// Paired, Welch fallback, or none.
    pub used: UsedTest,
    /// Seeds used in the comparison (pairs, or the smaller group for Welch).
    pub n_pairs: usize,
    /// Completed seeds of either side that had no partner and were excluded.
    pub excluded_seeds: Vec<u64>,
    /// Mean of (config − baseline) over pairs (or difference of means for Welch).
    #[serde(with = "sigsweep_stats::num")]
    pub delta: f64,
    /// 95% CI of `delta` (t quantile; Welch–Satterthwaite for the fallback).
    #[serde(with = "sigsweep_stats::num::pair")]
    pub ci95: [f64; 2],
    /// Cohen's d_z of the paired differences (`NaN` for Welch).
    #[serde(with = "sigsweep_stats::num")]
    pub dz: f64,
    /// Raw p-value (two-sided), or `ε_min` for ASO.
    #[serde(with = "sigsweep_stats::num")]
    pub p: f64,
    /// Corrected p-value (or Bonferroni-adjusted `ε_min` for ASO).
    #[serde(with = "sigsweep_stats::num")]
    pub p_adj: f64,
    /// `p_adj < 0.05` (ASO: `ε_min < 0.5`).
    pub significant: bool,
    /// All paired differences are zero: no difference at all.
    pub no_difference: bool,
    /// Winner chosen on the same seeds: the comparison is exploratory.
    pub exploratory: bool,
}

/// Seed-by-seed outcome of a comparison: "improved on `wins` of
/// `wins + ties + losses` seeds". The unit of replication is the seed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedCounts {
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
}

impl SeedCounts {
    /// Counts the pairs `(mine, baseline)` under `goal`.
    pub fn of(pairs: impl IntoIterator<Item = (f64, f64)>, goal: crate::model::Goal) -> Self {
        let mut c = Self::default();
        for (mine, base) in pairs {
            if goal.better(mine, base) {
                c.wins += 1;
            } else if goal.better(base, mine) {
                c.losses += 1;
            } else {
                c.ties += 1;
            }
        }
        c
    }

    /// `k/n (W–T–L)`, as the tables print it.
    pub fn label(&self) -> String {
        let n = self.wins + self.ties + self.losses;
        format!(
            "{}/{n} ({}–{}–{})",
            self.wins, self.wins, self.ties, self.losses
        )
    }
}

/// One configuration in one metric table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Canonical config key.
    pub config_key: String,
    /// Display values of the grid hyperparameters, in `grid_keys` order.
    pub hyper: Vec<String>,
    /// Whether this is the baseline.
    pub is_baseline: bool,
    /// Best mean for this metric (direction-aware): bold.
    pub is_best: bool,
    /// Winner by validation `select_metric`.
    pub is_winner: bool,
    /// Seeds with a finite value of this metric, ascending (with
    /// cross-validation, one entry per (seed, fold), `folds` alongside).
    pub seeds: Vec<u64>,
    /// The fold of each entry of `seeds` (cross-validation only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folds: Vec<u32>,
    /// Values for `seeds`.
    pub values: Vec<f64>,
    /// Mean over seeds.
    #[serde(with = "sigsweep_stats::num")]
    pub mean: f64,
    /// Standard deviation over seeds (ddof 1).
    #[serde(with = "sigsweep_stats::num")]
    pub std: f64,
    /// Comparison with the baseline (absent for the baseline itself).
    pub comparison: Option<RowComparison>,
}

/// Table of one reported metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricTable {
    /// Metric name.
    pub metric: String,
    /// Direction.
    pub goal: Goal,
    /// One row per configuration.
    pub rows: Vec<Row>,
    /// Number of comparisons corrected for.
    pub comparisons: usize,
    /// Power of this design (n = smallest number of pairs, m = comparisons).
    pub power: PowerAnalysis,
}

/// One configuration's learning curve: the selection metric on the
/// selection split after every epoch, over the seeds whose results carry a
/// history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub config_key: String,
    pub is_baseline: bool,
    /// Per epoch (in order): `(epoch, mean, std, seeds)`; std is 0 for one
    /// seed.
    pub points: Vec<(u32, f64, f64, usize)>,
    /// The epoch each seed selected, one entry per seed.
    pub selected: Vec<u32>,
}

/// Summary of one configuration across metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSummary {
    /// Canonical config key.
    pub config_key: String,
    /// Hyperparameters.
    pub config: indexmap::IndexMap<String, serde_json::Value>,
    /// Completed seeds.
    pub completed_seeds: Vec<u64>,
    /// Number of failed trials.
    pub failed: usize,
    /// Mean of the validation selection metric.
    pub valid_mean: Option<f64>,
    /// Its standard deviation over seeds (ddof 1; `None` below two seeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_std: Option<f64>,
}

/// The compute the results record: wall time of the attempt that produced
/// each completed trial.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Compute {
    /// Completed trials.
    pub trials: usize,
    /// Sum of their seconds.
    pub total_seconds: f64,
    pub mean_seconds: f64,
    pub median_seconds: f64,
    pub max_seconds: f64,
    /// Distinct workers that reported results.
    pub workers: Vec<String>,
    /// The hardware descriptions the completed trials carry, with how many
    /// trials each (first-seen order); trials without one are not counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hardware: Vec<(String, usize)>,
}

/// A failed trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedTrial {
    /// Trial id.
    pub trial_id: String,
    /// Config key.
    pub config_key: String,
    /// Seed.
    pub seed: u64,
    /// Attempts made.
    pub attempts: u32,
    /// Reason (or "unknown").
    pub reason: String,
}

/// Everything a renderer needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Sweep name.
    pub sweep_name: String,
    /// Dataset label.
    pub dataset: String,
    /// Hyperparameter columns.
    pub grid_keys: Vec<String>,
    /// Baseline config key.
    pub baseline_key: String,
    /// Validation selection metric.
    pub select_metric: String,
    /// Its direction.
    pub select_goal: Goal,
    /// Test used.
    pub test: TestKind,
    /// Correction used.
    pub correction: Correction,
    /// Epochs were selected on the test split.
    pub selection_on_test: bool,
    /// Confirmatory (fresh seeds) report.
    pub confirmatory: bool,
    /// Configurations in first-seen order.
    pub configs: Vec<ConfigSummary>,
    /// Winner by validation mean of `select_metric`.
    pub winner: Option<String>,
    /// One table per reported metric.
    pub tables: Vec<MetricTable>,
    /// Failed trials.
    pub failures: Vec<FailedTrial>,
    /// Notes about pairing, fallbacks and input problems, in order.
    pub notes: Vec<String>,
    /// Learning curves of the selection metric, per configuration (empty
    /// when no result carries a history).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curves: Vec<Curve>,
    /// Tests over test examples (bootstrap, McNemar, per-class F1,
    /// confusion matrices), when the trials saved predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<crate::per_example::ExampleAnalysis>,
    /// What the sweep ran (from its file).
    #[serde(default)]
    pub run: crate::model::RunInfo,
    /// Compute recorded by the results.
    #[serde(default)]
    pub compute: Compute,
    /// Cross-validation folds: comparisons pair on (seed, fold), and the
    /// paired t-test is Nadeau & Bengio's corrected resampled t.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::SeedCounts;
    use crate::Goal;

    #[test]
    fn seed_counts_follow_the_metric_direction() {
        let pairs = [(0.7, 0.6), (0.5, 0.5), (0.4, 0.6)];
        let max = SeedCounts::of(pairs, Goal::Max);
        assert_eq!((max.wins, max.ties, max.losses), (1, 1, 1));
        let mae = SeedCounts::of([(0.2, 0.3), (0.2, 0.3), (0.4, 0.3)], Goal::Min);
        assert_eq!((mae.wins, mae.ties, mae.losses), (2, 0, 1));
        assert_eq!(mae.label(), "2/3 (2–0–1)");
        assert_eq!(SeedCounts::default().label(), "0/0 (0–0–0)");
    }
}
