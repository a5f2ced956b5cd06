//! End-to-end tests: the real `sigsweep` binary, a coordinator on loopback,
//! real worker processes, real burn training on the CPU.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::local::*;
use common::proc::BIN;

#[test]
fn run_writes_results_and_report_and_resumes_without_training() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = tiny_sweep(dir.path(), 3, 3, 128);
    let state = dir.path().join("state");
    let out = run_ok(&sweep, &state, "2");
    assert_exact_results(&state, 6);
    let report = std::fs::read_to_string(state.join("report.md")).expect("report.md");
    assert!(
        report.contains("modality_hidden") && report.contains("baseline"),
        "{report}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("accuracy"));

    // Same command, same state dir: nothing is trained again.
    let before = metrics_by_trial(&state);
    let start = Instant::now();
    let out = run_ok(&sweep, &state, "2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("6 already done"));
    assert!(
        !state.join("logs").join("worker-0.log").exists()
            || start.elapsed() < Duration::from_secs(10)
    );
    assert_eq!(metrics_by_trial(&state), before);
}

#[test]
fn per_trial_metrics_do_not_depend_on_the_number_of_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = tiny_sweep(dir.path(), 3, 3, 128);
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    for (state, workers) in [(&one, "1"), (&two, "2")] {
        run_ok(&sweep, state, workers);
    }
    let a = metrics_by_trial(&one);
    assert_eq!(a.len(), 6);
    assert_eq!(a, metrics_by_trial(&two), "identical metrics per trial id");
}

#[test]
fn killing_a_worker_mid_sweep_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Slower trials (~2 s each) so the kill lands mid-trial: with
    // reservations a worker goes straight from one trial to the next.
    let sweep = tiny_sweep(dir.path(), 4, 60, 3000);
    let state = dir.path().join("state");
    let run = spawn_run(&sweep, &state, "2", "warn");
    // Wait until both workers are up, then kill one with SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        let kids = children_of(run.id());
        if kids.len() >= 2 {
            std::thread::sleep(Duration::from_millis(1500));
            break kids[0];
        }
        assert!(Instant::now() < deadline, "workers never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    kill_and_finish(run, victim);
    assert_exact_results(&state, 8);
}

/// `sigsweep run` serves its coordinator on loopback, which every user of
/// the machine reaches, and its workers run training programs: only the
/// holders of the token it makes for the run (its own workers) are served,
/// and the token's file is its user's alone and gone when the run ends.
#[test]
fn a_local_run_serves_only_its_own_workers() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = tiny_sweep(dir.path(), 4, 60, 3000);
    let state = dir.path().join("state");
    // What a run killed outright left behind goes.
    std::fs::create_dir_all(&state).expect("state");
    std::fs::write(state.join(".token-stale"), "old").expect("stale token");
    let mut run = spawn_run(&sweep, &state, "1", "warn");
    let stderr = run.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the run names its workers' coordinator");
        if let Some(rest) = line.split(" worker processes on ").nth(1) {
            break rest.split_whitespace().next().expect("url").to_string();
        }
    };
    let tokens: Vec<std::path::PathBuf> = std::fs::read_dir(&state)
        .expect("state")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".token-"))
        })
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let mode = std::fs::metadata(&tokens[0])
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "only its owner reads the token: {mode:o}");
    // Another client on the machine can neither read nor submit.
    let sweep_s = sweep.to_str().expect("utf8");
    for args in [
        &["status", "--coordinator", url.as_str()][..],
        &["submit", sweep_s, "--coordinator", url.as_str()][..],
    ] {
        let out = sigsweep(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("bearer token"),
            "{args:?}: {err}"
        );
    }
    let out = run.wait_with_output().expect("run finishes");
    assert!(out.status.success(), "{out:?}");
    assert_exact_results(&state, 8);
    assert!(
        !tokens[0].exists(),
        "the token file is removed with the run"
    );
}

