//! sigsweep's gRPC wire contracts (tonic + prost), generated from
//! `proto/sigsweep/v1/sigsweep.proto` at build time.
//!
//! This crate holds wire types, and the conversion of the one result record
//! (`sigsweep_types::ResultRecord`) to and from its wire form, so that the
//! coordinator and every client read results the same way.

#![allow(clippy::all)]

mod error_code;

pub use error_code::ErrorCode;

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

impl v1::ParamValue {
    /// A JSON scalar as a wire value (integers stay integers).
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        Some(match v {
            serde_json::Value::Bool(b) => Self::flag(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Self::int(i),
                None => Self::float(n.as_f64()?),
            },
            serde_json::Value::String(s) => Self::text(s.clone()),
            other => Self::text(other.to_string()),
        })
    }

    /// The wire value as JSON (`null` when the oneof is empty).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            Some(v1::param_value::Kind::Float(x)) => serde_json::json!(x),
            Some(v1::param_value::Kind::Int(i)) => serde_json::json!(i),
            Some(v1::param_value::Kind::Text(s)) => serde_json::json!(s),
            Some(v1::param_value::Kind::Flag(b)) => serde_json::json!(b),
            None => serde_json::Value::Null,
        }
    }
}

impl From<&sigsweep_types::ResultRecord> for v1::TrialResult {
    fn from(r: &sigsweep_types::ResultRecord) -> Self {
        Self {
            trial_id: r.trial_id.to_string(),
            config_key: r.config_key.clone(),
            config: r
                .config
                .iter()
                .filter_map(|(k, v)| {
                    Some(v1::Param {
                        name: k.clone(),
                        value: Some(v1::ParamValue::from_json(v)?),
                    })
                })
                .collect(),
            seed: r.seed,
            outcome: if r.is_completed() {
                v1::TrialOutcome::Completed
            } else {
                v1::TrialOutcome::Failed
            } as i32,
            test_metrics: Some(v1::Metrics {
                values: r.metrics.clone().into_iter().collect(),
            }),
            valid_metrics: Some(v1::Metrics {
                values: r.valid_metrics.clone().into_iter().collect(),
            }),
            selected_epoch: r.selected_epoch.unwrap_or(0),
            failure: r.failure.clone().unwrap_or_default(),
            attempts: r.attempts,
            seconds: r.seconds,
            worker: r.worker.to_string(),
            predictions: r.predictions.clone().unwrap_or_default(),
            weights: r.weights.clone().unwrap_or_default(),
            history: r.history.iter().map(v1::EpochMetrics::from).collect(),
            fold: r.fold,
            hardware: r.hardware.clone().unwrap_or_default(),
            program_selected: r.program_selected,
        }
    }
}

impl From<&sigsweep_types::EpochRecord> for v1::EpochMetrics {
    fn from(e: &sigsweep_types::EpochRecord) -> Self {
        Self {
            epoch: e.epoch,
            train_loss: e.train_loss,
            valid: Some(v1::Metrics {
                values: e.valid.clone().into_iter().collect(),
            }),
            test: Some(v1::Metrics {
                values: e.test.clone().into_iter().collect(),
            }),
        }
    }
}

impl v1::EpochMetrics {
    /// The record form of one epoch.
    pub fn to_record(&self) -> sigsweep_types::EpochRecord {
        let metrics = |m: &Option<v1::Metrics>| {
            m.as_ref()
                .map(|m| m.values.clone().into_iter().collect())
                .unwrap_or_default()
        };
        sigsweep_types::EpochRecord {
            epoch: self.epoch,
            train_loss: self.train_loss,
            valid: metrics(&self.valid),
            test: metrics(&self.test),
        }
    }
}

