//! What the agent asks a strategy to run: one trial's identity, model,
//! parameters, dataset and selection protocol.

use super::data::DatasetRequest;
use super::params::Params;

/// Which split to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Valid,
    Test,
}

/// Everything needed to run one trial.
#[derive(Debug, Clone)]
pub struct TrialRequest {
    pub trial_id: String,
    pub seed: u64,
    pub model: String,
    pub params: Params,
    pub dataset: DatasetRequest,
    /// Metric that selects the epoch.
    pub select: String,
    pub select_higher_is_better: bool,
    /// Split the selection metric is read from (Valid, or Test to reproduce
    /// protocols that select on test).
    pub select_split: Split,
    /// Where the trial keeps its per-epoch checkpoints and resumes from
    /// (`[training] save = ["checkpoints"]` on a worker with `--artifacts`).
    pub checkpoint: Option<std::path::PathBuf>,
}