#[test]
fn a_malformed_sweep_file_names_line_and_key_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = tiny_sweep(dir.path(), 2, 1, 32);
    let text = std::fs::read_to_string(&sweep).expect("read");
    let bad = dir.path().join("bad.toml");

    std::fs::write(
        &bad,
        text.replace("lr = 0.005", "lr = 0.005\nlearning_rate = 1"),
    )
    .expect("write");
    let state = dir.path().join("state");
    let out = sigsweep(&[
        "run",
        bad.to_str().expect("utf8"),
        "--state-dir",
        state.to_str().expect("utf8"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:18:") && err.contains("training.learning_rate"),
        "{err}"
    );
    assert!(!state.exists(), "nothing started");

    std::fs::write(&bad, text.replace("epochs = 1", "epochs = \"one\"")).expect("write");
    let out = sigsweep(&[
        "run",
        bad.to_str().expect("utf8"),
        "--state-dir",
        state.to_str().expect("utf8"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:15:") && err.contains("training.epochs"),
        "{err}"
    );

    std::fs::write(&bad, text.replace("hidden = 16", "hiddne = 16")).expect("write");
    let out = sigsweep(&[
        "run",
        bad.to_str().expect("utf8"),
        "--state-dir",
        state.to_str().expect("utf8"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:7:") && err.contains("model.hiddne"),
        "{err}"
    );
}

/// A coordinator process, two worker processes and the remote CLI, all over
/// loopback gRPC.
#[test]
fn coordinator_and_two_worker_processes_run_a_submitted_sweep() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = tiny_sweep(dir.path(), 2, 2, 64);
    let (mut coordinator, url) =
        start_coordinator(&dir.path().join("coord"), &["--lease-ttl", "2s"]);
    let workers: Vec<_> = (0..2)
        .map(|i| {
            Command::new(BIN)
                .args(["worker", "--coordinator", &url, "--name", &format!("w{i}")])
                .env("RUST_LOG", "warn")
                .env("MATMUL_NUM_THREADS", "1")
                .spawn()
                .expect("worker")
        })
        .collect();
    let sweep_id = submit_when_ready(&sweep, &url);
    assert!(sweep_id.starts_with("tiny-"), "{sweep_id}");
    let out = sigsweep(&["watch", &sweep_id, "--coordinator", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sigsweep(&["status", &sweep_id, "--coordinator", &url]);
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        status.contains("finished") && status.contains("4/4"),
        "{status}"
    );
    let out = sigsweep(&["results", &sweep_id, "--coordinator", &url]);
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl"))
        .collect();
    assert_eq!(rows.len(), 4);
    let workers_used: HashSet<&str> = rows
        .iter()
        .map(|r| r["worker"].as_str().expect("worker"))
        .collect();
    assert!(!workers_used.is_empty());
    let out = sigsweep(&["report", &sweep_id, "--coordinator", &url, "--format", "md"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("| modality_hidden"));
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let _ = coordinator.kill();
    let _ = coordinator.wait();
}

/// A submitted sweep whose trials need a GPU, with only a CPU worker
/// connected: `status` says why nothing starts instead of showing it
/// queued in silence.
#[test]
fn status_says_why_a_sweep_no_worker_can_take_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = tiny_sweep(dir.path(), 1, 1, 32);
    let sweep = dir.path().join("gpu.toml");
    let text = std::fs::read_to_string(&plain).expect("read");
    std::fs::write(&sweep, format!("{text}\n[resources]\ngpus_per_trial = 1\n")).expect("write");
    let (mut coordinator, mut worker, url) = cluster(&dir.path().join("coord"), &[]);
    let sweep_id = submit_when_ready(&sweep, &url);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let out = sigsweep(&["status", &sweep_id, "--coordinator", &url]);
        let status = String::from_utf8_lossy(&out.stdout).to_string();
        if status.contains("no connected worker") || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.contains("0 running, 2 queued")
            && status
                .contains("waiting: no connected worker can take its trials: each needs 1 GPU(s)")
            && status.contains("backends: cpu"),
        "{status}"
    );
    // `watch` says it too (on stderr, the bar hidden without a terminal).
    let watch = Command::new(BIN)
        .args(["watch", &sweep_id, "--coordinator", &url])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("watch");
    std::thread::sleep(Duration::from_secs(2));
    // The watch never ends by itself here.
    let _ = Command::new("kill").arg(watch.id().to_string()).status();
    let out = watch.wait_with_output().expect("watch output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("waiting: no connected worker can take its trials"),
        "{err}"
    );
    let _ = worker.kill();
    let _ = worker.wait();
    let _ = coordinator.kill();
    let _ = coordinator.wait();
}

/// With `fuse_seeds = true` the seeds of a configuration land on one worker
/// together and train as one fused model; per-trial metrics equal unfused
/// training, within floating-point tolerance.
#[test]
fn fused_seeds_give_the_same_per_trial_metrics_as_unfused_training() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = tiny_sweep(dir.path(), 3, 3, 128);
    assert_fusion_matches_unfused(dir.path(), &sweep, &["accuracy", "f1_weighted"]);
}

/// With dropout too: every fused seed draws its own trial's masks.
#[test]
fn fused_seeds_with_dropout_give_the_same_per_trial_metrics_as_unfused_training() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = tiny_sweep(dir.path(), 3, 3, 128);
    let text = std::fs::read_to_string(&sweep)
        .expect("read")
        .replace("hidden = 16\n", "hidden = 16\ndropout = 0.3\n");
    assert!(text.contains("dropout = 0.3"), "{text}");
    std::fs::write(&sweep, &text).expect("write");
    assert_fusion_matches_unfused(dir.path(), &sweep, &["accuracy", "f1_weighted"]);
}

/// The same for FD-CMDIE (contrastive learning, two interaction layers,
/// dropout).
#[test]
fn fused_fdcmdie_seeds_give_the_same_per_trial_metrics_as_unfused_training() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = dir.path().join("fdcmdie.toml");
    std::fs::write(
        &sweep,
        r#"name = "tiny-fdcmdie"
seeds = 3
baseline = { layers = 1 }

[model]
name = "fdcmdie"
width = 16
heads = 2
k_cl = 3
cl_samples = 1
dropout = 0.1

[dataset]
kind = "synthetic"
generator = "msa"
params = { preset = "small", n_train = 48, n_valid = 16, n_test = 16 }

[training]
epochs = 2
batch_size = 16
lr = 0.002

[grid]
layers = [1, 2]

[metrics]
select = "mae"
report = { mae = "min", corr = "max" }
"#,
    )
    .expect("write sweep");
    assert_fusion_matches_unfused(dir.path(), &sweep, &["mae", "corr"]);
}

#[test]
fn a_worker_with_two_slots_trains_in_two_slot_processes_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = tiny_sweep(dir.path(), 8, 3, 256);
    let (mut coordinator, url) = start_coordinator(&dir.path().join("coord"), &[]);
    let mut worker = Command::new(BIN)
        .args([
            "worker",
            "--coordinator",
            &url,
            "--name",
            "host",
            "--slots",
            "2",
        ])
        .env("RUST_LOG", "warn")
        // Overridden for the slots by their own configuration files.
        .env("SIGSWEEP_SLOTS", "7")
        .spawn()
        .expect("worker");
    let sweep_id = submit_when_ready(&sweep, &url);
    assert_eq!(children_of(worker.id()).len(), 2, "one process per slot");
    let out = sigsweep(&["watch", &sweep_id, "--coordinator", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sigsweep(&["results", &sweep_id, "--coordinator", &url]);
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl"))
        .collect();
    assert_eq!(rows.len(), 16);
    let ids: HashSet<&str> = rows
        .iter()
        .map(|r| r["trial_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 16, "no trial twice");
    let slots: HashSet<&str> = rows
        .iter()
        .map(|r| r["worker"].as_str().expect("worker"))
        .collect();
    assert_eq!(
        slots,
        HashSet::from(["host-s0", "host-s1"]),
        "both slots trained"
    );

    // SIGTERM: every slot drains, the supervisor exits cleanly.
    let slot_pids = children_of(worker.id());
    let status = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = worker.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "supervisor did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit}");
    for pid in slot_pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "slot {pid} still running"
        );
    }
    let _ = coordinator.kill();
    let _ = coordinator.wait();
}

#[test]
fn a_data_parallel_trial_over_two_cpu_devices_gives_the_single_device_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let single = tiny_sweep(dir.path(), 2, 3, 256);
    let text = std::fs::read_to_string(&single)
        .expect("read")
        .replace("hidden = 16\n", "hidden = 16\ndropout = 0.0\n");
    std::fs::write(&single, &text).expect("write");
    let dp = dir.path().join("dp.toml");
    std::fs::write(&dp, format!("{text}\n[resources]\ngpus_per_trial = 2\n")).expect("write");

    // A CPU worker given two "GPUs" trains a gpus_per_trial = 2 trial as
    // two replicas on two threads; a plain CPU worker trains it on one.
    let (mut c1, mut w1, url1) = cluster(&dir.path().join("one"), &[]);
    let (mut c2, mut w2, url2) = cluster(&dir.path().join("two"), &["--gpus", "0,1"]);
    let a = run_remote(&single, &url1);
    let b = run_remote(&dp, &url2);
    assert_eq!(a.len(), 4);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, ma) in &a {
        let mb = &b[key];
        for (name, va) in ma.as_object().expect("metrics") {
            let (va, vb) = (va.as_f64().expect("f64"), mb[name].as_f64().expect("f64"));
            assert!(
                (va - vb).abs() < 1e-6,
                "{key:?} {name}: single {va} vs data-parallel {vb}"
            );
        }
    }
    for p in [&mut w1, &mut w2, &mut c1, &mut c2] {
        let _ = p.kill();
        let _ = p.wait();
    }
}

