//! Hyperparameter values (`sigsweep_types::ParamValue`) from TOML.

pub use sigsweep_types::ParamValue;

/// Converts a TOML value; `None` for arrays, tables and datetimes.
pub fn from_toml(value: &toml::Value) -> Option<ParamValue> {
    match value {
        toml::Value::Boolean(b) => Some(ParamValue::Bool(*b)),
        toml::Value::Integer(i) => Some(ParamValue::Int(*i)),
        toml::Value::Float(f) => Some(ParamValue::Float(*f)),
        toml::Value::String(s) => Some(ParamValue::Text(s.clone())),
        _ => None,
    }
}
