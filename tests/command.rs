//! Training programs as trials (`[model] name = "command"`), end to end:
//! the real `sigsweep` binary, real worker processes, and real programs (a
//! dependency-free Python script, `tests/programs/toy_train.py`, that speaks
//! the metrics protocol through `clients/python/sigsweep_report.py`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::local::*;
use common::proc::BIN;

fn toy() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs/toy_train.py")
        .display()
        .to_string()
}

/// A sweep of the toy program over `lr` (baseline 0.1) and `[grid] extra`.
fn toy_sweep(dir: &Path, name: &str, seeds: u32, model_extra: &str, grid_extra: &str) -> PathBuf {
    let text = format!(
        r#"name = "{name}"
seeds = {seeds}
baseline = {{ lr = 0.1 }}

[model]
name = "command"
argv = ["python3", "{toy}", "--lr", "{{lr}}", "--seed", "{{seed}}", "--epochs", "{{epochs}}"]
{model_extra}

[training]
epochs = 4
batch_size = 1
lr = 0.1

[grid]
lr = [0.1, 0.9]
{grid_extra}

[metrics]
select = "acc"
report = {{ acc = "max" }}

[resources]
max_retries = 0
"#,
        toy = toy()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Adds `--mode MODE` (a placeholder, or a fixed mode) to the toy
/// program's arguments in `sweep`.
fn set_mode(sweep: &Path, mode: &str) {
    let text = std::fs::read_to_string(sweep).unwrap().replace(
        r#""{epochs}"]"#,
        &format!(r#""{{epochs}}", "--mode", "{mode}"]"#),
    );
    std::fs::write(sweep, text).unwrap();
}

/// A one-seed toy sweep over `[grid] mode = modes` (baseline mode "ok"),
/// the mode reaching the program through its own placeholder.
fn modes_sweep(dir: &Path, name: &str, modes: &str) -> PathBuf {
    let sweep = toy_sweep(dir, name, 1, "", &format!("mode = {modes}"));
    set_mode(&sweep, "{mode}");
    let text = std::fs::read_to_string(&sweep).unwrap().replace(
        "baseline = { lr = 0.1 }",
        r#"baseline = { lr = 0.1, mode = "ok" }"#,
    );
    std::fs::write(&sweep, text).unwrap();
    sweep
}

/// `sigsweep run SWEEP` with `workers` local workers into `state`.
fn run_in(sweep: &Path, state: &Path, workers: &str) -> std::process::Output {
    sigsweep(&[
        "run",
        sweep.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--workers",
        workers,
        "--no-progress",
    ])
}

/// Every metrics line the program wrote, for each trial (its one attempt's
/// `sigsweep-metrics.<worker>.<time>.jsonl`).
fn metrics_lines(state: &Path, trial: &str) -> Vec<serde_json::Value> {
    let dir = state.join("artifacts/outputs").join(trial);
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sigsweep-metrics."))
        })
        .collect();
    assert_eq!(files.len(), 1, "one attempt: {files:?}");
    std::fs::read_to_string(&files[0])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_program_sweep_selects_epochs_by_the_rule_and_pairs_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = toy_sweep(dir.path(), "toy", 3, "width = 3", "");
    let state = dir.path().join("state");
    let out = run_ok(&sweep, &state, "2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("parameter `width` is in no placeholder"),
        "an unused parameter is a warning: {stderr}"
    );
    let rows = results(&state);
    assert_eq!(rows.len(), 6);
    for r in &rows {
        assert_eq!(r["status"], "completed", "{r}");
        let id = r["trial_id"].as_str().unwrap();
        // The selected epoch is the first with the best validation acc of
        // what the program wrote, and its test metrics are the result.
        let lines = metrics_lines(&state, id);
        assert_eq!(lines.len(), 4);
        let best = lines
            .iter()
            .fold(None::<&serde_json::Value>, |b, l| match b {
                Some(b) if b["valid"]["acc"].as_f64() >= l["valid"]["acc"].as_f64() => Some(b),
                _ => Some(l),
            })
            .unwrap();
        assert_eq!(r["selected_epoch"], best["epoch"], "{r}");
        assert_eq!(r["metrics"]["acc"], best["test"]["acc"], "exact: {r}");
        assert_eq!(r["history"].as_array().unwrap().len(), 4);
        assert!(r.get("program_selected").is_none());
        // The log holds the program's output; `sigsweep logs` prints it.
        let logs = sigsweep(&["logs", "-", id, "--state", state.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&logs.stdout);
        assert!(logs.status.success());
        assert!(
            text.contains(&format!("=== sigsweep: trial {id}")),
            "{text}"
        );
        assert!(text.contains("toy_train starting"), "{text}");
        assert!(text.contains("\"width\":3"), "SIGSWEEP_PARAMS: {text}");
        assert!(
            text.contains("CUDA_VISIBLE_DEVICES=''"),
            "a CPU worker hides the GPUs: {text}"
        );
    }
    // The report pairs the two configurations by seed.
    let report = std::fs::read_to_string(state.join("report.md")).unwrap();
    assert!(report.contains("3/3 (3–0–0)"), "{report}");
}

#[test]
fn epoch_selection_equals_a_built_in_models_on_the_same_epoch_lines() {
    let dir = tempfile::tempdir().unwrap();
    // A built-in model's trials, with their per-epoch history.
    let built_in = tiny_sweep(dir.path(), 2, 5, 120);
    let state = dir.path().join("built-in");
    run_ok(&built_in, &state, "2");
    let rows = results(&state);
    // The same epoch lines, replayed by a program, one trial per history.
    let mut files = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let f = dir.path().join(format!("history-{i}.json"));
        std::fs::write(&f, r["history"].to_string()).unwrap();
        files.push(f.display().to_string());
    }
    let list = files
        .iter()
        .map(|f| format!("\"{f}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = std::fs::read_to_string(&built_in).unwrap();
    let metrics = &text[text.find("[metrics]").unwrap()..];
    let metrics = &metrics[..metrics.find("\n[").unwrap_or(metrics.len())];
    let replay = format!(
        r#"name = "replay"
seeds = 1
baseline = {{ history = "{first}" }}
[model]
name = "command"
argv = ["python3", "{toy}", "--lr", "0", "--seed", "0", "--mode", "replay", "--replay", "{{history}}"]
[grid]
history = [{list}]
{metrics}
"#,
        first = files[0],
        toy = toy()
    );
    let path = dir.path().join("replay.toml");
    std::fs::write(&path, replay).unwrap();
    let state2 = dir.path().join("replay");
    run_ok(&path, &state2, "2");
    let replayed: BTreeMap<String, serde_json::Value> = results(&state2)
        .into_iter()
        .map(|r| (r["config"]["history"].as_str().unwrap().to_string(), r))
        .collect();
    for (i, r) in rows.iter().enumerate() {
        let p = &replayed[&files[i]];
        assert_eq!(p["status"], "completed", "{p}");
        for key in ["selected_epoch", "metrics", "valid_metrics", "history"] {
            assert_eq!(p[key], r[key], "{key} of trial {}", r["trial_id"]);
        }
    }
}

#[test]
fn every_failure_mode_fails_its_trial_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = modes_sweep(
        dir.path(),
        "failures",
        r#"["ok", "linger", "fail", "killguard", "nan", "malformed", "silent", "noselect", "notest"]"#,
    );
    let state = dir.path().join("state");
    let out = run_in(&sweep, &state, "2");
    assert!(!out.status.success(), "failed trials make the run fail");
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    for r in results(&state) {
        let mode = r["config"]["mode"].as_str().unwrap().to_string();
        // `linger` leaves a child holding the output pipes: its trial ends
        // with the program (the child is killed), it does not wait for it.
        if mode == "ok" || mode == "linger" {
            assert_eq!(r["status"], "completed", "{r}");
            continue;
        }
        assert_eq!(r["status"], "failed", "{r}");
        reasons.insert(mode, r["failure"].as_str().unwrap().to_string());
    }
    let expect = [
        ("fail", "exited with status 3"),
        ("fail", "CUDA out of memory (toy)"),
        // The program's guard killed: the trial fails, its program with it.
        ("killguard", "was killed by signal 9"),
        ("nan", "SIGSWEEP_METRICS line 2: a value is not finite"),
        ("malformed", "SIGSWEEP_METRICS line 2: not a JSON object"),
        ("silent", "without reporting an epoch"),
        ("noselect", "no `valid.acc`, the metric that selects epochs"),
        (
            "notest",
            "SIGSWEEP_METRICS line 1 (epoch 1): no `test.acc`, which the sweep's [metrics] reports",
        ),
    ];
    assert_eq!(reasons.len(), 7, "{reasons:?}");
    for (mode, needle) in expect {
        let reason = &reasons[mode];
        assert!(reason.contains(needle), "{mode}: {reason}");
    }
    // Only the last 20 lines of stderr.
    let fail = &reasons["fail"];
    assert!(fail.contains("traceback line 29") && !fail.contains("traceback line 9\n"));
}

/// A trial that takes its worker down every time (here it kills the worker
/// process; in life, the kernel's OOM killer) fails after
/// `max_lost_workers` (3) lost workers, with the reason, and the sweep
/// finishes: `sigsweep run` restarts the dead worker, which registers
/// again, and without the limit the trial would kill it forever.
#[test]
fn a_trial_that_kills_its_worker_fails_after_three_lost_workers() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = modes_sweep(dir.path(), "killer", r#"["ok", "killworker"]"#);
    let state = dir.path().join("state");
    let out = run_in(&sweep, &state, "1");
    assert!(!out.status.success(), "a failed trial makes the run fail");
    let mut failed = 0;
    for r in results(&state) {
        if r["config"]["mode"] == "ok" {
            assert_eq!(r["status"], "completed", "{r}");
            continue;
        }
        failed += 1;
        assert_eq!(r["status"], "failed", "{r}");
        let reason = r["failure"].as_str().unwrap();
        assert!(reason.contains("its worker was lost 3 times"), "{reason}");
        // Three attempts, each lost (a reservation the dying worker held
        // for it never started, so it is not one).
        assert_eq!(r["attempts"], 3, "{r}");
    }
    assert_eq!(failed, 2, "both killworker configurations (lr 0.1, 0.9)");
}

/// An attempt past `[resources] trial_timeout` is stopped (its worker's
/// next heartbeat learns the lease is gone) and fails with the reason; the
/// worker then runs the next trial. The program would run 100 s.
#[test]
fn an_attempt_past_its_trial_timeout_is_stopped_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = toy_sweep(dir.path(), "hung", 1, "", "");
    set_mode(&sweep, "slow");
    let text = std::fs::read_to_string(&sweep)
        .unwrap()
        .replace("epochs = 4", "epochs = 100")
        .replace("max_retries = 0", "max_retries = 0\ntrial_timeout = \"3s\"");
    std::fs::write(&sweep, text).unwrap();
    let state = dir.path().join("state");
    let out = run_in(&sweep, &state, "1");
    assert!(!out.status.success());
    let rows = results(&state);
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["status"], "failed", "{r}");
        let reason = r["failure"].as_str().unwrap();
        assert!(
            reason.contains("ran longer than [resources] trial_timeout = 3s"),
            "{reason}"
        );
        // Stopped, not run to its end: a few of its 100 epochs reported.
        let epochs = metrics_lines(&state, r["trial_id"].as_str().unwrap()).len();
        assert!((1..50).contains(&epochs), "{epochs} epochs");
    }
}

