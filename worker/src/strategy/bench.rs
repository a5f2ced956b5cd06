//! Timing hooks for `sigsweep bench train` (the CLI wiring lives in the
//! binary; these functions do the work).
//!
//! - `--mode sequential --seeds K`: [`bench_sequential`], K ordinary trials
//!   one after another (the baseline);
//! - `--mode fused --seeds K`: [`bench_fused`], the K seeds as one fused model;
//! - `--mode data-parallel --devices G`: [`bench_data_parallel`], one seed on
//!   G replicas.
//!
//! Each takes a template request (model, parameters, dataset); seeds are
//! `0..K` unless the caller passes its own. Every mode runs the
//! full trial protocol (training plus per-epoch evaluation on valid and
//! test), so the timings are what a sweep would see; `samples_per_second`
//! counts training samples only, summed over seeds.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use super::{run_data_parallel, run_fused, run_trial};
use crate::backend::BackendKind;
use crate::models::late_fusion::split_metrics;
use crate::trial::{LoadedDataset, Split, TrainError, TrialRequest, Value, load_dataset};

/// Timings of one benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// `sequential`, `fused` or `data-parallel`.
    pub mode: &'static str,
    pub backend: String,
    pub seeds: usize,
    pub devices: usize,
    pub epochs: u32,
    /// Training samples per epoch of one seed.
    pub train_samples: usize,
    /// Wall time of the whole run (dataset generation, training, evaluation).
    pub seconds: f64,
    pub seconds_per_epoch: f64,
    /// Training samples per second, summed over seeds.
    pub samples_per_second: f64,
    /// Each seed's training loss at every epoch, in seed order: what
    /// another mode's run of the same seeds is compared with.
    pub epoch_losses: Vec<Vec<f64>>,
}

/// Every epoch's training loss of `outcome`.
fn losses(outcome: &crate::TrialOutcome) -> Vec<f64> {
    outcome.epochs.iter().map(|e| e.train_loss).collect()
}

/// `template` once per seed, with `epochs` and a selection metric the task
/// produces (the selection does not matter for timing).
fn requests(
    template: &TrialRequest,
    seeds: &[u64],
    epochs: u32,
) -> Result<Vec<TrialRequest>, TrainError> {
    let mut params = template.params.clone();
    params.insert("epochs", Value::Int(i64::from(epochs)));
    let first = seeds.first().ok_or_else(|| TrainError::InvalidParam {
        key: "seeds".into(),
        message: "need at least one seed".into(),
    })?;
    let metric = match load(template, *first)? {
        LoadedDataset::Seq(data) => {
            split_metrics(data.task, &data.valid, &vec![0.0; data.valid.len()])
                .into_keys()
                .next()
                .unwrap_or_default()
        }
        LoadedDataset::Erc(_) => "accuracy".to_string(),
    };
    Ok(seeds
        .iter()
        .map(|&seed| TrialRequest {
            trial_id: format!("bench-{seed}"),
            seed,
            params: params.clone(),
            select: metric.clone(),
            select_higher_is_better: true,
            select_split: Split::Valid,
            checkpoint: None,
            program: None,
            ..template.clone()
        })
        .collect())
}

/// The dataset of `template` for `seed`.
fn load(template: &TrialRequest, seed: u64) -> Result<LoadedDataset, TrainError> {
    let valid_fraction = template.params.f64_in("valid_fraction", 0.1, 0.0, 0.95)?;
    load_dataset(&template.dataset, seed, valid_fraction)
}

fn report(
    mode: &'static str,
    backend: BackendKind,
    seeds: usize,
    devices: usize,
    epochs: u32,
    train_samples: usize,
    seconds: f64,
) -> BenchReport {
    BenchReport {
        epoch_losses: Vec::new(),
        mode,
        backend: backend.to_string(),
        seeds,
        devices,
        epochs,
        train_samples,
        seconds,
        seconds_per_epoch: seconds / f64::from(epochs.max(1)),
        samples_per_second: (seeds * train_samples) as f64 * f64::from(epochs)
            / seconds.max(f64::EPSILON),
    }
}

/// Training samples per epoch: sequences, or utterances of dialogues.
fn train_samples(req: &TrialRequest) -> Result<usize, TrainError> {
    Ok(match load(req, req.seed)? {
        LoadedDataset::Seq(d) => d.train.len(),
        LoadedDataset::Erc(d) => d.train.iter().map(|x| x.len()).sum(),
    })
}

/// K ordinary trials, one after another.
pub fn bench_sequential(
    template: &TrialRequest,
    seeds: &[u64],
    epochs: u32,
    backend: BackendKind,
) -> Result<BenchReport, TrainError> {
    let reqs = requests(template, seeds, epochs)?;
    let n = train_samples(&reqs[0])?;
    let cancel = AtomicBool::new(false);
    let start = Instant::now();
    let mut seen = Vec::new();
    for r in &reqs {
        seen.push(losses(&run_trial(r, backend, &mut |_| {}, &cancel)?));
    }
    Ok(BenchReport {
        epoch_losses: seen,
        ..report(
            "sequential",
            backend,
            reqs.len(),
            1,
            epochs,
            n,
            start.elapsed().as_secs_f64(),
        )
    })
}

/// The K seeds as one fused model on one device.
pub fn bench_fused(
    template: &TrialRequest,
    seeds: &[u64],
    epochs: u32,
    backend: BackendKind,
) -> Result<BenchReport, TrainError> {
    let reqs = requests(template, seeds, epochs)?;
    let n = train_samples(&reqs[0])?;
    let cancel = AtomicBool::new(false);
    let start = Instant::now();
    let mut seen = Vec::new();
    for r in run_fused(&reqs, backend, &mut |_, _| {}, &cancel) {
        seen.push(losses(&r?));
    }
    Ok(BenchReport {
        epoch_losses: seen,
        ..report(
            "fused",
            backend,
            reqs.len(),
            1,
            epochs,
            n,
            start.elapsed().as_secs_f64(),
        )
    })
}

/// One seed data-parallel over `devices` replicas.
pub fn bench_data_parallel(
    template: &TrialRequest,
    seed: u64,
    epochs: u32,
    devices: usize,
    backend: BackendKind,
) -> Result<BenchReport, TrainError> {
    let reqs = requests(template, &[seed], epochs)?;
    let n = train_samples(&reqs[0])?;
    let cancel = AtomicBool::new(false);
    let start = Instant::now();
    let outcome = run_data_parallel(&reqs[0], backend, devices, &mut |_| {}, &cancel)?;
    Ok(BenchReport {
        epoch_losses: vec![losses(&outcome)],
        ..report(
            "data-parallel",
            backend,
            1,
            devices,
            epochs,
            n,
            start.elapsed().as_secs_f64(),
        )
    })
}
