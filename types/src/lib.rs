//! Plain data shared by every sigsweep crate (no burn, no gRPC): the
//! declarations of what each built-in model and the training settings accept
//! ([`params`]), and the one result record ([`record`]).
//!
//! The coordinator checks sweep files against these declarations at parse
//! and submit time (it never links burn); the worker checks every trial
//! against the same tables before it builds a model, and takes its list of
//! accepted names from them, so the two cannot disagree.

pub mod params;
pub mod record;

pub use params::{ModelDecl, ParamDecl, ParamKind, Scalar};
pub use record::{ResultRecord, TrialStatus};
