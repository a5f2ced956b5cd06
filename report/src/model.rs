//! Input records and the specification of a report.

use serde::{Deserialize, Serialize};

pub use sigsweep_types::Goal;

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

/// Multiple-comparison correction across the non-baseline configurations of one metric
/// (one definition, in the statistics crate).
pub use sigsweep_stats::Correction;

/// Significance level used for the `*` marks.
pub const ALPHA: f64 = 0.05;

/// Seed of every resampling the report does (the permutation test's Monte
/// Carlo branch, the ASO bootstrap, the per-example bootstrap).
pub const REPORT_SEED: u64 = 0;

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
    /// What the sweep ran (the Reproducibility section); empty for a
    /// hand-made specification.
    #[serde(default)]
    pub run: RunInfo,
}

/// What a sweep ran, as its file says: the facts the Reproducibility
/// section states (the rest comes from the results themselves).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Model name (or names, when the model is swept).
    pub model: String,
    /// Fixed model parameters and training settings, `(key, value)`.
    pub params: Vec<(String, String)>,
    /// The dataset: kind, file or generator, and its parameters.
    pub dataset: String,
    /// Seeds every configuration was planned with.
    pub seeds: Vec<u64>,
    /// The grid: each hyperparameter with its values.
    pub search_space: Vec<(String, Vec<String>)>,
    /// Epochs per trial.
    pub epochs: u32,
    /// GPUs per trial (0: CPU).
    pub gpus_per_trial: u32,
    /// Trials that may share one GPU (`trials_per_gpu`; 0 or 1: none).
    #[serde(default)]
    pub trials_per_gpu: u32,
    /// Whether a configuration's seeds could train as one fused model.
    #[serde(default)]
    pub fuse_seeds: bool,
    /// Software, `(name, version)`: sigsweep, burn.
    pub versions: Vec<(String, String)>,
}
