//! Plain data shared by every sigsweep crate, with no dependency of its own
//! (no burn, no gRPC): the declarations of what each built-in model and the
//! training settings accept ([`params`]).
//!
//! The coordinator checks sweep files against these declarations at parse
//! and submit time (it never links burn); the worker checks every trial
//! against the same tables before it builds a model, and takes its list of
//! accepted names from them, so the two cannot disagree.

pub mod params;

pub use params::{ModelDecl, ParamDecl, ParamKind, Scalar};
