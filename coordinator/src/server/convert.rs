//! Wire ↔ domain conversions.

use std::collections::BTreeMap;

use sigsweep_proto::v1 as pb;

use crate::service::{Assignment, SweepProgress, SweepRunState};
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
        waiting: p
            .waiting
            .as_ref()
            .map_or(String::new(), ToString::to_string),
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
    let dataset = spec.dataset.as_ref().map(|d| pb::DatasetSpec {
        kind: d.kind.clone(),
        generator: d.generator.clone().unwrap_or_default(),
        path: d.path.clone().unwrap_or_default(),
        params_json: serde_json::to_string(&d.params).unwrap_or_default(),
        folds: d.folds.as_ref().map_or(0, |f| f.folds),
        fold_by: d
            .folds
            .as_ref()
            .map_or(String::new(), |f| f.by.as_str().to_string()),
        fold_seed: d.folds.as_ref().map_or(0, |f| f.seed),
        fold: a.trial.fold.unwrap_or(0),
    });
    pb::TrialAssignment {
        lease_id: a.lease_id.clone(),
        attempt: a.attempt,
        trial: Some(pb::TrialSpec {
            trial_id: a.trial.trial_id.clone(),
            sweep_id: a.sweep_id.clone(),
            config_key: a.trial.config.key.clone(),
            seed: a.trial.seed,
            model: if a.trial.model.is_empty() {
                spec.model.name.clone()
            } else {
                a.trial.model.clone()
            },
            params: params_to_proto(a.trial.params.iter()),
            dataset,
            metrics: Some(pb::MetricSpec {
                select: spec.metrics.select.clone(),
                select_higher_is_better: spec.metrics.select_goal == crate::sweep::Goal::Max,
                select_split: spec.metrics.select_split.clone(),
                report: spec.metrics.report.keys().cloned().collect(),
            }),
            gpus: spec.resources.gpus_per_trial,
            command: spec.model.command.as_ref().map(pb::CommandSpec::from),
        }),
    }
}

pub(super) fn metrics_from_proto(m: Option<pb::Metrics>) -> BTreeMap<String, f64> {
    m.map(|m| m.values.into_iter().collect())
        .unwrap_or_default()
}

/// Most models, parameters per model, choices per parameter and bytes per
/// text one registration may declare.
const MAX_MODELS: usize = 64;
const MAX_PARAMS: usize = 256;
const MAX_CHOICES: usize = 256;
const MAX_TEXT: usize = 1024;

/// The model declarations of a registration, bounded (an `INVALID_ARGUMENT`
/// names the limit or what is malformed).
#[allow(clippy::result_large_err)]
pub(super) fn declarations_from_proto(
    models: &[pb::ModelDeclaration],
) -> Result<Vec<sigsweep_types::ModelDecl>, tonic::Status> {
    let invalid = |m: String| tonic::Status::invalid_argument(m);
    if models.len() > MAX_MODELS {
        return Err(invalid(format!(
            "{} model declarations, more than the limit of {MAX_MODELS}",
            models.len()
        )));
    }
    models
        .iter()
        .map(|m| {
            let too_long = std::iter::once(&m.name)
                .chain([&m.doc])
                .chain(m.params.iter().flat_map(|p| {
                    [&p.name, &p.kind, &p.default, &p.doc]
                        .into_iter()
                        .chain(p.choices.iter())
                }))
                .any(|t| t.len() > MAX_TEXT);
            if m.name.is_empty() || too_long {
                return Err(invalid(format!(
                    "model declaration `{}`: names must be non-empty and texts at most {MAX_TEXT} bytes",
                    m.name.chars().take(64).collect::<String>()
                )));
            }
            if m.params.len() > MAX_PARAMS || m.params.iter().any(|p| p.choices.len() > MAX_CHOICES)
            {
                return Err(invalid(format!(
                    "model declaration `{}`: more than {MAX_PARAMS} parameters or {MAX_CHOICES} choices",
                    m.name
                )));
            }
            m.to_decl()
                .map_err(|e| invalid(format!("model declaration `{}`: {e}", m.name)))
        })
        .collect()
}
