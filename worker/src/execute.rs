//! Chooses the strategy for a group of trials the coordinator leased
//! together, and runs it. [`plan`] is the decision, a pure function; [`run`]
//! carries it out on the calling (training) thread.
//!
//! - One trial with `devices > 1`: data-parallel over `devices` replicas
//!   (the registry refuses a model it does not mark data-parallel).
//! - Several seeds of one configuration whose model can fuse them
//!   ([`crate::models::supports_fusion`]): one fused model.
//! - Otherwise every trial on its own, one after another.
//!
//! A request that failed to convert (`Err`) fails its own trial only.

use std::sync::atomic::AtomicBool;

use crate::backend::BackendKind;
use crate::models;
use crate::strategy::{run_data_parallel, run_fused, run_trial};
use crate::trial::{EpochReport, TrainError, TrialOutcome, TrialRequest};

/// How a group of trials trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Each trial alone on one device, one after another.
    Plain,
    /// Each trial over `devices` replicas.
    DataParallel { devices: usize },
    /// All the group's seeds as one fused model.
    Fused { seeds: usize },
}

impl Plan {
    /// How a trial of this plan trained, for its record, when not alone:
    /// a reader of the results must know that a seed shared a model with
    /// other seeds (its dropout masks are not the ones it draws alone) or
    /// was split over devices.
    pub fn describe(self) -> Option<String> {
        match self {
            Self::Plain => None,
            Self::DataParallel { devices } => Some(format!(
                "data parallel over {devices} devices (gradients all-reduced every step)"
            )),
            Self::Fused { .. } => Some(
                "seed-fused: trained as one model with other seeds of its configuration \
                 (the numbers of the seed trained alone, up to rounding)"
                    .to_string(),
            ),
        }
    }
}

/// The strategy for `requests` on a worker that gives each trial `devices`
/// devices.
pub fn plan(requests: &[Result<TrialRequest, TrainError>], devices: u32) -> Plan {
    // A training program gets its GPUs through CUDA_VISIBLE_DEVICES and
    // parallelises itself.
    let program = requests
        .iter()
        .any(|r| r.as_ref().is_ok_and(|r| r.program.is_some()));
    if program {
        return Plan::Plain;
    }
    if devices > 1 {
        return Plan::DataParallel {
            devices: devices as usize,
        };
    }
    let fusable = requests.len() > 1
        && requests
            .iter()
            .all(|r| r.as_ref().is_ok_and(models::supports_fusion));
    if fusable {
        Plan::Fused {
            seeds: requests.len(),
        }
    } else {
        Plan::Plain
    }
}

/// Trains a group of trials on the calling thread with the strategy
/// [`plan`] chooses. `progress(i, report)` is called after every epoch of
/// trial `i`; the results are in request order.
pub fn run(
    requests: Vec<Result<TrialRequest, TrainError>>,
    backend: BackendKind,
    devices: u32,
    progress: &mut dyn FnMut(usize, EpochReport),
    cancel: &AtomicBool,
) -> Vec<Result<TrialOutcome, TrainError>> {
    let plan = plan(&requests, devices);
    let mut results = match plan {
        Plan::DataParallel { devices } => requests
            .into_iter()
            .enumerate()
            // The registry refuses a model without data parallelism
            // (`models::build_sharded`), naming `gpus_per_trial`.
            .map(|(i, r)| {
                r.and_then(|req| {
                    run_data_parallel(&req, backend, devices, &mut |p| progress(i, p), cancel)
                })
            })
            .collect(),
        Plan::Fused { .. } => {
            let reqs: Vec<TrialRequest> = requests.into_iter().filter_map(Result::ok).collect();
            run_fused(&reqs, backend, progress, cancel)
        }
        Plan::Plain => requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.and_then(|req| run_trial(&req, backend, &mut |p| progress(i, p), cancel))
            })
            .collect(),
    };
    if let Some(how) = plan.describe() {
        for outcome in results.iter_mut().flatten() {
            outcome.strategy = Some(how.clone());
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::{Plan, plan};
    use crate::trial::{DatasetRequest, Params, Split, TrainError, TrialRequest, Value};

    fn request(model: &str, params: &[(&str, Value)]) -> Result<TrialRequest, TrainError> {
        let mut p = Params::default();
        for (k, v) in params {
            p.insert(k, v.clone());
        }
        Ok(TrialRequest {
            trial_id: "t".into(),
            seed: 0,
            model: model.into(),
            params: p,
            dataset: DatasetRequest::default(),
            select: "acc".into(),
            select_higher_is_better: true,
            select_split: Split::Valid,
            checkpoint: None,
            program: None,
        })
    }

    #[test]
    fn several_devices_mean_data_parallel() {
        let group = vec![request("mmic", &[])];
        assert_eq!(plan(&group, 2), Plan::DataParallel { devices: 2 });
        assert_eq!(plan(&group, 1), Plan::Plain);
    }

    #[test]
    fn seeds_fuse_only_when_every_model_can() {
        let lf = || request("late-fusion", &[]);
        assert_eq!(plan(&[lf(), lf(), lf()], 1), Plan::Fused { seeds: 3 });
        assert_eq!(plan(&[lf()], 1), Plan::Plain, "one seed is not fused");
        let mmic = || request("mmic", &[]);
        assert_eq!(plan(&[mmic(), mmic()], 1), Plan::Plain);
        let clipped = || request("fdcmdie", &[("grad_clip", Value::Float(1.0))]);
        assert_eq!(plan(&[clipped(), clipped()], 1), Plan::Plain);
        let fd = || request("fdcmdie", &[]);
        assert_eq!(plan(&[fd(), fd()], 1), Plan::Fused { seeds: 2 });
        let failed = Err(TrainError::Cancelled);
        assert_eq!(
            plan(&[lf(), failed], 1),
            Plan::Plain,
            "a failed request breaks the group"
        );
        assert_eq!(
            plan(&[request("nope", &[]), request("nope", &[])], 1),
            Plan::Plain
        );
    }
}
