//! Checkpoints (`[training] save = ["checkpoints"]`): a trial interrupted
//! after an epoch and started again resumes from its checkpoint and ends
//! bitwise equal to an uninterrupted run, for every built-in model, dropout
//! on.

use std::sync::atomic::{AtomicBool, Ordering};

use indexmap::IndexMap;

use sigsweep_worker::backend::BackendKind;
use sigsweep_worker::params::{Params, Value};
use sigsweep_worker::trainer::{DatasetRequest, Split, TrialOutcome, TrialRequest, run_trial};

fn request(
    model: &str,
    dataset: serde_json::Value,
    generator: &str,
    extra: &[(&str, Value)],
) -> TrialRequest {
    let mut values = IndexMap::new();
    for (k, v) in [
        ("epochs", Value::Int(4)),
        ("batch_size", Value::Int(8)),
        ("lr", Value::Float(3e-3)),
        ("dropout", Value::Float(0.2)),
    ] {
        values.insert(k.to_string(), v);
    }
    for (k, v) in extra {
        values.insert(k.to_string(), v.clone());
    }
    TrialRequest {
        trial_id: format!("resume-{model}"),
        seed: 5,
        model: model.into(),
        params: Params::new(values),
        dataset: DatasetRequest {
            kind: "synthetic".into(),
            generator: generator.into(),
            path: String::new(),
            params: dataset,
            fold: None,
        },
        select: if generator == "msa" {
            "mae"
        } else {
            "accuracy"
        }
        .into(),
        select_higher_is_better: generator != "msa",
        select_split: Split::Valid,
        checkpoint: None,
        program: None,
    }
}

/// Runs `req` with checkpoints in `dir`, stopped after epoch `stop`, then
/// again to the end; returns the second run's outcome.
fn interrupted(req: &TrialRequest, dir: &std::path::Path, stop: u32) -> TrialOutcome {
    let req = TrialRequest {
        checkpoint: Some(dir.to_path_buf()),
        ..req.clone()
    };
    let cancel = AtomicBool::new(false);
    let first = run_trial(
        &req,
        BackendKind::Cpu,
        &mut |r| {
            if r.epoch == stop {
                cancel.store(true, Ordering::Relaxed);
            }
        },
        &cancel,
    );
    assert!(first.is_err(), "the first run stops after epoch {stop}");
    assert!(dir.join("latest").exists(), "a checkpoint was written");
    let mut epochs_seen = Vec::new();
    let out = run_trial(
        &req,
        BackendKind::Cpu,
        &mut |r| epochs_seen.push(r.epoch),
        &AtomicBool::new(false),
    )
    .expect("resumed run");
    assert_eq!(
        epochs_seen,
        (stop + 1..=4).collect::<Vec<_>>(),
        "resumed after epoch {stop}"
    );
    assert!(!dir.exists(), "a finished trial removes its checkpoints");
    out
}

