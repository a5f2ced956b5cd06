//! Equivalence tests of data parallelism and seed fusion on the CPU backend
//! (dropout 0): data parallel over 2 "devices" (threads) equals training on
//! one device with the full batch, and fused training of several seeds
//! equals training each seed on its own.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;

use sigsweep_worker::backend::{BackendKind, Cpu};
use sigsweep_worker::models::late_fusion::{LateFusion, batch, mean_loss};
use sigsweep_worker::parallel::{
    AllReduce, DataParallel, InProcessAllReduce, bench_data_parallel, bench_fused,
    bench_sequential, materialize, run_data_parallel, run_fused, training_guard,
};
use sigsweep_worker::params::{Params, Value};
use sigsweep_worker::trainer::{DatasetRequest, Split, TrialOutcome, TrialRequest, run_trial};

type Inner = <Cpu as burn::tensor::backend::AutodiffBackend>::InnerBackend;

fn dataset() -> DatasetRequest {
    DatasetRequest {
        kind: "synthetic".into(),
        generator: "fusion".into(),
        path: String::new(),
        params: serde_json::json!({ "n_train": 90, "n_valid": 40, "n_test": 40, "noise": 0.5 }),
        fold: None,
    }
}

fn request(seed: u64, epochs: i64, batch_size: i64) -> TrialRequest {
    let mut params = Params::default();
    params.insert("epochs", Value::Int(epochs));
    params.insert("batch_size", Value::Int(batch_size));
    params.insert("modality_hidden", Value::Int(8));
    params.insert("hidden", Value::Int(16));
    params.insert("lr", Value::Float(1e-2));
    params.insert("weight_decay", Value::Float(1e-2));
    params.insert("dropout", Value::Float(0.0));
    TrialRequest {
        trial_id: format!("t-{seed}"),
        seed,
        model: "late-fusion".into(),
        params,
        dataset: dataset(),
        select: "accuracy".into(),
        select_higher_is_better: true,
        select_split: Split::Valid,
        checkpoint: None,
        program: None,
    }
}

/// Every float parameter of a module, flattened in visiting order.
fn flat_params<B: Backend, M: Module<B>>(m: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.extend(p.val().into_data().iter::<f32>());
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_metrics_close(
    what: &str,
    a: &BTreeMap<String, f64>,
    b: &BTreeMap<String, f64>,
    tol: f64,
) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: metric names"
    );
    for (k, x) in a {
        let y = b[k];
        assert!(
            (x - y).abs() < tol || (x.is_nan() && y.is_nan()),
            "{what}: {k} {x} vs {y}"
        );
    }
}

fn assert_outcomes_close(what: &str, a: &TrialOutcome, b: &TrialOutcome) {
    assert_eq!(a.selected_epoch, b.selected_epoch, "{what}: selected epoch");
    assert_metrics_close(
        &format!("{what} valid"),
        &a.valid_metrics,
        &b.valid_metrics,
        1e-4,
    );
    assert_metrics_close(
        &format!("{what} test"),
        &a.test_metrics,
        &b.test_metrics,
        1e-4,
    );
    assert_eq!(a.epochs.len(), b.epochs.len());
    for (e, (ea, eb)) in a.epochs.iter().zip(&b.epochs).enumerate() {
        let (la, va, lb, vb) = (&ea.train_loss, &ea.valid, &eb.train_loss, &eb.valid);
        assert!(
            (la - lb).abs() < 1e-4,
            "{what}: epoch {} loss {la} vs {lb}",
            e + 1
        );
        assert_metrics_close(&format!("{what} epoch {}", e + 1), va, vb, 1e-4);
    }
}

#[test]
fn in_process_all_reduce_sums_onto_every_replica() {
    let device = Default::default();
    let a = Tensor::<Inner, 2>::from_data([[1.0, 2.0], [3.0, 4.0]], &device);
    let b = Tensor::<Inner, 2>::from_data([[10.0, 20.0], [30.0, 40.0]], &device);
    let out = InProcessAllReduce.all_reduce(vec![a, b]).expect("reduce");
    assert_eq!(out.len(), 2);
    for t in out {
        assert_eq!(
            t.into_data().iter::<f32>().collect::<Vec<_>>(),
            vec![11.0, 22.0, 33.0, 44.0]
        );
    }
}

