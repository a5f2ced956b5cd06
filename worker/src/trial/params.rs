//! A trial's hyperparameters with typed getters.

use indexmap::IndexMap;

use super::error::TrainError;

/// A hyperparameter value (the one type of every crate).
pub use sigsweep_types::ParamValue as Value;

/// Resolved hyperparameters of one trial.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    values: IndexMap<String, Value>,
}

fn invalid(key: &str, message: impl Into<String>) -> TrainError {
    TrainError::InvalidParam {
        key: key.to_string(),
        message: message.into(),
    }
}

impl Params {
    pub fn new(values: IndexMap<String, Value>) -> Self {
        Self { values }
    }

    pub fn insert(&mut self, key: &str, value: Value) {
        self.values.insert(key.to_string(), value);
    }

    /// Every parameter, in order.
    pub fn values(&self) -> &IndexMap<String, Value> {
        &self.values
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Checks every value against `model`'s declarations and the training
    /// settings' (the same tables the coordinator checks sweep files with):
    /// an undeclared key, a wrong type or a value out of range is an error.
    pub fn check_declared(&self, model: &sigsweep_types::ModelDecl) -> Result<(), TrainError> {
        for (k, v) in &self.values {
            let decl = sigsweep_types::params::training(k)
                .or_else(|| model.param(k))
                .ok_or_else(|| {
                    invalid(k, format!("unknown parameter for model `{}`", model.name))
                })?;
            decl.check(v.as_scalar()).map_err(|m| invalid(k, m))?;
        }
        Ok(())
    }

    pub fn f64(&self, key: &str, default: f64) -> Result<f64, TrainError> {
        match self.values.get(key) {
            None => Ok(default),
            Some(Value::Float(x)) if x.is_finite() => Ok(*x),
            Some(Value::Int(i)) => Ok(*i as f64),
            Some(other) => Err(invalid(
                key,
                format!("expected a finite number, got {other:?}"),
            )),
        }
    }

    pub fn f64_in(&self, key: &str, default: f64, lo: f64, hi: f64) -> Result<f64, TrainError> {
        let v = self.f64(key, default)?;
        if v < lo || v > hi {
            return Err(invalid(key, format!("{v} is outside [{lo}, {hi}]")));
        }
        Ok(v)
    }

    pub fn usize(&self, key: &str, default: usize) -> Result<usize, TrainError> {
        match self.values.get(key) {
            None => Ok(default),
            Some(Value::Int(i)) if *i >= 0 => Ok(*i as usize),
            Some(other) => Err(invalid(
                key,
                format!("expected a non-negative integer, got {other:?}"),
            )),
        }
    }

    pub fn positive(&self, key: &str, default: usize) -> Result<usize, TrainError> {
        let v = self.usize(key, default)?;
        if v == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
        Ok(v)
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, TrainError> {
        match self.values.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(invalid(key, format!("expected a boolean, got {other:?}"))),
        }
    }

    pub fn text(&self, key: &str, default: &str) -> Result<String, TrainError> {
        match self.values.get(key) {
            None => Ok(default.to_string()),
            Some(Value::Text(s)) => Ok(s.clone()),
            Some(other) => Err(invalid(key, format!("expected a string, got {other:?}"))),
        }
    }
}
