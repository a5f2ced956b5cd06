//! Helpers of the end-to-end tests (`tests/e2e.rs`): the `sigsweep`
//! binary as coordinator, workers and `run`, the tiny sweep, results read
//! back from a state directory or a coordinator.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::proc::BIN;

/// Starts a coordinator on loopback with an embedded store in `store`
/// (plus `extra` arguments); returns it and its URL.
pub fn start_coordinator(store: &Path, extra: &[&str]) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let coordinator = Command::new(BIN)
        .args(["coordinator", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--store", &format!("embedded:{}", store.display())])
        .args(extra)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("coordinator");
    (coordinator, format!("http://127.0.0.1:{port}"))
}

/// A tiny sweep: 2 configurations × `seeds` seeds, small synthetic data.
pub fn tiny_sweep(dir: &Path, seeds: u32, epochs: u32, n_train: u32) -> PathBuf {
    super::fixture::TinySweep {
        seeds,
        epochs,
        n_train,
        ..Default::default()
    }
    .write(dir)
}

pub fn sigsweep(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sigsweep")
}

/// `sigsweep run SWEEP --state-dir STATE --workers N`, which must succeed.
pub fn run_ok(sweep: &Path, state: &Path, workers: &str) -> Output {
    let out = sigsweep(&[
        "run",
        sweep.to_str().expect("utf8"),
        "--state-dir",
        state.to_str().expect("utf8"),
        "--workers",
        workers,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Starts `sigsweep run SWEEP` with `workers` workers, a 1 s lease (so a
/// killed worker's trial is leased again quickly) and `RUST_LOG=log`; the
/// caller waits for it.
pub fn spawn_run(sweep: &Path, state: &Path, workers: &str, log: &str) -> std::process::Child {
    Command::new(BIN)
        .args([
            "run",
            sweep.to_str().expect("utf8"),
            "--state-dir",
            state.to_str().expect("utf8"),
            "--workers",
            workers,
            "--lease-ttl",
            "1s",
            "--no-progress",
        ])
        .env("RUST_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn run")
}

/// Kills worker process `victim` of the `sigsweep run` process `run` with
/// SIGKILL and waits for the run, which must still succeed.
pub fn kill_and_finish(run: std::process::Child, victim: u32) -> Output {
    let status = Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = run.wait_with_output().expect("run finishes");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn results(state: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("results.jsonl"))
        .expect("results.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

pub fn metrics_by_trial(state: &Path) -> BTreeMap<String, serde_json::Value> {
    results(state)
        .into_iter()
        .map(|r| {
            (
                r["trial_id"].as_str().expect("id").to_string(),
                r["metrics"].clone(),
            )
        })
        .collect()
}

pub fn assert_exact_results(state: &Path, expected: usize) {
    let rows = results(state);
    assert_eq!(rows.len(), expected, "one result per trial");
    let ids: HashSet<&str> = rows
        .iter()
        .map(|r| r["trial_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), expected, "no trial id repeats");
    for r in &rows {
        assert_eq!(r["status"], "completed", "{r}");
        assert!(r["config"].is_object() && r["seed"].is_u64() && r["metrics"]["accuracy"].is_f64());
        assert!(r["valid_metrics"]["accuracy"].is_f64());
    }
}

pub fn children_of(pid: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .arg("-P")
        .arg(pid.to_string())
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Runs `sweep` (2 configurations × 3 seeds) twice through the real stack,
/// unfused and with `fuse_seeds = true`, and checks that the fused run
/// trained each configuration's 3 seeds together and gave the same
/// per-trial `metrics` and selected epochs (dropout 0, within tolerance).
pub fn assert_fusion_matches_unfused(dir: &Path, sweep: &Path, metrics: &[&str]) {
    let text = std::fs::read_to_string(sweep).expect("read");
    let fused = dir.join("fused.toml");
    std::fs::write(&fused, format!("{text}\n[resources]\nfuse_seeds = true\n")).expect("write");
    let plain_state = dir.join("plain");
    let fused_state = dir.join("fused");
    for (file, state) in [(sweep, &plain_state), (fused.as_path(), &fused_state)] {
        let out = Command::new(BIN)
            .args([
                "run",
                file.to_str().expect("utf8"),
                "--state-dir",
                state.to_str().expect("utf8"),
                "--workers",
                "1",
            ])
            .env("RUST_LOG", "info")
            .output()
            .expect("run sigsweep");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let plain = results(&plain_state);
    let fused_rows = results(&fused_state);
    assert_eq!(plain.len(), 6);
    assert_eq!(fused_rows.len(), 6);
    // Trial ids are the same (fuse_seeds is a resource setting, not part of
    // what determines a result).
    for p in &plain {
        let f = fused_rows
            .iter()
            .find(|f| f["trial_id"] == p["trial_id"])
            .expect("same trial ids");
        for metric in metrics {
            let (a, b) = (
                p["metrics"][metric].as_f64().expect("metric"),
                f["metrics"][metric].as_f64().expect("metric"),
            );
            assert!((a - b).abs() < 1e-4, "{metric}: unfused {a} vs fused {b}");
        }
        assert_eq!(p["selected_epoch"], f["selected_epoch"]);
        // Each record says how its trial trained.
        let how = |row: &serde_json::Value| row["hardware"].as_str().unwrap_or("").to_string();
        assert!(
            how(p).ends_with("trained on cpu, 1 thread(s)"),
            "{}",
            how(p)
        );
        assert!(how(f).contains("; seed-fused: "), "{}", how(f));
    }
    let log =
        std::fs::read_to_string(fused_state.join("logs").join("worker-0.log")).expect("worker log");
    assert!(
        log.contains("fused=3"),
        "the worker trained the 3 seeds together:\n{log}"
    );
    let log =
        std::fs::read_to_string(plain_state.join("logs").join("worker-0.log")).expect("worker log");
    assert!(log.contains("fused=1") && !log.contains("fused=3"));
}

/// Submits `sweep` once the coordinator at `url` answers; returns its id.
pub fn submit_when_ready(sweep: &Path, url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = sigsweep(&[
            "submit",
            sweep.to_str().expect("utf8"),
            "--coordinator",
            url,
        ]);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts a coordinator on a fresh embedded store and one worker with
/// `worker_args`; returns (coordinator, worker, url).
pub fn cluster(
    dir: &Path,
    worker_args: &[&str],
) -> (std::process::Child, std::process::Child, String) {
    let (coordinator, url) = start_coordinator(dir, &[]);
    let worker = Command::new(BIN)
        .args(["worker", "--coordinator", &url])
        .args(worker_args)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("worker");
    (coordinator, worker, url)
}

/// Submits `sweep`, waits for it, returns metrics by (config, seed).
pub fn run_remote(sweep: &Path, url: &str) -> BTreeMap<(String, u64), serde_json::Value> {
    let sweep_id = submit_when_ready(sweep, url);
    let out = sigsweep(&["watch", &sweep_id, "--coordinator", url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sigsweep(&["results", &sweep_id, "--coordinator", url]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("jsonl"))
        .map(|r| {
            assert_eq!(r["status"], "completed", "{r}");
            (
                (
                    r["config_key"].as_str().expect("key").to_string(),
                    r["seed"].as_u64().expect("seed"),
                ),
                r["metrics"].clone(),
            )
        })
        .collect()
}
