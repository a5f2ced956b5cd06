//! `sigsweep bench train`: training throughput of one model on a synthetic
//! dataset of a published dataset's shapes — samples/s, seconds per epoch,
//! trials per device-hour and peak memory, in four modes ([`Mode`]). The
//! fused and data-parallel modes measure their baseline side by side in the
//! same run.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, bail};
use indexmap::IndexMap;

use crate::backend::BackendKind;
use crate::models;
use crate::strategy::bench as pb;
use crate::tensor::products::{self, Counts};
use crate::trial::{
    DatasetRequest, LoadedDataset, Params, Split, TrialRequest, Value, load_dataset,
};

mod gpu;

use gpu::GpuSampler;

/// What `bench train` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One trial, `train_epoch` timed alone (no evaluation).
    Single,
    /// `k` single-trial benchmarks at once, one process each.
    Packed,
    /// `seeds` seeds as one fused model against the same seeds one after
    /// another.
    Fused,
    /// One trial data-parallel over `devices` devices against one device.
    Dp,
}

/// A training benchmark's settings (the CLI's `bench train` flags).
#[derive(Debug, Clone)]
pub struct TrainBench {
    pub model: String,
    /// synthetic-fusion, synthetic-iemocap, synthetic-meld, synthetic-mosi
    /// or synthetic-mosei.
    pub dataset: String,
    pub epochs: u32,
    pub backend: String,
    /// Extra model parameters, `key=value`.
    pub params: Vec<String>,
    pub threads: usize,
    pub mode: Mode,
    pub k: usize,
    pub seeds: usize,
    pub devices: usize,
    /// Epochs of a full trial (default: the paper's budget for the model).
    pub trial_epochs: Option<u32>,
    /// Quiet per-epoch lines (the caller prints JSON).
    pub json: bool,
    /// Count the CPU products' operations and time ([`ProductFigures`];
    /// single mode, CPU backend).
    pub count_products: bool,
    /// Turn the CPU nodes off: the CPU backend runs what the CUDA backend
    /// runs ([`crate::tensor::cpu::set_generic_ops`]).
    pub generic_ops: bool,
    /// burn's composite attention instead of the recomputing node
    /// ([`crate::tensor::recompute::set_composite`]).
    pub composite_attention: bool,
    /// How to start this benchmark again in a child process (`packed`
    /// mode): the program and the arguments before `bench train`'s flags.
    pub exe: Vec<String>,
}

