//! The trial contract: what a strategy is asked to run ([`TrialRequest`]),
//! with which parameters ([`Params`]) and data ([`LoadedDataset`]), what a
//! model must provide ([`Workload`], [`Sharded`]), what comes back
//! ([`TrialOutcome`], [`TrainError`]) and the one epoch-selection rule
//! ([`Selector`]).
//!
//! Nothing here knows a model or a strategy: `models/` implements the
//! contract, `strategy/` drives it, `execute` chooses the strategy.

pub mod adamw;
pub mod checkpoint;
pub mod clip;
pub mod data;
pub mod error;
pub mod memory;
pub mod outcome;
pub mod params;
pub mod request;
pub mod weights;
pub mod workload;

pub use checkpoint::{
    Checkpoint, EpochSeed, WorkloadState, epoch_seed, record_bytes, record_from, restore_trainer,
    rng_position, save_trainer, set_rng_position,
};
pub use clip::{Clipped, clip_grad_norm, grad_norm};
pub use data::{DatasetRequest, LoadedDataset, load_dataset};
pub use error::TrainError;
pub use outcome::{
    EpochReport, Prediction, SelectorState, TrialOutcome, predictions_jsonl, train_epoch_steps,
};
pub(crate) use outcome::{Selector, check_mean_loss};
pub use params::{Params, Value};
pub use request::{ProgramRun, Split, TrialRequest};
pub use weights::{Named, Weights};
pub use workload::{
    Ending, LocalPart, ReplicaOptim, Replicas, Sharded, ShardedVisitor, Workload, no_checkpoints,
    no_predictions, no_weights, shard_ranges,
};
