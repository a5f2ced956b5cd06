//! Shared fixtures for the report tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use indexmap::IndexMap;
use sigsweep_report::*;

pub fn record(lr: f64, dropout: f64, seed: u64, acc: f64, mae: f64, valid_acc: f64) -> TrialRecord {
    let mut config = IndexMap::new();
    config.insert("lr".to_string(), serde_json::json!(lr));
    config.insert("dropout".to_string(), serde_json::json!(dropout));
    let config_key = format!("lr={lr},dropout={dropout}");
    TrialRecord {
        trial_id: format!("{config_key}/s{seed}").into(),
        sweep_id: "mosi_grid-0000".into(),
        config_key,
        config,
        seed,
        status: TrialStatus::Completed,
        metrics: BTreeMap::from([("acc_2".to_string(), acc), ("mae".to_string(), mae)]),
        valid_metrics: BTreeMap::from([("acc_2".to_string(), valid_acc)]),
        selected_epoch: Some(7),
        failure: None,
        attempts: 1,
        seconds: 1.0,
        worker: "w".into(),
        predictions: None,
        weights: None,
        history: Vec::new(),
        fold: None,
        hardware: None,
        program_selected: false,
    }
}

pub fn failed(lr: f64, dropout: f64, seed: u64, reason: &str) -> TrialRecord {
    let mut r = record(lr, dropout, seed, 0.0, 0.0, 0.0);
    r.status = TrialStatus::Failed;
    r.metrics.clear();
    r.valid_metrics.clear();
    r.selected_epoch = None;
    r.failure = Some(reason.to_string());
    r.attempts = 3;
    r
}

pub fn spec() -> ReportSpec {
    ReportSpec {
        sweep_name: "mosi_grid".to_string(),
        dataset: "CMU-MOSI".to_string(),
        grid_keys: vec!["lr".to_string(), "dropout".to_string()],
        baseline_key: "lr=0.001,dropout=0.1".to_string(),
        select_metric: "acc_2".to_string(),
        select_goal: Goal::Max,
        metrics: vec![
            ("acc_2".to_string(), Goal::Max),
            ("mae".to_string(), Goal::Min),
        ],
        test: TestKind::PairedT,
        correction: Correction::Holm,
        selection_on_test: false,
        confirmatory: false,
        run: RunInfo::default(),
    }
}

/// Golden "ten seeds" vectors: baseline, clearly better, equal-ish.
pub const BASE: [f64; 10] = [
    67.79, 69.1, 68.08, 67.87, 68.39, 68.17, 67.81, 68.64, 68.4, 67.86,
];
pub const BETTER: [f64; 10] = [
    68.63, 70.01, 68.89, 68.27, 69.08, 68.61, 68.16, 69.47, 69.17, 68.66,
];
pub const SAME: [f64; 10] = [
    68.32, 69.03, 68.19, 67.49, 68.76, 68.2, 68.03, 68.91, 67.76, 68.14,
];
pub const MAE_BASE: [f64; 10] = [
    0.7187, 0.7346, 0.7143, 0.7109, 0.7123, 0.7128, 0.7057, 0.7141, 0.728, 0.7054,
];
pub const MAE_BETTER: [f64; 10] = [
    0.701, 0.7106, 0.6953, 0.6979, 0.6976, 0.7, 0.696, 0.6888, 0.7029, 0.6989,
];

/// 3 configs × 10 seeds: baseline, one clearly better, one equal to the baseline.
pub fn realistic() -> Vec<TrialRecord> {
    let mut out = Vec::new();
    for s in 0..10 {
        let i = s as usize;
        out.push(record(0.001, 0.1, s, BASE[i], MAE_BASE[i], BASE[i] - 1.0));
        out.push(record(
            0.0005,
            0.1,
            s,
            BETTER[i],
            MAE_BETTER[i],
            BETTER[i] - 1.0,
        ));
        out.push(record(
            0.001,
            0.3,
            s,
            SAME[i],
            MAE_BASE[i] + 0.0001 * ((i % 3) as f64 - 1.0),
            SAME[i] - 1.0,
        ));
    }
    out
}

/// Small fixed record set for snapshots: 3 configs × 4 seeds with a failure and a missing seed.
pub fn small() -> Vec<TrialRecord> {
    let mut out = Vec::new();
    let base = [70.1, 71.3, 69.8, 70.6];
    let better = [71.0, 72.4, 70.5, 71.9];
    let other = [69.9, 71.5, 69.1, 70.2];
    let mae_b = [0.71, 0.70, 0.72, 0.705];
    let mae_g = [0.69, 0.685, 0.70, 0.688];
    for s in 0..4u64 {
        let i = s as usize;
        out.push(record(0.001, 0.1, s, base[i], mae_b[i], base[i] - 0.5));
        out.push(record(0.0005, 0.1, s, better[i], mae_g[i], better[i] - 0.5));
        if s == 2 {
            out.push(failed(0.001, 0.3, s, "CUDA out of memory (batch 64)"));
        } else {
            out.push(record(
                0.001,
                0.3,
                s,
                other[i],
                mae_b[i] + [0.004, 0.001, 0.0, 0.006][i],
                other[i] - 0.5,
            ));
        }
    }
    out
}
