//! `sigsweep bench`: training throughput and scheduler throughput.
//!
//! `bench train` times `train_epoch` alone (no evaluation) on a synthetic
//! dataset of a published dataset's shapes and prints samples/s, seconds
//! per epoch and peak memory. `bench scheduler` runs a real coordinator on
//! loopback with N simulated workers (real gRPC clients whose "training"
//! sleeps) and prints trials/s and the makespan overhead over M×T/N.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, bail};
use indexmap::IndexMap;

use sigsweep_worker::backend::BackendKind;
use sigsweep_worker::params::{Params, Value};
use sigsweep_worker::trainer::{self, DatasetRequest, LoadedDataset, Split, TrialRequest};

use crate::cli::{BenchSchedulerArgs, BenchTrainArgs};

/// (generator, generator parameters) of each benchmark dataset.
fn dataset(name: &str) -> anyhow::Result<(String, serde_json::Value)> {
    Ok(match name {
        "synthetic-fusion" => ("fusion".into(), serde_json::json!({})),
        "synthetic-iemocap" => ("erc".into(), serde_json::json!({ "preset": "iemocap" })),
        "synthetic-meld" => ("erc".into(), serde_json::json!({ "preset": "meld" })),
        "synthetic-mosi" => ("msa".into(), serde_json::json!({ "preset": "mosi" })),
        "synthetic-mosei" => ("msa".into(), serde_json::json!({ "preset": "mosei" })),
        other => bail!(
            "unknown benchmark dataset `{other}`; expected synthetic-fusion, synthetic-iemocap, synthetic-meld, synthetic-mosi or synthetic-mosei"
        ),
    })
}

/// Default training settings of each model's benchmark (the papers' batch sizes).
fn model_defaults(model: &str) -> Vec<(&'static str, Value)> {
    match model {
        "mmic" | "mmdfn" => vec![("batch_size", Value::Int(16)), ("lr", Value::Float(3e-4))],
        "fdcmdie" => vec![("batch_size", Value::Int(32)), ("lr", Value::Float(1e-4)), ("layers", Value::Int(3))],
        _ => vec![("batch_size", Value::Int(32)), ("lr", Value::Float(1e-3))],
    }
}

fn parse_param(kv: &str) -> anyhow::Result<(String, Value)> {
    let (k, v) = kv
        .split_once('=')
        .with_context(|| format!("--param `{kv}`: expected KEY=VALUE"))?;
    let value = if let Ok(i) = v.parse::<i64>() {
        Value::Int(i)
    } else if let Ok(x) = v.parse::<f64>() {
        Value::Float(x)
    } else if let Ok(b) = v.parse::<bool>() {
        Value::Bool(b)
    } else {
        Value::Text(v.to_string())
    };
    Ok((k.trim().to_string(), value))
}

/// Peak resident memory of this process (VmHWM), bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn train(args: BenchTrainArgs) -> anyhow::Result<ExitCode> {
    let backend: BackendKind = args.backend.parse().map_err(anyhow::Error::msg)?;
    sigsweep_worker::backend::check_available(backend).map_err(anyhow::Error::msg)?;
    sigsweep_worker::backend::set_cpu_threads(args.threads);
    let (generator, gen_params) = dataset(&args.dataset)?;
    let mut values: IndexMap<String, Value> = IndexMap::new();
    values.insert("epochs".into(), Value::Int(i64::from(args.epochs)));
    for (k, v) in model_defaults(&args.model) {
        values.insert(k.into(), v);
    }
    for kv in &args.params {
        let (k, v) = parse_param(kv)?;
        values.insert(k, v);
    }
    let req = TrialRequest {
        trial_id: "bench".into(),
        seed: 0,
        model: args.model.clone(),
        params: Params::new(values),
        dataset: DatasetRequest {
            kind: "synthetic".into(),
            generator,
            path: String::new(),
            params: gen_params,
        },
        select: String::new(),
        select_higher_is_better: true,
        select_split: Split::Valid,
    };
    let t0 = Instant::now();
    let data = trainer::load_dataset(&req.dataset, req.seed, 0.1)?;
    let generate_s = t0.elapsed().as_secs_f64();
    let (unit, samples, shapes) = match &data {
        LoadedDataset::Seq(d) => (
            "samples",
            d.train.len(),
            format!(
                "{} train samples; text {}x{}, audio {}x{}, vision {}x{}",
                d.train.len(),
                d.lens()[0],
                d.dims()[0],
                d.lens()[1],
                d.dims()[1],
                d.lens()[2],
                d.dims()[2]
            ),
        ),
        LoadedDataset::Erc(d) => (
            "utterances",
            d.train.iter().map(|x| x.len()).sum(),
            format!(
                "{} train dialogues, {} utterances; dims text {}, audio {}, visual {}; {} classes",
                d.train.len(),
                d.train.iter().map(|x| x.len()).sum::<usize>(),
                d.dims[0],
                d.dims[1],
                d.dims[2],
                d.n_classes
            ),
        ),
    };
    let mut workload = sigsweep_worker::models::build(&req, data, backend)?;
    let cancel = AtomicBool::new(false);
    println!("model {} on {} ({backend}, {} thread(s)): {shapes}", args.model, args.dataset, args.threads);
    println!("data generation: {generate_s:.2} s");
    let mut times = Vec::new();
    for epoch in 1..=args.epochs {
        let start = Instant::now();
        let loss = workload.train_epoch(epoch, &cancel)?;
        let s = start.elapsed().as_secs_f64();
        println!("epoch {epoch}: {s:.2} s, {:.1} {unit}/s, loss {loss:.4}", samples as f64 / s);
        times.push(s);
    }
    // The first epoch includes one-off costs (allocation, kernel set-up).
    let steady: Vec<f64> = if times.len() > 1 { times[1..].to_vec() } else { times.clone() };
    let mean = steady.iter().sum::<f64>() / steady.len() as f64;
    println!(
        "mean over epochs 2..{}: {mean:.2} s/epoch, {:.1} {unit}/s; peak RSS {:.0} MiB",
        args.epochs.max(2),
        samples as f64 / mean,
        peak_rss_bytes().map_or(f64::NAN, |b| b as f64 / 1048576.0)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn scheduler(args: BenchSchedulerArgs) -> anyhow::Result<ExitCode> {
    super::bench_scheduler::run(args).await
}
