//! Why a trial failed.

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid parameter `{key}`: {message}")]
    InvalidParam { key: String, message: String },
    /// `known` is filled by the model registry (`crate::models`), the one
    /// place that knows which models exist.
    #[error("unknown model `{name}`; known models: {known}", known = known.join(", "))]
    UnknownModel { name: String, known: Vec<String> },
    /// Not the error's source: the message already holds it (a printed
    /// chain would say it twice).
    #[error("dataset: {0}")]
    Data(sigsweep_data::DataError),
    #[error("dataset: {0}")]
    Dataset(String),
    #[error("training diverged: {what} is {value} at epoch {epoch}, step {step}")]
    NonFinite {
        what: &'static str,
        value: f64,
        epoch: u32,
        step: usize,
    },
    #[error("selection metric `{0}` is not produced by this model/dataset")]
    MissingMetric(String),
    /// The selection metric was NaN or infinite at every epoch: no epoch
    /// can be selected (the same seed would do it again).
    #[error(
        "selection metric `{0}` was not finite at any epoch (NaN or infinite at every \
         evaluation: the model's outputs diverged; a lower learning rate or gradient \
         clipping may help)"
    )]
    NeverFinite(String),
    #[error("cancelled")]
    Cancelled,
    /// A training program broke the metrics protocol or reported nothing
    /// usable: the same program would do it again.
    #[error("training program: {0}")]
    Program(String),
    /// A training program exited with a failure (or could not start): it
    /// may succeed on another attempt.
    #[error("training program: {0}")]
    ProgramExit(String),
    #[error("backend: {0}")]
    Backend(String),
    /// The model would not fit in this machine's memory (`trial::memory`):
    /// another machine, or this one later, may have it.
    #[error("not enough memory: {0}")]
    Memory(String),
    /// The coordinator refused the trial's result (out of its bounds, or
    /// larger than a message): the same trial would produce it again.
    #[error("the coordinator refused the trial's result: {0}")]
    Refused(String),
}

impl From<sigsweep_data::DataError> for TrainError {
    fn from(e: sigsweep_data::DataError) -> Self {
        Self::Data(e)
    }
}

impl TrainError {
    /// Failures that will happen again with the same trial (bad parameters,
    /// bad data, divergence) as opposed to transient ones.
    pub fn is_deterministic(&self) -> bool {
        !matches!(
            self,
            Self::Cancelled | Self::Backend(_) | Self::ProgramExit(_) | Self::Memory(_)
        )
    }
}

impl TrainError {
    /// A model was taken out of its replica or workload and not put back
    /// (a step failed half-way).
    pub fn model_lost() -> Self {
        Self::Backend("model lost after a failed step".into())
    }
}