#[test]
fn run_exits_non_zero_when_a_trial_failed_writes_the_report_and_retries_failed_trials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = tiny_sweep(dir.path(), 2, 1, 64);
    // lr = 1e30 makes the loss non-finite in the first epoch: a failure
    // that repeats with the same seed, so it is not retried.
    let text = std::fs::read_to_string(&sweep).expect("read");
    let text = text
        .replace(
            "baseline = { modality_hidden = 8 }",
            "baseline = { lr = 0.005 }",
        )
        .replace("modality_hidden = [2, 8]", "lr = [0.005, 1e30]");
    std::fs::write(&sweep, text).expect("write");
    let state = dir.path().join("state");
    let args = [
        "run",
        sweep.to_str().expect("utf8"),
        "--state-dir",
        state.to_str().expect("utf8"),
        "--workers",
        "2",
        "--no-progress",
    ];
    let out = sigsweep(&args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("2 trial(s) failed"), "{err}");
    assert!(
        state.join("report.md").exists(),
        "the report is written first"
    );
    let rows = results(&state);
    assert_eq!(rows.len(), 4);
    let failed: Vec<_> = rows.iter().filter(|r| r["status"] == "failed").collect();
    assert_eq!(failed.len(), 2, "{rows:?}");
    for r in &failed {
        assert_eq!(
            r["attempts"], 1,
            "a deterministic failure is not retried: {r}"
        );
        let reason = r["failure"].as_str().unwrap_or_default().to_lowercase();
        assert!(reason.contains("finite") || reason.contains("nan"), "{r}");
    }
    // Rerunning resumes (nothing to do) and still says the sweep failed.
    let out = sigsweep(&args);
    assert_eq!(out.status.code(), Some(1));
    // --retry-failed runs exactly the failed trials again.
    let mut retry = args.to_vec();
    retry.push("--retry-failed");
    let out = sigsweep(&retry);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("2 failed trial(s) queued again"), "{err}");
    assert!(err.contains("4 trials (2 already done)"), "{err}");
    assert_eq!(out.status.code(), Some(1), "they fail again: {err}");
    assert_eq!(results(&state).len(), 4, "one result per trial");
}

