//! Timing hooks for `sigsweep bench train` (the CLI wiring lives in the
//! binary; these functions do the work).
//!
//! - `--mode sequential --seeds K`: [`bench_sequential`], K ordinary trials
//!   one after another (the baseline);
//! - `--mode fused --seeds K`: [`bench_fused`], the K seeds as one fused model;
//! - `--mode data-parallel --devices G`: [`bench_data_parallel`], one seed on
//!   G replicas.
//!
//! Seeds are `0..K` unless the caller passes its own. Every mode runs the
//! full trial protocol (training plus per-epoch evaluation on valid and
//! test), so the timings are what a sweep would see; `samples_per_second`
//! counts training samples only, summed over seeds.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use super::data_parallel::seq_dataset;
use super::{run_data_parallel, run_fused};
use crate::backend::BackendKind;
use crate::models::late_fusion::split_metrics;
use crate::params::{Params, Value};
use crate::trainer::{DatasetRequest, Split, TrainError, TrialRequest, run_trial};

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
}

fn requests(
    params: &Params,
    dataset: &DatasetRequest,
    seeds: &[u64],
    epochs: u32,
) -> Result<Vec<TrialRequest>, TrainError> {
    let mut params = params.clone();
    params.insert("epochs", Value::Int(i64::from(epochs)));
    let mut reqs: Vec<TrialRequest> = seeds
        .iter()
        .map(|&seed| TrialRequest {
            trial_id: format!("bench-{seed}"),
            seed,
            model: "late-fusion".into(),
            params: params.clone(),
            dataset: dataset.clone(),
            select: String::new(),
            select_higher_is_better: true,
            select_split: Split::Valid,
        })
        .collect();
    // Select on whichever metric the task produces first (timing only).
    let first = reqs.first().ok_or_else(|| TrainError::InvalidParam {
        key: "seeds".into(),
        message: "need at least one seed".into(),
    })?;
    let data = seq_dataset(first)?;
    let metric = split_metrics(data.task, &data.valid, &vec![0.0; data.valid.len()])
        .into_keys()
        .next()
        .unwrap_or_default();
    for r in &mut reqs {
        r.select = metric.clone();
    }
    Ok(reqs)
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

fn train_samples(req: &TrialRequest) -> Result<usize, TrainError> {
    Ok(seq_dataset(req)?.train.len())
}

/// K ordinary trials, one after another.
pub fn bench_sequential(
    params: &Params,
    dataset: &DatasetRequest,
    seeds: &[u64],
    epochs: u32,
    backend: BackendKind,
) -> Result<BenchReport, TrainError> {
    let reqs = requests(params, dataset, seeds, epochs)?;
    let n = train_samples(&reqs[0])?;
    let cancel = AtomicBool::new(false);
    let start = Instant::now();
    for r in &reqs {
        run_trial(r, backend, &mut |_| {}, &cancel)?;
    }
    Ok(report(
        "sequential",
        backend,
        reqs.len(),
        1,
        epochs,
        n,
        start.elapsed().as_secs_f64(),
    ))
}

/// The K seeds as one fused model on one device.
pub fn bench_fused(
    params: &Params,
    dataset: &DatasetRequest,
    seeds: &[u64],
    epochs: u32,
    backend: BackendKind,
) -> Result<BenchReport, TrainError> {
    let reqs = requests(params, dataset, seeds, epochs)?;
    let n = train_samples(&reqs[0])?;
    let cancel = AtomicBool::new(false);
    let start = Instant::now();
    for r in run_fused(&reqs, backend, &mut |_, _| {}, &cancel) {
        r?;
    }
    Ok(report(
        "fused",
        backend,
        reqs.len(),
        1,
        epochs,
        n,
        start.elapsed().as_secs_f64(),
    ))
}

/// One seed data-parallel over `devices` replicas.
pub fn bench_data_parallel(
    params: &Params,
    dataset: &DatasetRequest,
    seed: u64,
    epochs: u32,
    devices: usize,
    backend: BackendKind,
) -> Result<BenchReport, TrainError> {
    let reqs = requests(params, dataset, &[seed], epochs)?;
    let n = train_samples(&reqs[0])?;
    let cancel = AtomicBool::new(false);
    let start = Instant::now();
    run_data_parallel(&reqs[0], backend, devices, &mut |_| {}, &cancel)?;
    Ok(report(
        "data-parallel",
        backend,
        1,
        devices,
        epochs,
        n,
        start.elapsed().as_secs_f64(),
    ))
}