#[test]
fn a_final_line_is_the_result_and_the_report_says_the_program_chose_it() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = toy_sweep(dir.path(), "final", 2, "", "");
    set_mode(&sweep, "final");
    let state = dir.path().join("state");
    run_ok(&sweep, &state, "2");
    for r in results(&state) {
        assert_eq!(r["selected_epoch"], 1);
        assert_eq!(r["metrics"]["acc"], 0.456);
        assert_eq!(r["valid_metrics"]["acc"], 0.123);
        assert_eq!(r["program_selected"], true);
        assert_eq!(r["history"].as_array().unwrap().len(), 4);
    }
    let report = std::fs::read_to_string(state.join("report.md")).unwrap();
    assert!(
        report.contains("the training program selected its epoch itself"),
        "{report}"
    );
}

#[test]
fn metrics_regex_reads_printed_lines_like_the_metrics_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = toy_sweep(dir.path(), "json", 2, "", "");
    let state = dir.path().join("json");
    run_ok(&base, &state, "2");
    let regex = toy_sweep(
        dir.path(),
        "regex",
        2,
        r#"metrics_regex = 'epoch (?P<epoch>\d+) loss (?P<train_loss>\S+) val_acc (?P<valid_acc>\S+) test_acc (?P<test_acc>\S+)'"#,
        "",
    );
    set_mode(&regex, "regex");
    let state2 = dir.path().join("regex");
    run_ok(&regex, &state2, "2");
    let key = |r: &serde_json::Value| (r["config_key"].to_string(), r["seed"].as_u64().unwrap());
    let json: BTreeMap<_, _> = results(&state).into_iter().map(|r| (key(&r), r)).collect();
    let printed = results(&state2);
    assert_eq!(printed.len(), 4);
    for r in printed {
        let j = &json[&key(&r)];
        assert_eq!(r["selected_epoch"], j["selected_epoch"]);
        let (a, b) = (
            r["metrics"]["acc"].as_f64().unwrap(),
            j["metrics"]["acc"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-6, "printed with 6 decimals: {a} vs {b}");
    }
}