/// 5 steps on a fixed batch sequence: 2 replicas (threads) == 1 device with
/// the full batch, within 1e-5; the replicas stay bit-identical.
#[test]
fn data_parallel_two_replicas_match_full_batch_training() {
    let _guard = training_guard();
    let data = sigsweep_data::synthetic::fusion_classification(
        &serde_json::from_value(dataset().params).expect("params"),
        3,
    )
    .expect("dataset");
    let device: burn::tensor::Device<Cpu> = Default::default();
    Cpu::seed(&device, 11);
    let model = LateFusion::<Cpu>::new(data.dims(), 8, 16, 3, 0.0, &device);
    materialize::<Cpu, _>(&model);
    let initial = flat_params::<Cpu, _>(&model);
    let optim = AdamWConfig::new().with_weight_decay(1e-2);
    let lr = 1e-2;
    // Batches of odd sizes (33 = 17 + 16) so the shard weights matter.
    let batches: Vec<Vec<usize>> = (0..5)
        .map(|s| (0..33).map(|i| (s * 13 + i * 7) % 90).collect())
        .collect();
    let split = &data.train;
    let task = data.task;

    // One device, full batch.
    let mut single = model.clone().fork(&device);
    let mut single_optim = optim.init::<Cpu, LateFusion<Cpu>>();
    for idx in &batches {
        let [t, a, v] = batch::<Cpu>(split, idx, &device);
        let labels = idx.iter().map(|&i| split.labels[i]).collect();
        let loss = mean_loss(single.forward(t, a, v), labels, task, &device);
        let grads = GradientsParams::from_grads(loss.backward(), &single);
        single = single_optim.step(lr, single, grads);
    }

    // Two replicas, one shard each.
    let mut dp = DataParallel::new(
        model,
        &[device, device],
        optim.init::<Cpu, LateFusion<Cpu>>(),
        InProcessAllReduce,
    )
    .expect("replicas");
    for idx in &batches {
        let n = idx.len();
        let shards: Vec<&[usize]> = idx.chunks(n.div_ceil(2)).collect();
        let loss = dp
            .step(
                lr,
                shards,
                |m: &LateFusion<Cpu>, shard: &[usize], device| {
                    let [t, a, v] = batch::<Cpu>(split, shard, device);
                    let labels = shard.iter().map(|&i| split.labels[i]).collect();
                    mean_loss(m.forward(t, a, v), labels, task, device)
                        .mul_scalar(shard.len() as f64 / n as f64)
                },
            )
            .expect("step");
        assert!(loss.is_finite());
    }

    let p_single = flat_params::<Cpu, _>(&single);
    let p0 = flat_params::<Cpu, _>(dp.model(0).expect("replica 0"));
    let p1 = flat_params::<Cpu, _>(dp.model(1).expect("replica 1"));
    assert_eq!(max_abs_diff(&p0, &p1), 0.0, "replicas diverged");
    let diff = max_abs_diff(&p0, &p_single);
    assert!(
        diff < 1e-5,
        "data parallel vs single device: max abs diff {diff}"
    );
    assert!(
        max_abs_diff(&initial, &p_single) > 1e-3,
        "training did not move the parameters"
    );
}

/// A whole trial data-parallel over 2 threads reports what `run_trial` reports.
#[test]
fn data_parallel_trial_matches_run_trial() {
    let cancel = AtomicBool::new(false);
    let req = request(5, 3, 20);
    let plain = run_trial(&req, BackendKind::Cpu, &mut |_| {}, &cancel).expect("plain");
    let dp =
        run_data_parallel(&req, BackendKind::Cpu, 2, &mut |_| {}, &cancel).expect("data parallel");
    assert_outcomes_close("data parallel", &dp, &plain);
}

