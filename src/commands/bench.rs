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

use crate::cli::{BenchMode, BenchSchedulerArgs, BenchTrainArgs};

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
        "fdcmdie" => vec![
            ("batch_size", Value::Int(32)),
            ("lr", Value::Float(1e-4)),
            ("layers", Value::Int(3)),
        ],
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

/// A training run's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainFigures {
    pub mode: String,
    pub model: String,
    pub dataset: String,
    pub backend: String,
    pub shapes: String,
    pub unit: String,
    /// Training samples (or utterances) per epoch of one trial.
    pub samples_per_epoch: usize,
    /// Trials trained at once (1, k packed, or K fused seeds).
    pub concurrent_trials: usize,
    /// Steady-state seconds per epoch of one trial (wall time).
    pub seconds_per_epoch: f64,
    /// Samples per second summed over the concurrent trials.
    pub samples_per_second: f64,
    /// Trials per device-hour at `trial_epochs` epochs per trial.
    pub trials_per_gpu_hour: f64,
    pub trial_epochs: u32,
    pub peak_rss_mib: f64,
    pub gpu_mean_utilization_pct: Option<f64>,
    pub gpu_peak_memory_mib: Option<f64>,
    /// For fused/dp: the baseline measured side by side in the same run.
    pub baseline_samples_per_second: Option<f64>,
    pub speedup_vs_baseline: Option<f64>,
}

/// Samples `nvidia-smi` while alive (CUDA runs only).
struct GpuSampler {
    child: std::process::Child,
}

