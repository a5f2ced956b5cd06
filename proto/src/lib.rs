//! sigsweep's gRPC wire contracts (tonic + prost), generated from
//! `proto/sigsweep/v1/sigsweep.proto` at build time.
//!
//! This crate holds wire types only: the coordinator and the worker convert
//! them to their domain types at the gRPC edge.

#![allow(clippy::all)]

pub mod v1 {
    tonic::include_proto!("sigsweep.v1");

    /// Encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("sigsweep_descriptor");
}

pub use v1::*;

impl v1::ParamValue {
    pub fn float(v: f64) -> Self {
        Self {
            kind: Some(v1::param_value::Kind::Float(v)),
        }
    }
    pub fn int(v: i64) -> Self {
        Self {
            kind: Some(v1::param_value::Kind::Int(v)),
        }
    }
    pub fn text(v: impl Into<String>) -> Self {
        Self {
            kind: Some(v1::param_value::Kind::Text(v.into())),
        }
    }
    pub fn flag(v: bool) -> Self {
        Self {
            kind: Some(v1::param_value::Kind::Flag(v)),
        }
    }
}
