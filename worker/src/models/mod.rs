//! The model registry: which models exist, which parameters each accepts,
//! and how to build a [`Workload`] for a trial.
//!
//! Every model is generic over the burn backend; [`build`] instantiates it
//! on the backend the worker runs.

pub mod fdcmdie;
pub mod late_fusion;
pub mod mmic;

use crate::backend::BackendKind;
use crate::trainer::{LoadedDataset, TrainError, TrialRequest, Workload};

/// Names of the models this worker can train (declared in
/// `sigsweep_types::params::MODELS`, which the coordinator checks sweep
/// files against).
pub fn names() -> Vec<&'static str> {
    sigsweep_types::params::MODELS
        .iter()
        .map(|m| m.name.as_ref())
        .collect()
}

/// Checks a trial against its model's declarations: the model exists and
/// every parameter is declared, of the declared type, inside its range.
/// Every trainer (plain, data-parallel, fused) calls it first.
pub fn check_request(req: &TrialRequest) -> Result<(), TrainError> {
    let decl = sigsweep_types::params::model(&req.model)
        .ok_or_else(|| TrainError::UnknownModel(req.model.clone()))?;
    req.params.check_declared(decl)
}

/// Builds the workload for a trial on `backend`.
pub fn build(
    req: &TrialRequest,
    data: LoadedDataset,
    backend: BackendKind,
) -> Result<Box<dyn Workload>, TrainError> {
    check_request(req)?;
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