/// Whether process `pid` is alive (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

fn wait_for_file(path: &Path, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pids(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn wait_gone(pids: &[u32], limit: Duration) {
    let deadline = Instant::now() + limit;
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "processes {pids:?} outlived their trial"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn worker(url: &str, name: &str, artifacts: &Path, allow: bool) -> std::process::Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["worker", "--coordinator", url, "--name", name])
        .args(["--kill-grace", "1s", "--artifacts"])
        .arg(artifacts)
        .env("RUST_LOG", "warn");
    if allow {
        cmd.arg("--allow-command");
    }
    cmd.spawn().unwrap()
}

/// A one-trial sweep of the toy program in `mode`, with a pid file.
fn one_trial(dir: &Path, mode: &str) -> (PathBuf, PathBuf) {
    let pidfile = dir.join(format!("{mode}.pids"));
    let text = format!(
        r#"name = "{mode}"
seeds = 1
[model]
name = "command"
argv = ["python3", "{toy}", "--lr", "0.5", "--seed", "{{seed}}", "--mode", "{mode}", "--pidfile", "{pid}"]
[metrics]
select = "acc"
report = {{ acc = "max" }}
"#,
        toy = toy(),
        pid = pidfile.display()
    );
    let path = dir.join(format!("{mode}.toml"));
    std::fs::write(&path, text).unwrap();
    (path, pidfile)
}

#[test]
fn programs_run_only_where_allowed_and_placeholders_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (sweep, _) = one_trial(dir.path(), "ok");
    // A coordinator without --allow-command refuses the sweep at submit.
    let (mut closed, url) = start_coordinator(&dir.path().join("closed"), &[]);
    let out = common::cluster::status_until_ok(
        &["status", "--coordinator", &url],
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    let out = sigsweep(&["submit", sweep.to_str().unwrap(), "--coordinator", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--allow-command") && err.contains("ok.toml:"),
        "{err}"
    );
    closed.kill().unwrap();
    let _ = closed.wait();

    // One that allows them, with a worker that does not: the trial fails
    // and says why.
    let (mut open, url) = start_coordinator(&dir.path().join("open"), &["--allow-command"]);
    let id = submit_when_ready(&sweep, &url);
    let mut w = worker(&url, "w-closed", &dir.path().join("artifacts"), false);
    let deadline = Instant::now() + Duration::from_secs(60);
    let row = loop {
        let out = sigsweep(&["results", &id, "--coordinator", &url]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if let Some(line) = text.lines().next() {
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(Instant::now() < deadline, "no result");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(row["status"], "failed");
    assert!(
        row["failure"]
            .as_str()
            .unwrap()
            .contains("start it with --allow-command"),
        "{row}"
    );
    w.kill().unwrap();
    let _ = w.wait();
    open.kill().unwrap();
    let _ = open.wait();

    // A placeholder that names nothing: file, line and key, nothing runs.
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&sweep)
        .unwrap()
        .replace("{seed}", "{sede}");
    std::fs::write(&bad, text).unwrap();
    let out = sigsweep(&[
        "run",
        bad.to_str().unwrap(),
        "--state-dir",
        dir.path().join("bad").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.toml:5") && err.contains("model.argv") && err.contains("`{sede}`"),
        "{err}"
    );
    assert!(!dir.path().join("bad").exists(), "nothing ran");
}

#[test]
fn cancelling_kills_a_program_that_ignores_sigterm_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let (sweep, pidfile) = one_trial(dir.path(), "stubborn");
    let (mut coordinator, url) = start_coordinator(&dir.path().join("store"), &["--allow-command"]);
    let id = submit_when_ready(&sweep, &url);
    let artifacts = dir.path().join("artifacts");
    let mut w = worker(&url, "w1", &artifacts, true);
    let running = pids(&wait_for_file(&pidfile, Duration::from_secs(60)));
    assert_eq!(running.len(), 2);
    assert!(running.iter().all(|p| alive(*p)));
    let out = sigsweep(&["cancel", &id, "--coordinator", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SIGTERM is ignored; SIGKILL follows after the 1 s grace period.
    wait_gone(&running, Duration::from_secs(20));
    assert!(alive(w.id()), "the worker lives on");
    w.kill().unwrap();
    let _ = w.wait();
    coordinator.kill().unwrap();
    let _ = coordinator.wait();
}

#[test]
fn a_killed_worker_leaves_no_orphans_and_its_trial_runs_again_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let (sweep, pidfile) = one_trial(dir.path(), "slow");
    let (mut coordinator, url) = start_coordinator(
        &dir.path().join("store"),
        &["--allow-command", "--lease-ttl", "2s"],
    );
    let id = submit_when_ready(&sweep, &url);
    let artifacts = dir.path().join("artifacts");
    let mut first = worker(&url, "first", &artifacts, true);
    let running = pids(&wait_for_file(&pidfile, Duration::from_secs(60)));
    std::fs::remove_file(&pidfile).unwrap();
    // kill -9: the worker cannot stop anything itself.
    first.kill().unwrap();
    let _ = first.wait();
    wait_gone(&running, Duration::from_secs(20));
    let mut second = worker(&url, "second", &artifacts, true);
    let deadline = Instant::now() + Duration::from_secs(120);
    let rows = loop {
        let out = sigsweep(&["results", &id, "--coordinator", &url]);
        let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if !rows.is_empty() {
            break rows;
        }
        assert!(Instant::now() < deadline, "the trial never finished");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(rows.len(), 1, "exactly one result");
    assert_eq!(rows[0]["status"], "completed", "{}", rows[0]);
    assert_eq!(rows[0]["worker"], "second");
    // The coordinator keeps the end of the log: `sigsweep logs` shows it.
    let trial = rows[0]["trial_id"].as_str().unwrap();
    let out = sigsweep(&["logs", &id, trial, "--coordinator", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("toy_train starting"),
        "{text}"
    );
    second.kill().unwrap();
    let _ = second.wait();
    coordinator.kill().unwrap();
    let _ = coordinator.wait();
}

#[test]
fn a_programs_predictions_file_reaches_the_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = toy_sweep(dir.path(), "preds", 2, "", "");
    set_mode(&sweep, "predictions");
    let state = dir.path().join("state");
    run_ok(&sweep, &state, "2");
    for r in results(&state) {
        let rel = r["predictions"].as_str().unwrap();
        let text = std::fs::read_to_string(state.join("artifacts").join(rel)).unwrap();
        assert_eq!(text.lines().count(), 10, "{rel}");
    }
}

/// `examples/pytorch-erc` through `configs/command-pytorch.toml` (2 seeds,
/// 3 epochs), then its DDP path under `launcher = "torchrun"` with 2 CPU
/// processes (gloo). Needs a Python with torch: `TORCH_PYTHON`, else
/// `python3`; `make test-pytorch` provides one. Without torch it says so and
/// passes (torch is several GB: not part of `make test`'s set-up).
#[test]
fn the_pytorch_example_sweeps_and_trains_with_torchrun() {
    let python = std::env::var("TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_torch = Command::new(&python)
        .args(["-c", "import torch, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_torch {
        // Straight to stderr: the test harness captures `eprintln!` of a
        // passing test, and this line is meant to be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: torch not installed (set TORCH_PYTHON, or run `make test-pytorch`)"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("erc.pkl");
    let out = Command::new(&python)
        .arg(root.join("tests/python/iemocap_file.py"))
        .arg(&data)
        .args(["--train", "20", "--test", "6"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The program's `python3` and `torchrun` are the torch Python's.
    let bin = std::fs::canonicalize(
        Path::new(&python)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("/usr/bin")),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let config = std::fs::read_to_string(root.join("configs/command-pytorch.toml"))
        .unwrap()
        .replace("seeds = 10", "seeds = 2")
        .replace("epochs = 15", "epochs = 3")
        .replace("data/iemocap-synthetic.pkl", data.to_str().unwrap());
    let run = |name: &str, text: String| {
        let sweep = dir.path().join(format!("{name}.toml"));
        std::fs::write(&sweep, text).unwrap();
        let state = dir.path().join(name);
        let out = Command::new(BIN)
            .current_dir(root)
            .args([
                "run",
                sweep.to_str().unwrap(),
                "--workers",
                "2",
                "--no-progress",
            ])
            .arg("--state-dir")
            .arg(&state)
            .env("PATH", &path)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        state
    };
    let state = run("pytorch-erc", config.clone());
    let rows = results(&state);
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["history"].as_array().unwrap().len(), 3);
        assert!(r["predictions"].is_string(), "{r}");
    }
    let ddp = config.replace("seeds = 2", "seeds = 1").replace(
        "hidden = 64",
        "hidden = 64\nlauncher = \"torchrun\"\nprocesses = 2",
    );
    let state = run("pytorch-erc-ddp", ddp);
    for r in results(&state) {
        assert_eq!(r["status"], "completed", "{r}");
        let id = r["trial_id"].as_str().unwrap();
        let log = std::fs::read_to_string(state.join(format!("artifacts/logs/{id}.log"))).unwrap();
        assert!(
            log.contains("torchrun --standalone --nnodes 1 --nproc_per_node 2"),
            "{log}"
        );
    }
}

/// `examples/wrap-existing/wrap_mmdfn.py` around a stand-in for MM-DFN's
/// `run_train_erc.py` that prints its epoch lines in that script's format
/// (0-based epochs, percentages): the wrapper's reports give the trial.
#[test]
fn the_mmdfn_wrapper_turns_printed_epochs_into_reports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "examples/wrap-existing/wrap_mmdfn.py",
        "clients/python/sigsweep_report.py",
    ] {
        let p = root.join(f);
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.path().join("run_train_erc.py"),
        r#"import argparse
ap = argparse.ArgumentParser(); ap.add_argument("--lr", type=float); ap.add_argument("--seed", type=int)
a = ap.parse_args()
print(a)
for e, (v, t) in enumerate([(50.0, 49.5), (61.25, 60.0), (58.0, 62.5)]):
    print("epoch: {}, train_loss: {}, train_acc: 70.0, train_fscore: 69.0, valid_loss: 1.2, valid_acc: 55.0, valid_fscore: {}, test_loss: 1.3, test_acc: {}, test_fscore: {}, time: 1.0 sec".format(e, round(1.5 / (e + 1), 4), v + a.seed, t, t - 1))
    print([0.1, 0.2])
"#,
    )
    .unwrap();
    let sweep = dir.path().join("wrap.toml");
    std::fs::write(
        &sweep,
        format!(
            r#"name = "wrap"
seeds = 2
[model]
name = "command"
argv = ["python3", "wrap_mmdfn.py", "--lr", "0.001", "--seed", "{{seed}}"]
workdir = "{}"
[metrics]
select = "f1_weighted"
report = {{ f1_weighted = "max", accuracy = "max" }}
"#,
            dir.path().display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    run_ok(&sweep, &state, "2");
    for r in results(&state) {
        assert_eq!(r["status"], "completed", "{r}");
        // Epoch 2 (MM-DFN's epoch 1) has the best validation F1.
        assert_eq!(r["selected_epoch"], 2, "{r}");
        assert_eq!(r["metrics"]["accuracy"], 0.6, "{r}");
        assert_eq!(r["metrics"]["f1_weighted"], 0.59, "{r}");
    }
}
