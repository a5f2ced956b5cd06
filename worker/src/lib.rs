//! The sigsweep worker: pulls trials from the coordinator over gRPC and
//! trains them with burn.
//!
//! Layout:
//! - [`agent`]: the gRPC loop — register, acquire a trial under a lease,
//!   heartbeat (progress, cancellation), complete or fail, drain on SIGTERM;
//! - [`trainer`]: runs one trial on its own thread — builds the dataset and
//!   the model from the trial's parameters, trains epoch by epoch, selects
//!   the epoch on the validation metric and reports test metrics there;
//! - [`models`]: the model registry and the models (late-fusion baseline, …);
//! - [`params`]: typed access to a trial's hyperparameters;
//! - [`backend`]: the burn backends (CPU ndarray; CUDA behind `cuda`);
//! - [`parallel`]: data parallelism inside a trial and seed fusion across
//!   trials (HFTA), with benchmark hooks.
//!
//! Training never runs on the async runtime: the agent spawns a thread per
//! trial and talks to it through a channel and a cancel flag checked every
//! step.

pub mod agent;
pub mod backend;
pub mod models;
pub mod parallel;
pub mod params;
pub mod trainer;

pub use trainer::{TrainError, TrialOutcome, TrialRequest};
