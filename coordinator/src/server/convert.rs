//! Wire ↔ domain conversions.

use std::collections::BTreeMap;

use sigsweep_proto::v1 as pb;

use crate::service::{Assignment, SweepProgress, SweepRunState};
use crate::store::ResultRecord;
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

pub(super) fn result_to_proto(r: &ResultRecord) -> pb::TrialResult {
    pb::TrialResult::from(r)
}
