//! The CUDA backend's graph on the CPU (`tensor::cpu::set_generic_ops`:
//! the CPU nodes off, so burn's operations and the recomputing attention
//! node run, as on CUDA), checked as `cuda.rs` checks CUDA: fused seeds
//! (dropout on) equal their trials alone, data parallelism equals the plain
//! trial, and the same trial twice gives the same numbers bit for bit. So
//! the attention node of the CUDA path (`tensor/recompute.rs`), its
//! dropout drawn again in the backward pass and its fused slices, are
//! tested on every CI run, not only when a GPU is lent. Its own test binary:
//! the switch is process-wide.

mod common;

use common::{check_fused_and_dp, check_fused_matches_plain, check_repeatable, fdcmdie_request};
use sigsweep_worker::backend::BackendKind;

fn generic() -> BackendKind {
    sigsweep_worker::tensor::cpu::set_generic_ops(true);
    BackendKind::Cpu
}

#[test]
fn fdcmdie_fused_and_data_parallel_match_plain() {
    let reqs: Vec<_> = (11..=12).map(|s| fdcmdie_request(s, 0.0)).collect();
    check_fused_and_dp(&reqs, true, generic(), 2);
}

#[test]
fn fdcmdie_fused_seeds_with_dropout_match_plain() {
    let reqs: Vec<_> = (11..=12).map(|s| fdcmdie_request(s, 0.2)).collect();
    check_fused_matches_plain(&reqs, generic());
}

#[test]
fn fdcmdie_same_trial_twice_is_identical() {
    check_repeatable(&fdcmdie_request(11, 0.1), generic());
}