/// A trial whose history is larger than a stored result holds (8 000
/// epochs of six metrics per split, about 4 MB as JSON) completes: its
/// worker fits the history (the selection metric at every epoch, then one
/// epoch in k, with the first, the selected and the last). Before, the
/// completion was refused as larger than a worker message, the trial ran
/// again three times and failed as "worker lost".
#[test]
fn a_history_larger_than_a_result_holds_is_fitted_and_the_trial_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = common::fixture::TinySweep {
        seeds: 1,
        epochs: 8000,
        n_train: 8,
        ..Default::default()
    }
    .write(dir.path());
    let state = dir.path().join("state");
    run_ok(&sweep, &state, "2");
    let rows = results(&state);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
        let history = r["history"].as_array().expect("a history");
        let bytes = serde_json::to_vec(&r["history"]).expect("json").len();
        assert!(bytes <= 512 * 1024, "{bytes} bytes");
        assert!(
            (1000..8000).contains(&history.len()),
            "{} epochs",
            history.len()
        );
        let epoch = |e: &serde_json::Value| e["epoch"].as_u64().expect("epoch");
        let selected = r["selected_epoch"].as_u64().expect("selected");
        assert_eq!(history.first().map(epoch), Some(1));
        assert_eq!(history.last().map(epoch), Some(8000));
        for e in history {
            let metrics = e["valid"].as_object().expect("valid");
            if epoch(e) == selected {
                assert_eq!(
                    &e["valid"], &r["valid_metrics"],
                    "the selected epoch is whole"
                );
            } else {
                assert_eq!(metrics.keys().collect::<Vec<_>>(), ["accuracy"]);
            }
        }
    }
}

