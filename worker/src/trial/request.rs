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
    /// For a training program (`model = "command"`): what to run and where
    /// its files go. Set only by a worker started with `--allow-command`.
    pub program: Option<ProgramRun>,
}

/// A training program's trial on this worker.
#[derive(Debug, Clone)]
pub struct ProgramRun {
    pub spec: sigsweep_types::command::CommandSpec,
    /// `SIGSWEEP_OUTPUT_DIR`: the program's own files (kept across
    /// attempts, so that a program that checkpoints can resume).
    pub output_dir: std::path::PathBuf,
    /// The trial's log file (stdout and stderr, every attempt appended).
    pub log: std::path::PathBuf,
    /// `CUDA_VISIBLE_DEVICES` for the program: the trial's GPUs, or empty.
    pub visible_devices: String,
    /// GPUs the trial has (torchrun starts one process per GPU).
    pub gpus: u32,
    /// SIGKILL follows SIGTERM after this long when the trial is stopped.
    pub grace: std::time::Duration,
    /// The worker's name, for the log's attempt header.
    pub worker: String,
    /// The metrics the sweep reports: every report of the program carries
    /// them (and the selection metric) in the splits the protocol uses.
    pub required: Vec<String>,
}