fn assert_same(a: &TrialOutcome, b: &TrialOutcome, what: &str) {
    assert_eq!(a.selected_epoch, b.selected_epoch, "{what}");
    assert_eq!(
        a.test_metrics, b.test_metrics,
        "{what}: test metrics bitwise"
    );
    assert_eq!(
        a.valid_metrics, b.valid_metrics,
        "{what}: valid metrics bitwise"
    );
    let bits = |o: &TrialOutcome| {
        o.epochs
            .iter()
            .map(|e| e.train_loss.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(a), bits(b), "{what}: every epoch's loss bitwise");
    assert_eq!(a.predictions, b.predictions, "{what}: predictions");
    let bits = |o: &TrialOutcome| {
        o.weights.as_ref().map(|w| {
            w.tensors
                .iter()
                .map(|(k, t)| (k.clone(), t.data.iter().map(|x| x.to_bits()).collect()))
                .collect::<Vec<(String, Vec<u32>)>>()
        })
    };
    assert_eq!(bits(a), bits(b), "{what}: weights bitwise");
}

#[test]
fn a_resumed_trial_ends_bitwise_equal_to_an_uninterrupted_one() {
    let cases = [
        request(
            "late-fusion",
            serde_json::json!({ "n_train": 96, "n_valid": 32, "n_test": 32, "classes": 3 }),
            "fusion",
            &[("hidden", Value::Int(16))],
        ),
        request(
            "mmic",
            serde_json::json!({ "preset": "small", "n_train": 24, "n_test": 8 }),
            "erc",
            &[
                ("hidden", Value::Int(16)),
                ("graph_hidden", Value::Int(8)),
                ("layers", Value::Int(2)),
                ("zeta", Value::Float(0.05)),
                ("save_predictions", Value::Bool(true)),
                ("save_weights", Value::Bool(true)),
            ],
        ),
        request(
            "fdcmdie",
            serde_json::json!({ "preset": "small", "n_train": 48, "n_valid": 8, "n_test": 8 }),
            "msa",
            &[
                ("width", Value::Int(16)),
                ("heads", Value::Int(2)),
                ("layers", Value::Int(1)),
                ("k_cl", Value::Int(2)),
                ("grad_clip", Value::Float(1.0)),
            ],
        ),
    ];
    for req in cases {
        let plain = run_trial(&req, BackendKind::Cpu, &mut |_| {}, &AtomicBool::new(false))
            .expect("uninterrupted");
        for stop in [1, 3] {
            let dir = tempfile::tempdir().expect("tempdir");
            let ckpt = dir.path().join("checkpoints").join(&req.trial_id);
            let resumed = interrupted(&req, &ckpt, stop);
            assert_same(
                &plain,
                &resumed,
                &format!("{} stopped after epoch {stop}", req.model),
            );
        }
    }
}

/// A checkpoint that cannot be read is removed and fails the attempt
/// (retryably); the next attempt starts afresh.
#[test]
fn an_unreadable_checkpoint_is_removed() {
    let req = request(
        "late-fusion",
        serde_json::json!({ "n_train": 64, "n_valid": 16, "n_test": 16, "classes": 3 }),
        "fusion",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ckpt = dir.path().join("ckpt");
    std::fs::create_dir_all(ckpt.join("epoch-2")).expect("dir");
    std::fs::write(ckpt.join("latest"), "epoch-2").expect("latest");
    std::fs::write(ckpt.join("epoch-2").join("state.json"), "{not json").expect("state");
    let req = TrialRequest {
        checkpoint: Some(ckpt.clone()),
        ..req
    };
    let err = run_trial(&req, BackendKind::Cpu, &mut |_| {}, &AtomicBool::new(false))
        .expect_err("unreadable");
    assert!(err.to_string().contains("unreadable checkpoint"), "{err}");
    assert!(!err.is_deterministic());
    assert!(!ckpt.exists());
    run_trial(&req, BackendKind::Cpu, &mut |_| {}, &AtomicBool::new(false)).expect("afresh");
}

/// A cancelled trial keeps its checkpoint; one that then fails for good
/// (here: its selection metric is missing) leaves none behind.
#[test]
fn only_an_interrupted_trial_keeps_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ckpt = dir.path().join("ckpt");
    let req = TrialRequest {
        checkpoint: Some(ckpt.clone()),
        ..request(
            "late-fusion",
            serde_json::json!({ "n_train": 64, "n_valid": 16, "n_test": 16, "classes": 3 }),
            "fusion",
            &[],
        )
    };
    let cancel = AtomicBool::new(false);
    let stopped = run_trial(
        &req,
        BackendKind::Cpu,
        &mut |_| cancel.store(true, Ordering::Relaxed),
        &cancel,
    );
    assert!(stopped.is_err());
    assert!(
        ckpt.join("latest").exists(),
        "a cancelled trial keeps its checkpoint"
    );
    let failing = TrialRequest {
        select: "no_such_metric".into(),
        ..req
    };
    let err = run_trial(
        &failing,
        BackendKind::Cpu,
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .expect_err("missing metric");
    assert!(err.is_deterministic(), "{err}");
    assert!(
        !ckpt.exists(),
        "a trial failed for good removes its checkpoint"
    );
}