/// One sweep trains two models paired by seed (`model` as a grid key):
/// MMIC's own parameters reach only the MMIC trials (a `mmdfn` worker would
/// refuse them), every configuration gets every seed, and the report
/// compares MMIC with the MM-DFN baseline. Each trial saves its test
/// predictions and weights (`save = ["predictions", "weights"]`): one line
/// per test utterance in the artifacts directory, named by the result, and
/// the stored accuracy is the one the predictions give; `sigsweep predict`
/// on the weights file writes exactly the same predictions file.
#[test]
fn a_sweep_compares_two_models_paired_by_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = dir.path().join("models.toml");
    std::fs::write(
        &sweep,
        r#"name = "models"
seeds = 2
baseline = { model = "mmdfn" }

[model]
hidden = 16
graph_hidden = 8
layers = 2
alpha = 1.0
beta = 0.0
zeta = 0.0

[dataset]
kind = "synthetic"
generator = "erc"
params = { preset = "small", n_train = 16, n_test = 8 }

[training]
epochs = 2
batch_size = 8
lr = 0.001
save = ["predictions", "weights"]

[grid]
model = ["mmic", "mmdfn"]

[metrics]
select = "f1_weighted"
report = { f1_weighted = "max", accuracy = "max" }
"#,
    )
    .expect("write sweep");
    let state = dir.path().join("state");
    run_ok(&sweep, &state, "2");
    assert_exact_results(&state, 4);
    let rows = results(&state);
    for model in ["mmic", "mmdfn"] {
        let seeds: HashSet<u64> = rows
            .iter()
            .filter(|r| r["config_key"] == format!("model={model}"))
            .map(|r| r["seed"].as_u64().expect("seed"))
            .collect();
        assert_eq!(seeds, HashSet::from([0, 1]), "{model}");
    }
    let report = std::fs::read_to_string(state.join("report.md")).expect("report.md");
    assert!(
        report.contains("baseline (model=mmdfn)") && report.contains("| mmic | 2 |"),
        "{report}"
    );
    for r in &rows {
        let id = r["trial_id"].as_str().expect("id");
        let relative = r["predictions"].as_str().expect("predictions named");
        assert_eq!(relative, format!("predictions/{id}.jsonl"));
        let text = std::fs::read_to_string(state.join("artifacts").join(relative))
            .expect("predictions file");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert!(!lines.is_empty());
        let ids: HashSet<&str> = lines
            .iter()
            .map(|l| l["id"].as_str().expect("id"))
            .collect();
        assert_eq!(ids.len(), lines.len(), "example ids are unique");
        let correct = lines.iter().filter(|l| l["gold"] == l["pred"]).count();
        let accuracy = correct as f64 / lines.len() as f64;
        let stored = r["metrics"]["accuracy"].as_f64().expect("accuracy");
        assert!((accuracy - stored).abs() < 1e-9, "{accuracy} vs {stored}");
        for l in &lines {
            let logp: Vec<f64> = l["log_probs"]
                .as_array()
                .expect("log_probs")
                .iter()
                .map(|v| v.as_f64().expect("number"))
                .collect();
            let total: f64 = logp.iter().map(|v| v.exp()).sum();
            assert!((total - 1.0).abs() < 1e-4, "probabilities sum to {total}");
        }
        // Every epoch's loss and metrics are stored; the selected one's are
        // the result's.
        let history = r["history"].as_array().expect("history");
        assert_eq!(history.len(), 2, "one entry per epoch");
        let selected = r["selected_epoch"].as_u64().expect("selected");
        let at = &history[selected as usize - 1];
        assert_eq!(at["epoch"].as_u64(), Some(selected));
        assert_eq!(at["valid"], r["valid_metrics"]);
        assert_eq!(at["test"], r["metrics"]);
        assert!(at["train_loss"].as_f64().is_some_and(f64::is_finite));
        let weights = r["weights"].as_str().expect("weights named");
        assert_eq!(weights, format!("weights/{id}.safetensors"));
        let again = dir.path().join(format!("predicted-{id}.jsonl"));
        let out = Command::new(BIN)
            .arg("predict")
            .arg(state.join("artifacts").join(weights))
            .arg("--out")
            .arg(&again)
            .output()
            .expect("sigsweep predict");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let predicted = std::fs::read_to_string(&again).expect("predicted");
        assert_eq!(
            predicted, text,
            "sigsweep predict reproduces {id}'s predictions"
        );
    }
}