/// (generator, generator parameters) of each benchmark dataset.
pub fn dataset(name: &str) -> anyhow::Result<(String, serde_json::Value)> {
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

/// A `--param KEY=VALUE` flag: an integer, a number, a boolean or text.
pub fn parse_param(kv: &str) -> anyhow::Result<(String, Value)> {
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

/// The backend with how this build computes on it (on CUDA: kernel
/// choices fixed at build time, kernel fusion on or off), so that a
/// figure says which build measured it.
fn backend_label(backend: BackendKind) -> String {
    match backend.numerics() {
        Some(n) => format!("{backend} ({n})"),
        None => backend.to_string(),
    }
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
    /// Every epoch's training pass, seconds (single mode).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub epoch_seconds: Vec<f64>,
    /// Every epoch's training loss, as the workload returned it (single
    /// mode; JSON keeps every bit).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub epoch_losses: Vec<f64>,
    /// Packed mode: every process trains the same trial (same seed), so
    /// this is the largest spread (max − min over the processes) of an
    /// epoch's loss: 0 when the processes agree bit for bit, the check that
    /// a seed means the same run in another process (on CUDA: #16's
    /// determinism question). `None` when a process reported no losses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_spread_across_processes: Option<f64>,
    /// Fused and data-parallel modes: the largest |Δ| between a seed's
    /// training loss at an epoch and the same seed's in the baseline run
    /// of the same benchmark (0 when they agree bit for bit). Batched
    /// products round differently (~1e-7 relative); a fused seed draws
    /// its unfused trial's dropout masks (`tensor::draws`), so anything of
    /// the order of the training noise means it did not. Data-parallel
    /// replicas draw their own masks: compare them at dropout 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_difference_vs_baseline: Option<f64>,
    /// The CPU products of a steady epoch (`--count-products`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub products: Option<ProductFigures>,
}

/// The matrix products of the CPU nodes in a steady epoch (mean over the
/// epochs after the first; [`crate::tensor::products`]): what an epoch
/// does at the machine's product throughput, and what it spends besides.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProductFigures {
    /// Floating-point operations per epoch, 10⁹ (a multiply-add is two).
    pub gflop_per_epoch: f64,
    /// Seconds per epoch inside the products.
    pub seconds_per_epoch: f64,
    /// Their throughput, 10⁹ operations per second.
    pub gflop_per_second: f64,
    /// Their share of the epoch's wall time.
    pub share_of_epoch: f64,
    /// The attention node's products alone, 10⁹ operations per epoch.
    pub attention_gflop_per_epoch: f64,
    /// The attention node's products alone, seconds per epoch.
    pub attention_seconds_per_epoch: f64,
}

impl ProductFigures {
    /// Figures of the per-epoch `counts` over epochs of `epoch_seconds`,
    /// the first epoch left out as in `seconds_per_epoch` (`None` when
    /// nothing was counted: not counting, or no product).
    fn steady(counts: &[Counts], epoch_seconds: &[f64]) -> Option<Self> {
        if counts.is_empty() || counts.len() != epoch_seconds.len() {
            return None;
        }
        let skip = usize::from(counts.len() > 1);
        let (counts, seconds) = (&counts[skip..], &epoch_seconds[skip..]);
        let epochs = counts.len() as f64;
        let sum = |f: &dyn Fn(&Counts) -> f64| counts.iter().map(f).sum::<f64>() / epochs;
        let flop = sum(&|c| c.total().flop as f64);
        if flop == 0.0 {
            return None;
        }
        let time = sum(&|c| c.total().seconds());
        let wall = seconds.iter().sum::<f64>() / epochs;
        Some(Self {
            gflop_per_epoch: flop * 1e-9,
            seconds_per_epoch: time,
            gflop_per_second: flop * 1e-9 / time,
            share_of_epoch: time / wall,
            attention_gflop_per_epoch: sum(&|c| c.attention.flop as f64) * 1e-9,
            attention_seconds_per_epoch: sum(&|c| c.attention.seconds()),
        })
    }
}

/// The benchmark's data: a generator (`synthetic-…`), or a file in a
/// published format (`iemocap:PATH`, `meld:PATH`, `m3ed:PATH`, `mmsa:PATH`:
/// the same file another framework's reference reads; every training
/// dialogue of a dialogue file is trained on).
fn dataset_request(name: &str) -> anyhow::Result<DatasetRequest> {
    if let Some((kind, path)) = name.split_once(':')
        && ["iemocap", "meld", "m3ed", "mmsa"].contains(&kind)
    {
        let params = if kind == "mmsa" {
            serde_json::json!({})
        } else {
            serde_json::json!({ "valid_rate": 0.0 })
        };
        return Ok(DatasetRequest {
            kind: kind.into(),
            generator: String::new(),
            path: path.into(),
            params,
            fold: None,
        });
    }
    let (generator, params) = dataset(name)?;
    Ok(DatasetRequest {
        kind: "synthetic".into(),
        generator,
        path: String::new(),
        params,
        fold: None,
    })
}

fn request(args: &TrainBench) -> anyhow::Result<TrialRequest> {
    let dataset = dataset_request(&args.dataset)?;
    let mut values: IndexMap<String, Value> = IndexMap::new();
    values.insert("epochs".into(), Value::Int(i64::from(args.epochs)));
    for (k, v) in models::lookup(&args.model)?.bench_params() {
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
        dataset,
        select: String::new(),
        select_higher_is_better: true,
        select_split: Split::Valid,
        checkpoint: None,
        program: None,
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
fn single(args: &TrainBench, backend: BackendKind) -> anyhow::Result<TrainFigures> {
    let req = request(args)?;
    let data = load_dataset(&req.dataset, req.seed, 0.1)?;
    models::check_splits(&req, &data)?;
    let (unit, samples, shapes) = describe(&data);
    let mut workload = models::build(&req, data, backend)?;
    let cancel = AtomicBool::new(false);
    let sampler = GpuSampler::start(backend);
    let mut times = Vec::new();
    let mut losses = Vec::new();
    let mut counts = Vec::new();
    // Stops this thread's counting however the loop ends.
    struct Counting;
    impl Drop for Counting {
        fn drop(&mut self) {
            products::stop();
        }
    }
    let _counting = args.count_products.then(|| {
        products::start();
        Counting
    });
    for epoch in 1..=args.epochs {
        let start = Instant::now();
        let before = products::current();
        let loss = workload.train_epoch(epoch, &cancel)?;
        let s = start.elapsed().as_secs_f64();
        losses.push(loss);
        if let (Some(before), Some(after)) = (before, products::current()) {
            counts.push(after.since(&before));
        }
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
        .unwrap_or(models::lookup(&args.model)?.paper_epochs);
    Ok(TrainFigures {
        mode: "single".into(),
        model: args.model.clone(),
        dataset: args.dataset.clone(),
        backend: backend_label(backend),
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
        products: ProductFigures::steady(&counts, &times),
        epoch_seconds: times,
        epoch_losses: losses,
        loss_spread_across_processes: None,
        loss_difference_vs_baseline: None,
    })
}

/// `k` single-trial benchmarks at once, each in its own process (own CUDA
/// context), sharing the device.
fn packed(args: &TrainBench, backend: BackendKind) -> anyhow::Result<TrainFigures> {
    let Some((exe, prefix)) = args.exe.split_first() else {
        bail!("packed mode needs the command that starts a benchmark process");
    };
    let mut base: Vec<String> = prefix.to_vec();
    base.extend([
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
    ]);
    for p in &args.params {
        base.push("--param".into());
        base.push(p.clone());
    }
    if args.generic_ops {
        base.push("--generic-ops".into());
    }
    if args.composite_attention {
        base.push("--composite-attention".into());
    }
    if let Some(te) = args.trial_epochs {
        base.push("--trial-epochs".into());
        base.push(te.to_string());
    }
    let sampler = GpuSampler::start(backend);
    let children: Vec<_> = (0..args.k.max(1))
        .map(|_| {
            std::process::Command::new(exe)
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
        backend: backend_label(backend),
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
        epoch_seconds: Vec::new(),
        epoch_losses: Vec::new(),
        loss_spread_across_processes: loss_spread(&figures),
        loss_difference_vs_baseline: None,
        products: None,
    })
}

/// Fused seeds against the same seeds one after another (side by side in
/// one run; both timings include per-epoch evaluation).
fn fused(args: &TrainBench, backend: BackendKind, dp: bool) -> anyhow::Result<TrainFigures> {
    let req = request(args)?;
    let seeds: Vec<u64> = (0..args.seeds.max(1) as u64).collect();
    let te = args
        .trial_epochs
        .unwrap_or(models::lookup(&args.model)?.paper_epochs);
    let data = load_dataset(&req.dataset, req.seed, 0.1)?;
    models::check_splits(&req, &data)?;
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
        backend: backend_label(backend),
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
        epoch_seconds: Vec::new(),
        epoch_losses: Vec::new(),
        loss_spread_across_processes: None,
        loss_difference_vs_baseline: largest_difference(&baseline.epoch_losses, &run.epoch_losses),
        products: None,
    })
}

/// Runs the benchmark `args` describes.
pub fn train(args: &TrainBench) -> anyhow::Result<TrainFigures> {
    let backend: BackendKind = args.backend.parse().map_err(anyhow::Error::msg)?;
    crate::backend::check_available(backend).map_err(anyhow::Error::msg)?;
    crate::backend::set_cpu_threads(args.threads);
    if args.count_products && (args.mode != Mode::Single || backend != BackendKind::Cpu) {
        bail!(
            "--count-products counts the CPU backend's products in single mode (got mode {:?}, backend {backend})",
            args.mode
        );
    }
    if args.generic_ops {
        if backend != BackendKind::Cpu {
            bail!(
                "--generic-ops turns the CPU backend's nodes off; the {backend} backend has none"
            );
        }
        crate::tensor::cpu::set_generic_ops(true);
    }
    crate::tensor::recompute::set_composite(args.composite_attention);
    let mut figures = match args.mode {
        Mode::Single => single(args, backend),
        Mode::Packed => packed(args, backend),
        Mode::Fused => fused(args, backend, false),
        Mode::Dp => fused(args, backend, true),
    }?;
    if args.generic_ops {
        figures.backend = format!("{} with generic ops", figures.backend);
    }
    if args.composite_attention {
        figures.backend = format!("{}, composite attention", figures.backend);
    }
    Ok(figures)
}

/// The largest spread over processes of an epoch's loss (see
/// [`TrainFigures::loss_spread_across_processes`]); NaN when a loss is not
/// a number, `None` when a process reported none or the processes
/// reported different numbers of epochs.
fn loss_spread(figures: &[serde_json::Value]) -> Option<f64> {
    let losses: Vec<Vec<f64>> = figures
        .iter()
        .map(|f| {
            f["epoch_losses"]
                .as_array()
                .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect())
        })
        .collect::<Option<_>>()?;
    if losses.first()?.is_empty() {
        return None;
    }
    // max − min over the processes is the largest difference of a pair.
    let mut spread = 0f64;
    for (i, a) in losses.iter().enumerate() {
        for b in &losses[i + 1..] {
            let d = largest_difference(std::slice::from_ref(a), std::slice::from_ref(b))?;
            if d.is_nan() {
                return Some(f64::NAN);
            }
            spread = spread.max(d);
        }
    }
    Some(spread)
}

/// The largest |a − b| over matching seeds and epochs (NaN if a loss is
/// not a number; `None` when the runs' shapes differ or are empty).
fn largest_difference(a: &[Vec<f64>], b: &[Vec<f64>]) -> Option<f64> {
    if a.is_empty() || a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.len() != y.len()) {
        return None;
    }
    let pairs = a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y));
    let mut largest = 0f64;
    for (x, y) in pairs {
        let d = (x - y).abs();
        if d.is_nan() {
            return Some(f64::NAN);
        }
        largest = largest.max(d);
    }
    Some(largest)
}

