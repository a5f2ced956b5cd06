//! The example binary runs a sweep of its own model end to end: the sweep
//! file is checked against the model's declaration, `sigsweep run` starts
//! workers from the same binary, and they train it (real burn, CPU).

#![allow(clippy::unwrap_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_custom-sigsweep");

fn sweep(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sweep.toml"))
        .unwrap()
        .replace("seeds = 5", "seeds = 2")
        .replace("epochs = 6", "epochs = 3")
        .replace("width = 32", &format!("width = 16\n{extra}"));
    let path = dir.join("probe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_registered_model_trains_through_the_whole_stack() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = Command::new(BIN)
        .args([
            "run",
            sweep(dir.path(), "").to_str().unwrap(),
            "--workers",
            "2",
        ])
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(state.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r["status"], "completed", "{r}");
        let acc = r["metrics"]["accuracy"].as_f64().unwrap();
        assert!(acc > 0.4, "better than chance (1/3): {r}");
    }
}

#[test]
fn its_parameters_are_checked_like_a_built_in_models() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "run",
            sweep(dir.path(), "depth = 2").to_str().unwrap(),
            "--dry-run",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("probe.toml:") && err.contains("model.depth") && err.contains("layers"),
        "{err}"
    );
}
