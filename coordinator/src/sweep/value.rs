//! Hyperparameter values.

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
    /// Converts a TOML value; `None` for arrays, tables and datetimes.
    pub fn from_toml(value: &toml::Value) -> Option<Self> {
        match value {
            toml::Value::Boolean(b) => Some(Self::Bool(*b)),
            toml::Value::Integer(i) => Some(Self::Int(*i)),
            toml::Value::Float(f) => Some(Self::Float(*f)),
            toml::Value::String(s) => Some(Self::Text(s.clone())),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as the parameter declarations see it.
    pub fn as_scalar(&self) -> sigsweep_types::Scalar<'_> {
        match self {
            Self::Bool(b) => sigsweep_types::Scalar::Bool(*b),
            Self::Int(i) => sigsweep_types::Scalar::Int(*i),
            Self::Float(x) => sigsweep_types::Scalar::Float(*x),
            Self::Text(s) => sigsweep_types::Scalar::Text(s),
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

impl From<&ParamValue> for sigsweep_proto::ParamValue {
    fn from(v: &ParamValue) -> Self {
        match v {
            ParamValue::Bool(b) => Self::flag(*b),
            ParamValue::Int(i) => Self::int(*i),
            ParamValue::Float(x) => Self::float(*x),
            ParamValue::Text(s) => Self::text(s.clone()),
        }
    }
}

impl ParamValue {
    /// Converts a wire value; `None` when the oneof is empty.
    pub fn from_proto(v: &sigsweep_proto::ParamValue) -> Option<Self> {
        use sigsweep_proto::param_value::Kind;
        Some(match v.kind.as_ref()? {
            Kind::Float(x) => Self::Float(*x),
            Kind::Int(i) => Self::Int(*i),
            Kind::Text(s) => Self::Text(s.clone()),
            Kind::Flag(b) => Self::Bool(*b),
        })
    }
}
