//! Input records and the specification of a report.

use serde::{Deserialize, Serialize};

/// Whether higher or lower values of a metric are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    /// Higher is better (accuracy, F1, correlation).
    Max,
    /// Lower is better (MAE, loss).
    Min,
}

impl Goal {
    /// Whether `a` is strictly better than `b` under this goal.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Goal::Max => a > b,
            Goal::Min => a < b,
        }
    }

    /// `+1` for [`Goal::Max`], `-1` for [`Goal::Min`]: multiply a value to make higher better.
    pub fn sign(self) -> f64 {
        match self {
            Goal::Max => 1.0,
            Goal::Min => -1.0,
        }
    }

    /// `"max"` or `"min"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Goal::Max => "max",
            Goal::Min => "min",
        }
    }
}

/// The report reads the one result record of `sigsweep_types` (the store's
/// catalog, `results.jsonl` and `sigsweep results` hold the same type).
pub use sigsweep_types::{ResultRecord as TrialRecord, TrialStatus};

/// Significance test used against the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    /// Paired t-test (CLI `t`).
    #[default]
    #[serde(rename = "t")]
    PairedT,
    /// Wilcoxon signed-rank (CLI `wilcoxon`).
    Wilcoxon,
    /// Exact sign-flip permutation (CLI `permutation`).
    Permutation,
    /// Almost Stochastic Order (CLI `aso`); the "p" column holds `ε_min`.
    Aso,
}

impl TestKind {
    /// CLI name.
    pub fn cli_name(self) -> &'static str {
        match self {
            TestKind::PairedT => "t",
            TestKind::Wilcoxon => "wilcoxon",
            TestKind::Permutation => "permutation",
            TestKind::Aso => "aso",
        }
    }

    /// Parse a CLI name.
    pub fn from_cli(s: &str) -> Option<Self> {
        match s {
            "t" => Some(TestKind::PairedT),
            "wilcoxon" => Some(TestKind::Wilcoxon),
            "permutation" => Some(TestKind::Permutation),
            "aso" => Some(TestKind::Aso),
            _ => None,
        }
    }

    /// Name used in captions.
    pub fn label(self) -> &'static str {
        match self {
            TestKind::PairedT => "paired t-test",
            TestKind::Wilcoxon => "Wilcoxon signed-rank test",
            TestKind::Permutation => "exact sign-flip permutation test",
            TestKind::Aso => "Almost Stochastic Order (eps_min < 0.5)",
        }
    }
}

/// Multiple-comparison correction across the non-baseline configurations of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Correction {
    /// Holm–Bonferroni (CLI `holm`).
    #[default]
    Holm,
    /// Benjamini–Hochberg (CLI `bh`).
    #[serde(rename = "bh")]
    BenjaminiHochberg,
    /// Bonferroni (CLI `bonferroni`).
    Bonferroni,
    /// None (CLI `none`).
    None,
}

impl Correction {
    /// CLI name.
    pub fn cli_name(self) -> &'static str {
        match self {
            Correction::Holm => "holm",
            Correction::BenjaminiHochberg => "bh",
            Correction::Bonferroni => "bonferroni",
            Correction::None => "none",
        }
    }

    /// Parse a CLI name.
    pub fn from_cli(s: &str) -> Option<Self> {
        match s {
            "holm" => Some(Correction::Holm),
            "bh" => Some(Correction::BenjaminiHochberg),
            "bonferroni" => Some(Correction::Bonferroni),
            "none" => Some(Correction::None),
            _ => None,
        }
    }

    /// The statistics crate's equivalent.
    pub fn to_stats(self) -> sigsweep_stats::Correction {
        match self {
            Correction::Holm => sigsweep_stats::Correction::Holm,
            Correction::BenjaminiHochberg => sigsweep_stats::Correction::BenjaminiHochberg,
            Correction::Bonferroni => sigsweep_stats::Correction::Bonferroni,
            Correction::None => sigsweep_stats::Correction::None,
        }
    }

    /// Name used in captions.
    pub fn label(self) -> &'static str {
        self.to_stats().label()
    }
}

/// What to report and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSpec {
    /// Sweep name (title).
    pub sweep_name: String,
    /// Dataset label used in captions.
    pub dataset: String,
    /// Hyperparameter columns, in order.
    pub grid_keys: Vec<String>,
    /// `config_key` of the baseline configuration.
    pub baseline_key: String,
    /// Validation metric used for epoch and winner selection.
    pub select_metric: String,
    /// Direction of `select_metric`.
    pub select_goal: Goal,
    /// Reported test metrics, in order.
    pub metrics: Vec<(String, Goal)>,
    /// Significance test (default paired t).
    pub test: TestKind,
    /// Correction (default Holm).
    pub correction: Correction,
    /// The sweep selected epochs on the test split: the report says so prominently.
    pub selection_on_test: bool,
    /// `sigsweep confirm` report on fresh seeds: comparisons are confirmatory.
    pub confirmatory: bool,
}
