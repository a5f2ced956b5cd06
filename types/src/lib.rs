//! Plain data shared by every sigsweep crate (no burn, no gRPC): the
//! declarations of what each built-in model and the training settings accept
//! ([`params`]), the one result record ([`record`]) and [`Goal`].
//!
//! The coordinator checks sweep files against these declarations at parse
//! and submit time (it never links burn); the worker checks every trial
//! against the same tables before it builds a model, and takes its list of
//! accepted names from them, so the two cannot disagree.

pub mod command;
pub mod duration;
pub mod goal;
pub mod host;
pub mod ids;
pub mod layered;
pub mod params;
pub mod record;
pub mod value;

pub use goal::Goal;
pub use ids::{SweepId, TrialId, WorkerId};
pub use params::{ModelDecl, ParamDecl, ParamKind, Scalar};
pub use record::{EpochRecord, ResultRecord, TrialStatus};
pub use value::ParamValue;