/// `[training] save = ["checkpoints"]`: a worker killed (SIGKILL) in the
/// middle of a trial leaves its last epoch's checkpoint; the trial is
/// leased again, resumes from it, and every stored metric is bitwise the
/// one of an uninterrupted run.
#[test]
fn a_trial_killed_mid_training_resumes_from_its_checkpoint_bitwise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = tiny_sweep(dir.path(), 1, 60, 3000);
    let text = std::fs::read_to_string(&tiny)
        .expect("read")
        .replace("lr = 0.005", "lr = 0.005\nsave = [\"checkpoints\"]");
    let sweep = dir.path().join("ckpt.toml");
    std::fs::write(&sweep, text).expect("write");

    let quiet = dir.path().join("quiet");
    run_ok(&sweep, &quiet, "1");

    let state = dir.path().join("killed");
    let run = spawn_run(&sweep, &state, "1", "info");
    // Kill the worker once a trial has a checkpoint (an epoch is done).
    let checkpoints = state.join("artifacts").join("checkpoints");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let saved = std::fs::read_dir(&checkpoints)
            .map(|d| d.flatten().any(|e| e.path().join("latest").exists()))
            .unwrap_or(false);
        if saved {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint was written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let victim = *children_of(run.id()).first().expect("a worker");
    kill_and_finish(run, victim);
    assert_exact_results(&state, 2);
    let logs = std::fs::read_to_string(state.join("logs").join("worker-0.log")).expect("log");
    assert!(logs.contains("resuming from a checkpoint"), "{logs}");
    assert_eq!(metrics_by_trial(&state), metrics_by_trial(&quiet));
    let leftover = std::fs::read_dir(&checkpoints).map_or(0, |d| d.count());
    assert_eq!(leftover, 0, "finished trials remove their checkpoints");
}

