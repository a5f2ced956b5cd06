//! GPU checks, run on a machine with a GPU (`--features cuda`, `--ignored`;
//! `.ci/device/verify.sh tests` runs them from a binary built here): for
//! every model, seed fusion and data parallelism on CUDA give the plain
//! CUDA trial's numbers (dropout 0, within 1e-4); and the same trial run
//! twice on CUDA, dropout on, gives the same numbers bit for bit (seed
//! pairing assumes a seed means one run). Data parallelism uses
//! `SIGSWEEP_TEST_CUDA_DEVICES` GPUs (default 1: the sharding and gathering
//! paths with one replica). One file so that one test binary carries them.
#![cfg(feature = "cuda")]

mod common;

use common::{
    check_fused_and_dp, check_fused_matches_plain, check_repeatable, fdcmdie_request, mmic_request,
    request,
};
use sigsweep_worker::backend::BackendKind;
use sigsweep_worker::params::Value;

fn devices() -> usize {
    std::env::var("SIGSWEEP_TEST_CUDA_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[test]
#[ignore]
fn late_fusion_fused_and_data_parallel_match_plain() {
    let data = serde_json::json!({ "n_train": 90, "n_valid": 40, "n_test": 40, "noise": 0.5 });
    let params = [
        ("epochs", Value::Int(4)),
        ("batch_size", Value::Int(20)),
        ("modality_hidden", Value::Int(8)),
        ("hidden", Value::Int(16)),
        ("lr", Value::Float(1e-2)),
        ("weight_decay", Value::Float(1e-2)),
    ];
    let reqs: Vec<_> = (1..=3)
        .map(|s| {
            request(
                "late-fusion",
                s,
                "fusion",
                data.clone(),
                &params,
                "accuracy",
            )
        })
        .collect();
    check_fused_and_dp(&reqs, true, BackendKind::Cuda, devices());
}

#[test]
#[ignore]
fn fdcmdie_fused_and_data_parallel_match_plain() {
    let reqs: Vec<_> = (11..=13).map(|s| fdcmdie_request(s, 0.0)).collect();
    check_fused_and_dp(&reqs, true, BackendKind::Cuda, devices());
}

/// With dropout: each fused slice seeds the backend with its own trial's
/// value before its masks are drawn (`tensor::draws`), so on CUDA too the
/// fused seeds equal their trials alone.
#[test]
#[ignore]
fn fdcmdie_fused_seeds_with_dropout_match_plain() {
    let reqs: Vec<_> = (11..=13).map(|s| fdcmdie_request(s, 0.2)).collect();
    check_fused_matches_plain(&reqs, BackendKind::Cuda);
}

#[test]
#[ignore]
fn mmic_data_parallel_matches_plain() {
    check_fused_and_dp(&[mmic_request(7, 0.0)], false, BackendKind::Cuda, devices());
}

#[test]
#[ignore]
fn fdcmdie_same_trial_twice_is_identical() {
    check_repeatable(&fdcmdie_request(11, 0.1), BackendKind::Cuda);
}

#[test]
#[ignore]
fn mmic_same_trial_twice_is_identical() {
    check_repeatable(&mmic_request(7, 0.4), BackendKind::Cuda);
}
