//! Wire ↔ domain conversions.

use std::collections::BTreeMap;

use sigsweep_proto::v1 as pb;

use crate::service::{Assignment, SweepProgress, SweepRunState};
use crate::store::StoredResult;
use crate::sweep::ParamValue;

pub(super) fn progress_to_proto(p: &SweepProgress, with_source: bool) -> pb::SweepStatus {
    pb::SweepStatus {
        sweep_id: p.sweep_id.clone(),
        name: p.name.clone(),
        state: match p.state {
            SweepRunState::Running => pb::SweepState::Running,
            SweepRunState::Finished => pb::SweepState::Finished,
            SweepRunState::Cancelled => pb::SweepState::Cancelled,
        } as i32,
        total: p.total,
        completed: p.completed,
        failed: p.failed,
        running: p.running,
        queued: p.queued,
        mean_trial_seconds: p.mean_trial_seconds,
        sweep_toml: if with_source {
            p.source.to_string()
        } else {
            String::new()
        },
    }
}

fn params_to_proto<'a>(
    params: impl Iterator<Item = (&'a String, &'a ParamValue)>,
) -> Vec<pb::Param> {
    params
        .map(|(k, v)| pb::Param {
            name: k.clone(),
            value: Some(v.into()),
        })
        .collect()
}

fn json_to_param(v: &serde_json::Value) -> Option<pb::ParamValue> {
    Some(match v {
        serde_json::Value::Bool(b) => pb::ParamValue::flag(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => pb::ParamValue::int(i),
            None => pb::ParamValue::float(n.as_f64()?),
        },
        serde_json::Value::String(s) => pb::ParamValue::text(s.clone()),
        other => pb::ParamValue::text(other.to_string()),
    })
}

pub(super) fn assignment_to_proto(a: &Assignment) -> pb::TrialAssignment {
    let spec = &a.spec;
    let dataset = pb::DatasetSpec {
        kind: spec.dataset.kind.clone(),
        generator: spec.dataset.generator.clone().unwrap_or_default(),
        path: spec.dataset.path.clone().unwrap_or_default(),
        params_json: serde_json::to_string(&spec.dataset.params).unwrap_or_default(),
    };
    pb::TrialAssignment {
        lease_id: a.lease_id.clone(),
        attempt: a.attempt,
        trial: Some(pb::TrialSpec {
            trial_id: a.trial.trial_id.clone(),
            sweep_id: a.sweep_id.clone(),
            config_key: a.trial.config.key.clone(),
            seed: a.trial.seed,
            model: spec.model.name.clone(),
            params: params_to_proto(a.trial.params.iter()),
            dataset: Some(dataset),
            metrics: Some(pb::MetricSpec {
                select: spec.metrics.select.clone(),
                select_higher_is_better: spec.metrics.select_goal == crate::sweep::Goal::Max,
                select_split: spec.metrics.select_split.clone(),
            }),
            gpus: spec.resources.gpus_per_trial,
        }),
    }
}

pub(super) fn metrics_from_proto(m: Option<pb::Metrics>) -> BTreeMap<String, f64> {
    m.map(|m| m.values.into_iter().collect())
        .unwrap_or_default()
}

pub(super) fn result_to_proto(r: &StoredResult) -> pb::TrialResult {
    pb::TrialResult {
        trial_id: r.trial_id.clone(),
        config_key: r.config_key.clone(),
        config: r
            .config
            .iter()
            .filter_map(|(k, v)| {
                Some(pb::Param {
                    name: k.clone(),
                    value: Some(json_to_param(v)?),
                })
            })
            .collect(),
        seed: r.seed,
        outcome: if r.status == "completed" {
            pb::TrialOutcome::Completed
        } else {
            pb::TrialOutcome::Failed
        } as i32,
        test_metrics: Some(pb::Metrics {
            values: r.metrics.clone().into_iter().collect(),
        }),
        valid_metrics: Some(pb::Metrics {
            values: r.valid_metrics.clone().into_iter().collect(),
        }),
        selected_epoch: r.selected_epoch.unwrap_or(0),
        failure: r.failure.clone().unwrap_or_default(),
        attempts: r.attempts,
        seconds: r.seconds,
        worker: r.worker.clone(),
    }
}