/// `[dataset] folds`: every (configuration, seed) runs once per fold on the
/// same partition, the results name their fold, and the report pairs on
/// (seed, fold) with the corrected resampled t-test.
#[test]
fn cross_validation_folds_pair_on_seed_and_fold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = tiny_sweep(dir.path(), 2, 2, 96);
    let text = std::fs::read_to_string(&sweep).expect("read");
    let text = text.replace(
        "generator = \"fusion\"",
        "generator = \"fusion\"\nfolds = 3\nfold_seed = 7",
    );
    assert!(text.contains("folds = 3"));
    std::fs::write(&sweep, text).expect("write");
    let state = dir.path().join("state");
    run_ok(&sweep, &state, "2");
    let rows = results(&state);
    // 2 configurations × 2 seeds × 3 folds.
    assert_eq!(rows.len(), 12, "{rows:?}");
    let mut units = HashSet::new();
    for r in &rows {
        assert_eq!(r["status"], "completed", "{r}");
        let fold = r["fold"].as_u64().expect("a fold");
        assert!(fold < 3);
        units.insert((
            r["config_key"].as_str().unwrap_or_default().to_string(),
            r["seed"].as_u64(),
            fold,
        ));
    }
    assert_eq!(units.len(), 12);
    let report = std::fs::read_to_string(state.join("report.md")).expect("report.md");
    assert!(
        report.contains("corrected resampled t-test (Nadeau & Bengio) on (seed, fold) pairs of 3-fold cross-validation"),
        "{report}"
    );
    assert!(
        report.contains("on each of 3 cross-validation folds"),
        "{report}"
    );
    let json = sigsweep(&["report", state.to_str().expect("utf8"), "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(json["folds"], 3);
    let row = &json["tables"][0]["rows"][0];
    assert_eq!(row["seeds"].as_array().map(Vec::len), Some(6), "{row}");
    let compared = json["tables"][0]["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| !r["comparison"].is_null()))
        .expect("a comparison")
        .clone();
    assert_eq!(compared["comparison"]["used"], "corrected_resampled");
    assert_eq!(compared["comparison"]["n_pairs"], 6);
}

/// `sigsweep bench train … --json` on late-fusion's synthetic data, with
/// `extra` flags; its JSON figures.
fn bench_json(extra: &[&str]) -> serde_json::Value {
    let base = [
        "bench",
        "train",
        "--model",
        "late-fusion",
        "--dataset",
        "synthetic-fusion",
    ];
    let out = common::cluster::sigsweep(&[&base[..], extra, &["--json"]].concat());
    assert!(out.status.success(), "{}", common::cluster::text(&out));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The same trial (same seed, dropout on) trained by two processes at once
/// (`bench train --mode packed`) gives the same loss at every epoch, bit for
/// bit: what `loss_spread_across_processes` reports, and what it checks on
/// a GPU (`verify.sh mmic`, `fdcmdie`). Fused seeds report how far their
/// losses are from the same seeds trained one after another.
#[test]
fn the_same_trial_in_two_processes_gives_identical_losses() {
    let dropout = ["--param", "dropout=0.3"];
    let packed = bench_json(
        &[
            &["--epochs", "3", "--mode", "packed", "--k", "2"][..],
            &dropout,
        ]
        .concat(),
    );
    assert_eq!(packed["concurrent_trials"], 2, "{packed}");
    assert_eq!(packed["loss_spread_across_processes"], 0.0, "{packed}");
    // A single run reports the losses the packed run compared.
    let single = bench_json(&[&["--epochs", "3"][..], &dropout].concat());
    let losses = single["epoch_losses"].as_array().expect("epoch_losses");
    assert_eq!(losses.len(), 3, "{single}");
    assert!(
        losses
            .iter()
            .all(|l| l.as_f64().is_some_and(f64::is_finite)),
        "{single}"
    );
    // Fused seeds without dropout: the unfused losses up to the batched
    // products' rounding.
    let fused = bench_json(&[
        "--epochs",
        "2",
        "--mode",
        "fused",
        "--seeds",
        "2",
        "--param",
        "dropout=0",
    ]);
    let d = fused["loss_difference_vs_baseline"]
        .as_f64()
        .expect("a difference");
    assert!(d < 1e-6, "{fused}");
}