impl TrainFigures {
    /// The figures as the text `bench train` prints.
    pub fn summary(&self) -> String {
        let f = self;
        let mut out = format!(
            "model {} on {} ({}, mode {}): {}\n{:.3} s/epoch per trial, {:.1} {}/s over {} concurrent trial(s); {:.1} trials per device-hour at {} epochs/trial\n",
            f.model,
            f.dataset,
            f.backend,
            f.mode,
            f.shapes,
            f.seconds_per_epoch,
            f.samples_per_second,
            f.unit,
            f.concurrent_trials,
            f.trials_per_gpu_hour,
            f.trial_epochs
        );
        if let (Some(b), Some(x)) = (f.baseline_samples_per_second, f.speedup_vs_baseline) {
            out.push_str(&format!(
                "baseline measured in the same run: {b:.1} {}/s; speed-up {x:.2}x\n",
                f.unit
            ));
        }
        if let Some(spread) = f.loss_spread_across_processes {
            out.push_str(&if spread == 0.0 {
                "the same trial in every process: identical epoch losses, bit for bit\n".into()
            } else {
                format!(
                    "the same trial in every process: epoch losses differ by up to {spread:e}\n"
                )
            });
        }
        if let Some(d) = f.loss_difference_vs_baseline {
            out.push_str(&if d == 0.0 {
                "training losses, seed by seed, equal the baseline's bit for bit\n".into()
            } else {
                format!(
                    "training losses, seed by seed, differ from the baseline's by up to {d:e}\n"
                )
            });
        }
        if let Some(p) = &f.products {
            out.push_str(&format!(
                "products: {:.1} GFLOP/epoch in {:.3} s ({:.1} GFLOP/s, {:.0}% of the epoch)",
                p.gflop_per_epoch,
                p.seconds_per_epoch,
                p.gflop_per_second,
                100.0 * p.share_of_epoch
            ));
            if p.attention_gflop_per_epoch > 0.0 {
                out.push_str(&format!(
                    "; attention {:.1} GFLOP in {:.3} s",
                    p.attention_gflop_per_epoch, p.attention_seconds_per_epoch
                ));
            }
            out.push('\n');
        }
        out.push_str(&format!("peak RSS {:.0} MiB", f.peak_rss_mib));
        if let (Some(u), Some(m)) = (f.gpu_mean_utilization_pct, f.gpu_peak_memory_mib) {
            out.push_str(&format!(
                "; GPU utilisation {u:.0}% mean, GPU memory {m:.0} MiB peak"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::products::Count;

    #[test]
    fn largest_difference_pairs_seeds_and_epochs() {
        let a = vec![vec![1.0, 0.5], vec![2.0, 1.0]];
        assert_eq!(largest_difference(&a, &a), Some(0.0));
        let b = vec![vec![1.0, 0.75], vec![1.5, 1.0]];
        assert_eq!(largest_difference(&a, &b), Some(0.5));
        assert!(
            largest_difference(&a, &[vec![1.0, f64::NAN], vec![2.0, 1.0]]).is_some_and(f64::is_nan)
        );
        assert_eq!(largest_difference(&a, &a[..1]), None);
        assert_eq!(largest_difference(&[], &[]), None);
    }

    #[test]
    fn loss_spread_is_zero_only_for_identical_losses() {
        let run = |losses: serde_json::Value| serde_json::json!({ "epoch_losses": losses });
        let same = [
            run(serde_json::json!([1.5, 0.25])),
            run(serde_json::json!([1.5, 0.25])),
        ];
        assert_eq!(loss_spread(&same), Some(0.0));
        let apart = [
            run(serde_json::json!([1.5, 0.25])),
            run(serde_json::json!([1.5, 0.75])),
            run(serde_json::json!([1.0, 0.5])),
        ];
        assert_eq!(loss_spread(&apart), Some(0.5));
        // One ulp apart is not the same run.
        let ulp = f64::from_bits(0.25f64.to_bits() + 1);
        let near = [
            run(serde_json::json!([0.25])),
            run(serde_json::json!([ulp])),
        ];
        assert!(loss_spread(&near).is_some_and(|d| d > 0.0));
        // A NaN (serialised as null) makes the spread NaN, never 0.
        let nan = [
            run(serde_json::json!([null])),
            run(serde_json::json!([null])),
        ];
        assert!(loss_spread(&nan).is_some_and(f64::is_nan));
        // Nothing to compare: no losses, or different epoch counts.
        assert_eq!(
            loss_spread(&[serde_json::json!({}), run(serde_json::json!([1.0]))]),
            None
        );
        assert_eq!(
            loss_spread(&[
                run(serde_json::json!([1.0])),
                run(serde_json::json!([1.0, 2.0]))
            ]),
            None
        );
    }

    fn epoch(attention: (u64, u64), other: (u64, u64)) -> Counts {
        let count = |(flop, nanos)| Count { flop, nanos };
        Counts {
            attention: count(attention),
            other: count(other),
        }
    }

    /// The product figures average the epochs after the first, as
    /// `seconds_per_epoch` does, and are absent when nothing was counted.
    #[test]
    fn product_figures_are_steady_epoch_means() {
        let counts = [
            epoch((1, 1), (1_000_000_000_000, 9_000_000_000)),
            epoch((2_000_000_000, 500_000_000), (8_000_000_000, 1_500_000_000)),
            epoch((4_000_000_000, 500_000_000), (6_000_000_000, 500_000_000)),
        ];
        let p = ProductFigures::steady(&counts, &[30.0, 4.0, 6.0]).expect("products");
        assert_eq!(p.gflop_per_epoch, 10.0);
        assert_eq!(p.seconds_per_epoch, 1.5);
        assert!((p.gflop_per_second - 10.0 / 1.5).abs() < 1e-12);
        assert_eq!(p.share_of_epoch, 0.3);
        assert_eq!(p.attention_gflop_per_epoch, 3.0);
        assert_eq!(p.attention_seconds_per_epoch, 0.5);
        let one = ProductFigures::steady(&counts[..1], &[30.0]).expect("products");
        assert!((one.gflop_per_epoch - 1000.000000001).abs() < 1e-9);
        assert!(ProductFigures::steady(&[Counts::default(); 2], &[1.0, 1.0]).is_none());
        // Not counting: no counts, no figures.
        assert!(ProductFigures::steady(&[], &[1.0, 1.0]).is_none());
    }
}
