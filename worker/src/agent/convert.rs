//! Wire assignments to trial requests, and metrics to the wire.

use indexmap::IndexMap;

use sigsweep_proto::v1 as pb;

use std::path::PathBuf;

use crate::trial::{DatasetRequest, Params, ProgramRun, Split, TrainError, TrialRequest};

use super::config::AgentConfig;

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
            fold: (dataset.folds > 0)
                .then(|| {
                    sigsweep_data::folds::FoldBy::parse(&dataset.fold_by).map(|by| {
                        sigsweep_data::folds::Fold {
                            fold: dataset.fold,
                            folds: dataset.folds,
                            by,
                            seed: dataset.fold_seed,
                        }
                    })
                })
                .map(|f| {
                    f.ok_or_else(|| {
                        TrainError::Dataset(format!("unknown fold grouping `{}`", dataset.fold_by))
                    })
                })
                .transpose()?,
        },
        select: metrics.select,
        select_higher_is_better: metrics.select_higher_is_better,
        select_split: if metrics.select_split == "test" {
            Split::Test
        } else {
            Split::Valid
        },
        checkpoint: None,
        program: None,
    })
}

/// Where `req` keeps its checkpoints: `ARTIFACTS/checkpoints/<trial_id>`
/// when its sweep saves them (`save_checkpoints`). A worker without an
/// artifacts directory cannot: the trial fails, retryably (another worker
/// may have one).
pub fn with_checkpoint(
    req: TrialRequest,
    artifacts: Option<&std::path::Path>,
) -> Result<TrialRequest, TrainError> {
    if !req.params.bool("save_checkpoints", false)? {
        return Ok(req);
    }
    let artifacts = artifacts.ok_or_else(|| {
        TrainError::Backend(
            "the sweep saves checkpoints ([training] save) but this worker has no --artifacts directory".into(),
        )
    })?;
    if req.trial_id.is_empty()
        || !req
            .trial_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(TrainError::Backend(format!(
            "trial id `{}` is not a file name",
            req.trial_id
        )));
    }
    let dir = artifacts.join("checkpoints").join(&req.trial_id);
    Ok(TrialRequest {
        checkpoint: Some(dir),
        ..req
    })
}

/// Where a training program's trial keeps its files on this worker:
/// `(output directory, log file)`, under `ARTIFACTS/outputs/<trial>` and
/// `ARTIFACTS/logs/<trial>.log` (a temporary directory without
/// `--artifacts`).
pub fn program_paths(config: &AgentConfig, trial_id: &str) -> (PathBuf, PathBuf) {
    let root = config.artifacts.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sigsweep-{}", sanitize(&config.name)))
    });
    let id = sanitize(trial_id);
    (
        root.join("outputs").join(&id),
        root.join("logs").join(format!("{id}.log")),
    )
}

/// A file name from an id: anything but `[A-Za-z0-9_-]` becomes `_`.
fn sanitize(id: &str) -> String {
    let s: String = id
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "_".into() } else { s }
}

/// Adds what a training program's trial needs on this worker (its paths,
/// GPUs and grace period) when the worker runs programs (`--allow-command`);
/// otherwise the request stays without, and the trial fails saying so.
pub fn with_program(
    mut req: TrialRequest,
    spec: &pb::TrialSpec,
    config: &AgentConfig,
) -> TrialRequest {
    let Some(command) = &spec.command else {
        return req;
    };
    if !config.allow_command {
        return req;
    }
    let (output_dir, log) = program_paths(config, &req.trial_id);
    let gpus = if config.backend == crate::backend::BackendKind::Cuda {
        spec.gpus
    } else {
        0
    };
    req.program = Some(ProgramRun {
        spec: command.to_spec(),
        output_dir,
        log,
        visible_devices: crate::backend::visible_devices(gpus as usize),
        gpus,
        grace: config.kill_grace,
        worker: config.name.clone(),
        required: spec
            .metrics
            .as_ref()
            .map(|m| m.report.clone())
            .unwrap_or_default(),
    });
    req
}

pub(super) fn metrics(m: &std::collections::BTreeMap<String, f64>) -> pb::Metrics {
    pb::Metrics {
        values: m.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    }
}
