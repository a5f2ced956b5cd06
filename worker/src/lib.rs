//! The sigsweep worker: pulls trials from the coordinator over gRPC and
//! trains them with burn.
//!
//! Layers, each depending only on the ones above it in this list:
//! - [`backend`], [`tensor`]: burn only — devices, the process-wide training
//!   lock, tensor helpers;
//! - [`trial`]: the contract — what a trial is ([`TrialRequest`], its
//!   [`trial::Params`] and dataset), what a model provides
//!   ([`trial::Workload`], [`trial::Sharded`]), what comes back
//!   ([`TrialOutcome`], [`TrainError`]) and the one epoch-selection rule;
//! - [`models`]: the implementations; `models/mod.rs` is the registry and
//!   the only place a model name is matched;
//! - [`strategy`]: plain, data-parallel and fused training, which drive the
//!   models through the contract;
//! - [`execute`]: chooses the strategy for a leased group of trials;
//! - [`bench`](mod@bench): `sigsweep bench train`'s measurements;
//! - [`supervisor`]: worker processes supervised by a parent (slots, local
//!   runs);
//! - [`agent`]: the gRPC loop — register, acquire trials under a lease,
//!   heartbeat (progress, cancellation), complete or fail, drain on SIGTERM.
//!
//! Training never runs on the async runtime: the agent spawns a thread per
//! group and talks to it through a channel and a cancel flag checked every
//! step.

// The module docs are written for the people who change this crate: they
// link the private items that carry each decision (`cargo doc
// --document-private-items` resolves them).
#![allow(rustdoc::private_intra_doc_links)]

pub mod agent;
pub mod backend;
pub mod bench;
pub mod execute;
pub mod models;
pub mod predict;
pub mod strategy;
pub mod supervisor;
pub mod tensor;
pub mod trial;

pub use trial::{TrainError, TrialOutcome, TrialRequest};

/// The burn version this worker trains with (from Cargo.lock at build time).
pub const BURN_VERSION: &str = env!("SIGSWEEP_BURN_VERSION");

pub use sigsweep_types::host::default_name;

// The paths of the first layout (`parallel`, `params`, `trainer`), kept so
// that code written against them (the equivalence tests among it) still
// builds; new code uses `strategy` and `trial`.
pub use strategy as parallel;
pub use trial::params;
/// The first layout's `trainer` module: the trial contract plus the plain
/// strategy's entry point.
pub mod trainer {
    pub use crate::strategy::plain::run_trial;
    pub use crate::trial::{
        DatasetRequest, EpochReport, LoadedDataset, Split, TrainError, TrialOutcome, TrialRequest,
        Workload, load_dataset,
    };
}
