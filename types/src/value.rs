//! Hyperparameter values: what a sweep file can hold in a grid or a model
//! table, what the wire carries and what a trial's parameters are — one
//! type for the coordinator, the worker and the report.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A hyperparameter value: what a sweep file can hold in a grid or a model
/// table (numbers, strings, booleans).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl ParamValue {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as the parameter declarations see it.
    pub fn as_scalar(&self) -> crate::Scalar<'_> {
        match self {
            Self::Bool(b) => crate::Scalar::Bool(*b),
            Self::Int(i) => crate::Scalar::Int(*i),
            Self::Float(x) => crate::Scalar::Float(*x),
            Self::Text(s) => crate::Scalar::Text(s),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x:?}"),
            Self::Text(s) => write!(f, "{s}"),
        }
    }
}
