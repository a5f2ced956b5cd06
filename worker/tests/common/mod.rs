//! Trials and checks that the CUDA tests (`cuda.rs`, on a GPU) and the
//! tests of the CUDA backend's graph on the CPU (`generic_ops.rs`) share:
//! one definition, the backend an argument.
#![allow(dead_code)]

use std::sync::atomic::AtomicBool;

use sigsweep_worker::backend::BackendKind;
use sigsweep_worker::parallel::{run_data_parallel, run_fused};
use sigsweep_worker::params::{Params, Value};
use sigsweep_worker::trainer::{DatasetRequest, Split, TrialOutcome, TrialRequest, run_trial};

pub fn request(
    model: &str,
    seed: u64,
    generator: &str,
    data: serde_json::Value,
    params: &[(&str, Value)],
    select: &str,
) -> TrialRequest {
    let mut p = Params::default();
    p.insert("dropout", Value::Float(0.0));
    for (k, v) in params {
        p.insert(k, v.clone());
    }
    TrialRequest {
        trial_id: format!("t-{seed}"),
        seed,
        model: model.into(),
        params: p,
        dataset: DatasetRequest {
            kind: "synthetic".into(),
            generator: generator.into(),
            path: String::new(),
            params: data,
            fold: None,
        },
        select: select.into(),
        select_higher_is_better: select != "mae",
        select_split: Split::Valid,
        checkpoint: None,
        program: None,
    }
}

/// Every epoch's training loss and validation metrics, the selected epoch
/// and the test metrics agree within 1e-4 (relative for the loss).
pub fn assert_same(what: &str, got: &TrialOutcome, plain: &TrialOutcome) {
    let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol;
    assert_eq!(got.selected_epoch, plain.selected_epoch, "{what}");
    assert_eq!(got.epochs.len(), plain.epochs.len(), "{what}");
    for (ga, gb) in got.epochs.iter().zip(&plain.epochs) {
        let (gl, gv, pl, pv) = (&ga.train_loss, &ga.valid, &gb.train_loss, &gb.valid);
        assert!(
            close(*gl, *pl, 1e-4 * pl.abs().max(1.0)),
            "{what}: loss {gl} vs {pl}"
        );
        for (k, v) in pv {
            assert!(close(gv[k], *v, 1e-4), "{what}: valid {k} {} vs {v}", gv[k]);
        }
    }
    for (k, v) in &plain.test_metrics {
        let g = got.test_metrics[k];
        assert!(close(g, *v, 1e-4), "{what}: test {k} {g} vs {v}");
    }
}

/// Fused seeds equal their plain trials; data parallel over `devices`
/// replicas equals the first seed's plain trial; all on `backend`.
pub fn check_fused_and_dp(
    requests: &[TrialRequest],
    fuse: bool,
    backend: BackendKind,
    devices: usize,
) {
    let cancel = AtomicBool::new(false);
    let plain: Vec<TrialOutcome> = requests
        .iter()
        .map(|r| run_trial(r, backend, &mut |_| {}, &cancel).expect("plain"))
        .collect();
    if fuse {
        let fused = run_fused(requests, backend, &mut |_, _| {}, &cancel);
        for ((req, f), p) in requests.iter().zip(fused).zip(&plain) {
            let what = format!("{} fused seed {}", req.model, req.seed);
            assert_same(&what, &f.expect("fused"), p);
        }
    }
    let dp = run_data_parallel(&requests[0], backend, devices, &mut |_| {}, &cancel)
        .expect("data parallel");
    assert_same(
        &format!("{} data parallel", requests[0].model),
        &dp,
        &plain[0],
    );
}

/// Each fused seed equals its trial alone (dropout on too: each fused slice
/// seeds the backend with its own trial's value before its masks are
/// drawn, `tensor::draws`).
pub fn check_fused_matches_plain(requests: &[TrialRequest], backend: BackendKind) {
    let cancel = AtomicBool::new(false);
    let fused = run_fused(requests, backend, &mut |_, _| {}, &cancel);
    for (req, f) in requests.iter().zip(fused) {
        let plain = run_trial(req, backend, &mut |_| {}, &cancel).expect("plain");
        let what = format!("{} fused seed {}", req.model, req.seed);
        assert_same(&what, &f.expect("fused"), &plain);
    }
}

/// A small FD-CMDIE trial of seed `seed` with `dropout`.
pub fn fdcmdie_request(seed: u64, dropout: f64) -> TrialRequest {
    let data = serde_json::json!({ "preset": "small", "n_train": 64, "n_valid": 16, "n_test": 16 });
    let params = [
        ("epochs", Value::Int(2)),
        ("layers", Value::Int(2)),
        ("batch_size", Value::Int(20)),
        ("width", Value::Int(16)),
        ("heads", Value::Int(2)),
        ("k_cl", Value::Int(5)),
        ("lr", Value::Float(2e-3)),
        ("dropout", Value::Float(dropout)),
    ];
    request("fdcmdie", seed, "msa", data, &params, "mae")
}

/// A small MMIC trial of seed `seed` with `dropout`.
pub fn mmic_request(seed: u64, dropout: f64) -> TrialRequest {
    let data = serde_json::json!({ "preset": "small", "n_train": 60, "n_test": 20 });
    let params = [
        ("epochs", Value::Int(3)),
        ("batch_size", Value::Int(8)),
        ("lr", Value::Float(1e-3)),
        ("layers", Value::Int(4)),
        ("hidden", Value::Int(64)),
        ("graph_hidden", Value::Int(32)),
        ("alpha", Value::Float(1.0)),
        ("beta", Value::Float(0.05)),
        ("zeta", Value::Float(0.05)),
        ("dropout", Value::Float(dropout)),
    ];
    request("mmic", seed, "erc", data, &params, "f1_weighted")
}

/// Every number of one outcome: per epoch the training
/// loss and the validation and test metrics, then the selected test metrics.
pub fn numbers(o: &TrialOutcome) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for e in &o.epochs {
        out.push((format!("epoch {} train_loss", e.epoch), e.train_loss));
        for (split, metrics) in [("valid", &e.valid), ("test", &e.test)] {
            for (k, v) in metrics {
                out.push((format!("epoch {} {split} {k}", e.epoch), *v));
            }
        }
    }
    for (k, v) in &o.test_metrics {
        out.push((format!("selected test {k}"), *v));
    }
    out
}

/// The same trial twice on `backend`, dropout on: identical numbers, or a
/// failure that says which differ and by how much (atomics in a reduction
/// or autotuning that picks another kernel would show here).
pub fn check_repeatable(req: &TrialRequest, backend: BackendKind) {
    let cancel = AtomicBool::new(false);
    let run = || run_trial(req, backend, &mut |_| {}, &cancel).expect("trial");
    let (a, b) = (numbers(&run()), numbers(&run()));
    assert_eq!(
        a.len(),
        b.len(),
        "{}: the two runs report different numbers",
        req.model
    );
    let differ: Vec<String> = a
        .iter()
        .zip(&b)
        .filter(|((_, x), (_, y))| x.to_bits() != y.to_bits())
        .map(|((k, x), (_, y))| format!("{k}: {x} vs {y} (|Δ| {:.3e})", (x - y).abs()))
        .collect();
    println!(
        "{}: {} of {} numbers differ between two runs of seed {}",
        req.model,
        differ.len(),
        a.len(),
        req.seed
    );
    assert!(differ.is_empty(), "{}: {}", req.model, differ.join("; "));
}
