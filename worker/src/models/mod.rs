//! The model registry: which models exist, which parameters each accepts,
//! and how to build a [`Workload`] for a trial.
//!
//! Every model is generic over the burn backend; [`build`] instantiates it
//! on the backend the worker runs.

pub mod fdcmdie;
pub mod late_fusion;
pub mod mmic;

use crate::backend::BackendKind;
use crate::sigsweep_training_keys;
use crate::trainer::{LoadedDataset, TrainError, TrialRequest, Workload};

/// Names of the models this worker can train.
pub const NAMES: &[&str] = &["late-fusion", "fdcmdie", "mmic", "mmdfn"];

/// Parameters a model accepts besides the training settings.
pub fn model_params(model: &str) -> Option<&'static [&'static str]> {
    match model {
        "late-fusion" => Some(late_fusion::PARAMS),
        "mmic" | "mmdfn" => Some(mmic::PARAMS),
        "fdcmdie" => Some(fdcmdie::PARAMS),
        _ => None,
    }
}

/// Every parameter name a trial of `model` may carry (model + training).
pub fn accepted_params(model: &str) -> Option<Vec<&'static str>> {
    let mut all: Vec<&'static str> = model_params(model)?.to_vec();
    all.extend_from_slice(sigsweep_training_keys());
    Some(all)
}

/// Builds the workload for a trial on `backend`.
pub fn build(
    req: &TrialRequest,
    data: LoadedDataset,
    backend: BackendKind,
) -> Result<Box<dyn Workload>, TrainError> {
    let accepted =
        accepted_params(&req.model).ok_or_else(|| TrainError::UnknownModel(req.model.clone()))?;
    req.params.check_known(&req.model, &accepted)?;
    match backend {
        BackendKind::Cpu => build_on::<crate::backend::Cpu>(req, data, &Default::default()),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            let device = crate::backend::cuda_device(0).map_err(TrainError::Backend)?;
            build_on::<crate::backend::Cuda>(req, data, &device)
        }
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda => Err(TrainError::Backend(
            crate::backend::check_available(BackendKind::Cuda)
                .err()
                .unwrap_or_default(),
        )),
    }
}

fn build_on<B: burn::tensor::backend::AutodiffBackend>(
    req: &TrialRequest,
    data: LoadedDataset,
    device: &B::Device,
) -> Result<Box<dyn Workload>, TrainError> {
    match req.model.as_str() {
        "late-fusion" => match data {
            LoadedDataset::Seq(d) => Ok(Box::new(late_fusion::LateFusionWorkload::<B>::new(
                req, d, device,
            )?)),
            LoadedDataset::Erc(_) => Err(TrainError::Dataset(
                "late-fusion trains on sequence datasets (synthetic fusion/msa, mmsa), not dialogues"
                    .into(),
            )),
        },
        "fdcmdie" => match data {
            LoadedDataset::Seq(d) => Ok(Box::new(fdcmdie::FdCmdieWorkload::<B>::new(req, d, device)?)),
            LoadedDataset::Erc(_) => Err(TrainError::Dataset(
                "fdcmdie trains on sequence regression datasets (synthetic msa, mmsa), not dialogues".into(),
            )),
        },
        "mmic" | "mmdfn" => match data {
            LoadedDataset::Erc(d) => Ok(Box::new(mmic::MmicWorkload::<B>::new(req, d, device)?)),
            LoadedDataset::Seq(_) => Err(TrainError::Dataset(
                "mmic trains on dialogue datasets (synthetic erc, iemocap, meld, m3ed), not sequences".into(),
            )),
        },
        other => Err(TrainError::UnknownModel(other.to_string())),
    }
}