/// Fused training of 3 seeds == 3 unfused trials, without and with dropout
/// (each slice draws its own trial's masks: `tensor::draws`), and a seed's
/// numbers do not depend on the seeds fused with it.
#[test]
fn fused_seeds_match_unfused_trials() {
    let cancel = AtomicBool::new(false);
    for dropout in [0.0, 0.3] {
        // Batch 20 over 90 samples: the last batch (10) is short for every seed.
        let requests: Vec<TrialRequest> = [1u64, 2, 3]
            .iter()
            .map(|&s| {
                let mut r = request(s, 4, 20);
                r.params.insert("dropout", Value::Float(dropout));
                r
            })
            .collect();
        let mut reports = 0;
        let fused = run_fused(
            &requests,
            BackendKind::Cpu,
            &mut |_, _| reports += 1,
            &cancel,
        );
        assert_eq!(fused.len(), 3);
        assert_eq!(reports, 3 * 4);
        let mut first = None;
        for (req, fused) in requests.iter().zip(fused) {
            let fused = fused.expect("fused seed");
            let plain = run_trial(req, BackendKind::Cpu, &mut |_| {}, &cancel).expect("plain");
            let what = format!("seed {} dropout {dropout}", req.seed);
            assert_outcomes_close(&what, &fused, &plain);
            first.get_or_insert(fused);
        }
        // Seed 1 fused with seed 3 only: the numbers it had beside 2 and 3.
        let pair = [requests[0].clone(), requests[2].clone()];
        let again = run_fused(&pair, BackendKind::Cpu, &mut |_, _| {}, &cancel);
        let again = again.into_iter().next().expect("one").expect("fused seed");
        let first = first.expect("seed 1");
        let losses = |o: &TrialOutcome| o.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>();
        assert_eq!(losses(&again), losses(&first), "dropout {dropout}");
    }
}

#[test]
fn fused_rejects_seeds_of_different_configurations() {
    let cancel = AtomicBool::new(false);
    let a = request(1, 1, 20);
    let b = request(2, 1, 32);
    let out = run_fused(&[a, b], BackendKind::Cpu, &mut |_, _| {}, &cancel);
    assert_eq!(out.len(), 2);
    for r in out {
        let e = r.expect_err("must fail");
        assert!(e.to_string().contains("differ only in their seed"), "{e}");
    }
}

/// Timings (not a check): `cargo test --release -p sigsweep-worker --test
/// parallel -- --ignored --nocapture bench_modes`. `SIGSWEEP_BENCH_SEEDS`
/// (default 10) and `SIGSWEEP_BENCH_EPOCHS` (default 3) size it;
/// `SIGSWEEP_BENCH_BACKEND=cuda` runs it on the GPU (`--features cuda`).
#[test]
#[ignore]
fn bench_modes() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let seeds: Vec<u64> = (0..env("SIGSWEEP_BENCH_SEEDS", 10)).collect();
    let epochs = env("SIGSWEEP_BENCH_EPOCHS", 3) as u32;
    let backend: BackendKind = std::env::var("SIGSWEEP_BENCH_BACKEND")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(BackendKind::Cpu);
    let mut template = request(0, 1, 32);
    template.params = Params::default();
    template.params.insert("batch_size", Value::Int(32));
    template.dataset.params = serde_json::json!({});
    let t = &template;
    // Warm-up (kernel compilation on CUDA), discarded.
    bench_sequential(t, &seeds[..1], 1, backend).expect("warm-up");
    bench_fused(t, &seeds, 1, backend).expect("warm-up");
    for r in [
        bench_sequential(t, &seeds, epochs, backend),
        bench_fused(t, &seeds, epochs, backend),
        bench_data_parallel(t, 0, epochs, 1, backend),
    ]
    .into_iter()
    .chain((backend == BackendKind::Cpu).then(|| bench_data_parallel(t, 0, epochs, 2, backend)))
    {
        eprintln!(
            "{}",
            serde_json::to_string(&r.expect("bench")).expect("json")
        );
    }
}