impl v1::TrialResult {
    /// The result record of a trial of `sweep_id` (the wire form does not
    /// repeat the sweep id the caller asked for).
    pub fn to_record(&self, sweep_id: &str) -> sigsweep_types::ResultRecord {
        use sigsweep_types::TrialStatus;
        let metrics = |m: &Option<v1::Metrics>| {
            m.as_ref()
                .map(|m| m.values.clone().into_iter().collect())
                .unwrap_or_default()
        };
        let completed = self.outcome == v1::TrialOutcome::Completed as i32;
        sigsweep_types::ResultRecord {
            trial_id: self.trial_id.clone().into(),
            sweep_id: sweep_id.into(),
            config_key: self.config_key.clone(),
            config: self
                .config
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.value
                            .as_ref()
                            .map_or(serde_json::Value::Null, v1::ParamValue::to_json),
                    )
                })
                .collect(),
            seed: self.seed,
            status: if completed {
                TrialStatus::Completed
            } else {
                TrialStatus::Failed
            },
            metrics: metrics(&self.test_metrics),
            valid_metrics: metrics(&self.valid_metrics),
            selected_epoch: completed.then_some(self.selected_epoch),
            failure: (!self.failure.is_empty()).then(|| self.failure.clone()),
            attempts: self.attempts,
            seconds: self.seconds,
            worker: self.worker.clone().into(),
            predictions: (!self.predictions.is_empty()).then(|| self.predictions.clone()),
            weights: (!self.weights.is_empty()).then(|| self.weights.clone()),
            history: self
                .history
                .iter()
                .map(v1::EpochMetrics::to_record)
                .collect(),
            fold: self.fold,
            hardware: (!self.hardware.is_empty()).then(|| self.hardware.clone()),
            program_selected: self.program_selected,
        }
    }
}

impl From<&sigsweep_types::command::CommandSpec> for v1::CommandSpec {
    fn from(c: &sigsweep_types::command::CommandSpec) -> Self {
        Self {
            argv: c.argv.clone(),
            workdir: c.workdir.clone(),
            env: c.env.clone().into_iter().collect(),
            launcher: c.launcher.clone(),
            processes: c.processes.unwrap_or(0),
            metrics_regex: c.metrics_regex.clone(),
        }
    }
}

impl v1::CommandSpec {
    /// The worker's form of a training program.
    pub fn to_spec(&self) -> sigsweep_types::command::CommandSpec {
        sigsweep_types::command::CommandSpec {
            argv: self.argv.clone(),
            workdir: self.workdir.clone(),
            env: self.env.clone().into_iter().collect(),
            launcher: self.launcher.clone(),
            processes: (self.processes > 0).then_some(self.processes),
            metrics_regex: self.metrics_regex.clone(),
        }
    }
}

impl From<&sigsweep_types::ModelDecl> for v1::ModelDeclaration {
    fn from(m: &sigsweep_types::ModelDecl) -> Self {
        use sigsweep_types::ParamKind;
        let params = m
            .params
            .iter()
            .map(|p| {
                let (kind, min, max, choices) = match &p.kind {
                    ParamKind::Int { min, max } => ("int", *min as f64, *max as f64, Vec::new()),
                    ParamKind::Float { min, max } => ("float", *min, *max, Vec::new()),
                    ParamKind::Bool => ("bool", 0.0, 0.0, Vec::new()),
                    ParamKind::Text { choices } => (
                        "text",
                        0.0,
                        0.0,
                        choices.iter().map(|c| c.to_string()).collect(),
                    ),
                };
                v1::ParamDeclaration {
                    name: p.name.to_string(),
                    kind: kind.to_string(),
                    min,
                    max,
                    choices,
                    default: p.default.to_string(),
                    doc: p.doc.to_string(),
                }
            })
            .collect();
        Self {
            name: m.name.to_string(),
            doc: m.doc.to_string(),
            params,
        }
    }
}

