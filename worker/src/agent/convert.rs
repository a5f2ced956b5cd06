//! Wire assignments to trial requests, and metrics to the wire.

use indexmap::IndexMap;

use sigsweep_proto::v1 as pb;

use crate::trial::{DatasetRequest, Params, Split, TrainError, TrialRequest};

/// Converts a wire assignment into a trial request.
pub fn trial_request(trial: &pb::TrialSpec) -> Result<TrialRequest, TrainError> {
    let mut values = IndexMap::new();
    for p in &trial.params {
        let v = p
            .value
            .as_ref()
            .and_then(sigsweep_proto::ParamValue::to_param)
            .ok_or_else(|| TrainError::InvalidParam {
                key: p.name.clone(),
                message: "empty value".into(),
            })?;
        values.insert(p.name.clone(), v);
    }
    let dataset = trial.dataset.clone().unwrap_or_default();
    let params = if dataset.params_json.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&dataset.params_json).map_err(|e| {
            TrainError::Dataset(format!("dataset parameters are not valid JSON: {e}"))
        })?
    };
    let metrics = trial.metrics.clone().unwrap_or_default();
    Ok(TrialRequest {
        trial_id: trial.trial_id.clone(),
        seed: trial.seed,
        model: trial.model.clone(),
        params: Params::new(values),
        dataset: DatasetRequest {
            kind: dataset.kind,
            generator: dataset.generator,
            path: dataset.path,
            params,
        },
        select: metrics.select,
        select_higher_is_better: metrics.select_higher_is_better,
        select_split: if metrics.select_split == "test" {
            Split::Test
        } else {
            Split::Valid
        },
    })
}

pub(super) fn metrics(m: &std::collections::BTreeMap<String, f64>) -> pb::Metrics {
    pb::Metrics {
        values: m.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    }
}