impl GpuSampler {
    fn start(backend: BackendKind) -> Option<Self> {
        if backend != BackendKind::Cuda {
            return None;
        }
        std::process::Command::new("nvidia-smi")
            .args([
                "--query-gpu=utilization.gpu,memory.used",
                "--format=csv,noheader,nounits",
                "-lms",
                "200",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()
            .map(|child| Self { child })
    }

    /// Mean utilisation (%) and peak memory (MiB) over the samples.
    fn stop(mut self) -> (Option<f64>, Option<f64>) {
        let _ = self.child.kill();
        let Ok(out) = self.child.wait_with_output() else {
            return (None, None);
        };
        let mut util = Vec::new();
        let mut mem: f64 = 0.0;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut it = line.split(',').map(str::trim);
            if let (Some(u), Some(m)) = (it.next(), it.next())
                && let (Ok(u), Ok(m)) = (u.parse::<f64>(), m.parse::<f64>())
            {
                util.push(u);
                mem = mem.max(m);
            }
        }
        if util.is_empty() {
            return (None, None);
        }
        (
            Some(util.iter().sum::<f64>() / util.len() as f64),
            Some(mem),
        )
    }
}

fn trial_epochs(model: &str) -> u32 {
    match model {
        "mmic" | "mmdfn" => 30,
        "fdcmdie" => 50,
        _ => 12,
    }
}

fn request(args: &BenchTrainArgs) -> anyhow::Result<TrialRequest> {
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
    Ok(TrialRequest {
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
    })
}

fn describe(data: &LoadedDataset) -> (&'static str, usize, String) {
    match data {
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
    }
}

/// One trial, `train_epoch` timed alone (no evaluation).
fn single(args: &BenchTrainArgs, backend: BackendKind) -> anyhow::Result<TrainFigures> {
    let req = request(args)?;
    let data = trainer::load_dataset(&req.dataset, req.seed, 0.1)?;
    let (unit, samples, shapes) = describe(&data);
    let mut workload = sigsweep_worker::models::build(&req, data, backend)?;
    let cancel = AtomicBool::new(false);
    let sampler = GpuSampler::start(backend);
    let mut times = Vec::new();
    for epoch in 1..=args.epochs {
        let start = Instant::now();
        let loss = workload.train_epoch(epoch, &cancel)?;
        let s = start.elapsed().as_secs_f64();
        if !args.json {
            eprintln!(
                "epoch {epoch}: {s:.3} s, {:.1} {unit}/s, loss {loss:.4}",
                samples as f64 / s
            );
        }
        times.push(s);
    }
    let (util, mem) = sampler.map_or((None, None), GpuSampler::stop);
    // The first epoch includes one-off costs (allocation, kernel compilation).
    let steady: &[f64] = if times.len() > 1 { &times[1..] } else { &times };
    let spe = steady.iter().sum::<f64>() / steady.len() as f64;
    let te = args
        .trial_epochs
        .unwrap_or_else(|| trial_epochs(&args.model));
    Ok(TrainFigures {
        mode: "single".into(),
        model: args.model.clone(),
        dataset: args.dataset.clone(),
        backend: backend.to_string(),
        shapes,
        unit: unit.into(),
        samples_per_epoch: samples,
        concurrent_trials: 1,
        seconds_per_epoch: spe,
        samples_per_second: samples as f64 / spe,
        trials_per_gpu_hour: 3600.0 / (spe * f64::from(te)),
        trial_epochs: te,
        peak_rss_mib: peak_rss_bytes().map_or(f64::NAN, |b| b as f64 / 1048576.0),
        gpu_mean_utilization_pct: util,
        gpu_peak_memory_mib: mem,
        baseline_samples_per_second: None,
        speedup_vs_baseline: None,
    })
}

/// `k` single-trial benchmarks at once, each in its own process (own CUDA
/// context), sharing the device.
fn packed(args: &BenchTrainArgs, backend: BackendKind) -> anyhow::Result<TrainFigures> {
    let exe = std::env::current_exe().context("cannot find the sigsweep executable")?;
    let mut base: Vec<String> = vec![
        "bench".into(),
        "train".into(),
        "--model".into(),
        args.model.clone(),
        "--dataset".into(),
        args.dataset.clone(),
        "--epochs".into(),
        args.epochs.to_string(),
        "--backend".into(),
        args.backend.clone(),
        "--threads".into(),
        args.threads.to_string(),
        "--json".into(),
    ];
    for p in &args.params {
        base.push("--param".into());
        base.push(p.clone());
    }
    if let Some(te) = args.trial_epochs {
        base.push("--trial-epochs".into());
        base.push(te.to_string());
    }
    let sampler = GpuSampler::start(backend);
    let children: Vec<_> = (0..args.k.max(1))
        .map(|_| {
            std::process::Command::new(&exe)
                .args(&base)
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()
        .context("cannot start benchmark processes")?;
    let mut figures = Vec::new();
    for c in children {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            bail!("a packed benchmark process failed ({})", out.status);
        }
        let f: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("benchmark output")?;
        figures.push(f);
    }
    let (util, mem) = sampler.map_or((None, None), GpuSampler::stop);
    let num = |f: &serde_json::Value, k: &str| f[k].as_f64().unwrap_or(f64::NAN);
    let first = &figures[0];
    let sps: f64 = figures.iter().map(|f| num(f, "samples_per_second")).sum();
    let spe = figures
        .iter()
        .map(|f| num(f, "seconds_per_epoch"))
        .sum::<f64>()
        / figures.len() as f64;
    let te = num(first, "trial_epochs") as u32;
    Ok(TrainFigures {
        mode: format!("packed x{}", figures.len()),
        model: args.model.clone(),
        dataset: args.dataset.clone(),
        backend: backend.to_string(),
        shapes: first["shapes"].as_str().unwrap_or_default().to_string(),
        unit: first["unit"].as_str().unwrap_or_default().to_string(),
        samples_per_epoch: num(first, "samples_per_epoch") as usize,
        concurrent_trials: figures.len(),
        seconds_per_epoch: spe,
        samples_per_second: sps,
        trials_per_gpu_hour: figures.iter().map(|f| num(f, "trials_per_gpu_hour")).sum(),
        trial_epochs: te,
        peak_rss_mib: figures.iter().map(|f| num(f, "peak_rss_mib")).sum(),
        gpu_mean_utilization_pct: util,
        gpu_peak_memory_mib: mem,
        baseline_samples_per_second: None,
        speedup_vs_baseline: None,
    })
}

/// Fused seeds against the same seeds one after another (side by side in
/// one run; both timings include per-epoch evaluation).
fn fused(args: &BenchTrainArgs, backend: BackendKind, dp: bool) -> anyhow::Result<TrainFigures> {
    use sigsweep_worker::parallel::bench as pb;
    let req = request(args)?;
    let seeds: Vec<u64> = (0..args.seeds.max(1) as u64).collect();
    let te = args
        .trial_epochs
        .unwrap_or_else(|| trial_epochs(&args.model));
    let data = trainer::load_dataset(&req.dataset, req.seed, 0.1)?;
    let (unit, samples, shapes) = describe(&data);
    drop(data);
    let sampler = GpuSampler::start(backend);
    let (baseline, run, mode, concurrent) = if dp {
        let one = pb::bench_data_parallel(&req, 0, args.epochs, 1, backend)?;
        let many = pb::bench_data_parallel(&req, 0, args.epochs, args.devices, backend)?;
        (one, many, format!("data parallel x{}", args.devices), 1)
    } else {
        // Warm up both sides at their own shapes (kernel compilation and
        // autotuning on CUDA) so neither timing pays it.
        let _ = pb::bench_fused(&req, &seeds, 1, backend)?;
        let _ = pb::bench_sequential(&req, &seeds[..1], 1, backend)?;
        let seq = pb::bench_sequential(&req, &seeds, args.epochs, backend)?;
        let fus = pb::bench_fused(&req, &seeds, args.epochs, backend)?;
        (seq, fus, format!("fused x{}", seeds.len()), seeds.len())
    };
    let (util, mem) = sampler.map_or((None, None), GpuSampler::stop);
    let per_trial_epoch = run.seconds_per_epoch;
    Ok(TrainFigures {
        mode,
        model: args.model.clone(),
        dataset: args.dataset.clone(),
        backend: backend.to_string(),
        shapes,
        unit: unit.into(),
        samples_per_epoch: samples,
        concurrent_trials: concurrent,
        seconds_per_epoch: per_trial_epoch,
        samples_per_second: run.samples_per_second,
        trials_per_gpu_hour: concurrent as f64 * 3600.0 / (per_trial_epoch * f64::from(te)),
        trial_epochs: te,
        peak_rss_mib: peak_rss_bytes().map_or(f64::NAN, |b| b as f64 / 1048576.0),
        gpu_mean_utilization_pct: util,
        gpu_peak_memory_mib: mem,
        baseline_samples_per_second: Some(baseline.samples_per_second),
        speedup_vs_baseline: Some(run.samples_per_second / baseline.samples_per_second),
    })
}

pub fn train(args: BenchTrainArgs) -> anyhow::Result<ExitCode> {
    let backend: BackendKind = args.backend.parse().map_err(anyhow::Error::msg)?;
    sigsweep_worker::backend::check_available(backend).map_err(anyhow::Error::msg)?;
    sigsweep_worker::backend::set_cpu_threads(args.threads);
    let f = match args.mode {
        BenchMode::Single => single(&args, backend)?,
        BenchMode::Packed => packed(&args, backend)?,
        BenchMode::Fused => fused(&args, backend, false)?,
        BenchMode::Dp => fused(&args, backend, true)?,
    };
    if args.json {
        println!("{}", serde_json::to_string(&f)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "model {} on {} ({}, mode {}): {}",
        f.model, f.dataset, f.backend, f.mode, f.shapes
    );
    println!(
        "{:.3} s/epoch per trial, {:.1} {}/s over {} concurrent trial(s); {:.1} trials per device-hour at {} epochs/trial",
        f.seconds_per_epoch,
        f.samples_per_second,
        f.unit,
        f.concurrent_trials,
        f.trials_per_gpu_hour,
        f.trial_epochs
    );
    if let (Some(b), Some(x)) = (f.baseline_samples_per_second, f.speedup_vs_baseline) {
        println!(
            "baseline measured in the same run: {b:.1} {}/s; speed-up {x:.2}x",
            f.unit
        );
    }
    print!("peak RSS {:.0} MiB", f.peak_rss_mib);
    if let (Some(u), Some(m)) = (f.gpu_mean_utilization_pct, f.gpu_peak_memory_mib) {
        print!("; GPU utilisation {u:.0}% mean, GPU memory {m:.0} MiB peak");
    }
    println!();
    Ok(ExitCode::SUCCESS)
}

pub async fn scheduler(args: BenchSchedulerArgs) -> anyhow::Result<ExitCode> {
    super::bench_scheduler::run(args).await
}