impl v1::ModelDeclaration {
    /// The declaration this message carries; an error names what is wrong
    /// (an unknown kind, a parameter without a name or declared twice, a
    /// range that is NaN or whose `min` is above its `max`, which would let
    /// every value through or none).
    pub fn to_decl(&self) -> Result<sigsweep_types::ModelDecl, String> {
        use sigsweep_types::{ParamDecl, ParamKind};
        let params = self
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if p.name.is_empty() {
                    return Err(format!("parameter {} has no name", i + 1));
                }
                if self.params[..i].iter().any(|q| q.name == p.name) {
                    return Err(format!("parameter `{}` is declared twice", p.name));
                }
                let range = || {
                    if p.min.is_nan() || p.max.is_nan() || p.min > p.max {
                        Err(format!(
                            "parameter `{}`: the range [{:?}, {:?}] is empty or not a number",
                            p.name, p.min, p.max
                        ))
                    } else {
                        Ok(())
                    }
                };
                let kind = match p.kind.as_str() {
                    // The integers within [min, max]; bounds past i64's
                    // (infinite ones included) saturate.
                    "int" => {
                        range()?;
                        let (min, max) = (p.min.ceil() as i64, p.max.floor() as i64);
                        if min > max {
                            return Err(format!(
                                "parameter `{}`: no integer lies in [{:?}, {:?}]",
                                p.name, p.min, p.max
                            ));
                        }
                        ParamKind::Int { min, max }
                    }
                    "float" => {
                        range()?;
                        ParamKind::Float {
                            min: p.min,
                            max: p.max,
                        }
                    }
                    "bool" => ParamKind::Bool,
                    "text" => ParamKind::Text {
                        choices: p.choices.iter().cloned().map(Into::into).collect(),
                    },
                    other => {
                        return Err(format!(
                            "parameter `{}`: unknown kind `{other}` (int, float, bool, text)",
                            p.name
                        ));
                    }
                };
                Ok(ParamDecl {
                    name: p.name.clone().into(),
                    kind,
                    default: p.default.clone().into(),
                    doc: p.doc.clone().into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(sigsweep_types::ModelDecl {
            name: self.name.clone().into(),
            doc: self.doc.clone().into(),
            params: params.into(),
        })
    }
}

impl From<&sigsweep_types::ParamValue> for v1::ParamValue {
    fn from(v: &sigsweep_types::ParamValue) -> Self {
        use sigsweep_types::ParamValue as P;
        match v {
            P::Bool(b) => Self::flag(*b),
            P::Int(i) => Self::int(*i),
            P::Float(x) => Self::float(*x),
            P::Text(s) => Self::text(s.clone()),
        }
    }
}

impl v1::ParamValue {
    /// The value this wire value carries; `None` when the oneof is empty.
    pub fn to_param(&self) -> Option<sigsweep_types::ParamValue> {
        use sigsweep_types::ParamValue as P;
        use v1::param_value::Kind;
        Some(match self.kind.as_ref()? {
            Kind::Float(x) => P::Float(*x),
            Kind::Int(i) => P::Int(*i),
            Kind::Text(s) => P::Text(s.clone()),
            Kind::Flag(b) => P::Bool(*b),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::v1;

    #[test]
    fn every_built_in_declaration_survives_the_wire() {
        for m in sigsweep_types::params::MODELS {
            let back = v1::ModelDeclaration::from(m)
                .to_decl()
                .unwrap_or_else(|e| panic!("{}: {e}", m.name));
            assert_eq!(&back, m);
        }
    }

    #[test]
    fn a_declaration_that_would_check_nothing_is_refused() {
        let with = |params: Vec<v1::ParamDeclaration>| v1::ModelDeclaration {
            name: "mine".into(),
            doc: String::new(),
            params,
        };
        let param = |name: &str, kind: &str, min: f64, max: f64| v1::ParamDeclaration {
            name: name.into(),
            kind: kind.into(),
            min,
            max,
            ..Default::default()
        };
        for (params, expected) in [
            (
                vec![param("x", "float", f64::NAN, 1.0)],
                "`x`: the range [NaN, 1.0]",
            ),
            (
                vec![param("x", "float", 0.0, f64::NAN)],
                "`x`: the range [0.0, NaN]",
            ),
            (vec![param("x", "float", 5.0, 1.0)], "[5.0, 1.0] is empty"),
            (
                vec![param("n", "int", 3.0, 2.0)],
                "`n`: the range [3.0, 2.0]",
            ),
            (
                vec![param("n", "int", f64::NAN, 2.0)],
                "`n`: the range [NaN",
            ),
            (
                vec![param("n", "int", 0.5, 0.7)],
                "`n`: no integer lies in [0.5, 0.7]",
            ),
            (vec![param("", "bool", 0.0, 0.0)], "parameter 1 has no name"),
            (
                vec![param("x", "bool", 0.0, 0.0), param("x", "int", 0.0, 1.0)],
                "`x` is declared twice",
            ),
        ] {
            let e = with(params).to_decl().expect_err(expected);
            assert!(e.contains(expected), "{e} (expected {expected:?})");
        }
        // Open and infinite ends are ranges; a single value is one too.
        let ok = with(vec![
            param("a", "float", f64::NEG_INFINITY, f64::INFINITY),
            param("b", "int", f64::NEG_INFINITY, f64::INFINITY),
            param("c", "float", 2.0, 2.0),
            param("e", "int", -0.5, 2.5),
            param("d", "text", f64::NAN, f64::NAN),
        ])
        .to_decl()
        .expect("valid");
        assert_eq!(
            ok.param("b").map(|p| &p.kind),
            Some(&sigsweep_types::ParamKind::Int {
                min: i64::MIN,
                max: i64::MAX
            })
        );
        assert_eq!(
            ok.param("e").map(|p| &p.kind),
            Some(&sigsweep_types::ParamKind::Int { min: 0, max: 2 })
        );
    }
}
