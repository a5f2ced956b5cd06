use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::store::EmbeddedStore;

const SWEEP: &str = r#"name = "unit"
seeds = 3
baseline = { hidden = 1 }
[model]
name = "late-fusion"
[dataset]
kind = "synthetic"
generator = "fusion"
[training]
epochs = 1
batch_size = 4
lr = 0.1
[grid]
hidden = [1, 2]
[metrics]
select = "accuracy"
report = { accuracy = "max" }
[resources]
max_retries = 1
"#;

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        lease_ttl: Duration::from_secs(10),
        max_acquire_wait: Duration::from_millis(50),
        allow_command: true,
        ..CoordinatorConfig::default()
    }
}

async fn coordinator(dir: &std::path::Path) -> Coordinator {
    let store = EmbeddedStore::open(dir.join("state.redb")).expect("store");
    Coordinator::start(Catalog::new(Arc::new(store)), config())
        .await
        .expect("start")
}

fn metrics(v: f64) -> BTreeMap<String, f64> {
    BTreeMap::from([("accuracy".to_string(), v)])
}

async fn complete(c: &Coordinator, reg: &Registration, a: &Assignment) -> bool {
    c.complete(Completion {
        worker_id: reg.worker_id.clone(),
        generation: reg.generation,
        lease_id: a.lease_id.clone(),
        trial_id: a.trial.trial_id.clone(),
        test_metrics: metrics(0.5),
        valid_metrics: metrics(0.4),
        selected_epoch: 1,
        seconds: 1.0,
        predictions: None,
        weights: None,
        history: Vec::new(),
        hardware: None,
        program_selected: false,
    })
    .await
    .expect("complete")
}

/// A heartbeat of `reg` for `a`'s lease: whether the lease is still valid.
fn beat(c: &Coordinator, reg: &Registration, a: &Assignment) -> bool {
    c.heartbeat(
        &reg.worker_id,
        reg.generation,
        &a.lease_id,
        &a.trial.trial_id,
        false,
    )
    .expect("heartbeat")
    .0
}

/// The next trial for `reg`, which must get one.
async fn next_trial(c: &Coordinator, reg: &Registration) -> Assignment {
    c.acquire(&reg.worker_id, reg.generation, Duration::ZERO)
        .await
        .expect("acquire")
        .expect("trial")
}

#[tokio::test]
async fn runs_a_sweep_to_the_end_and_stores_each_result_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let s = c.submit(SWEEP, "unit.toml").await.expect("submit");
    assert_eq!(s.total_trials, 6);
    assert!(s.created);
    let again = c.submit(SWEEP, "unit.toml").await.expect("resubmit");
    assert_eq!(again.sweep_id, s.sweep_id);
    assert!(!again.created);

    let reg = c.register("w", WorkerCaps::default()).expect("register");
    let mut seen = std::collections::HashSet::new();
    while let Some(a) = c
        .acquire(&reg.worker_id, reg.generation, Duration::ZERO)
        .await
        .expect("acquire")
    {
        assert!(seen.insert(a.trial.trial_id.clone()));
        assert!(complete(&c, &reg, &a).await);
        // A duplicate report is not stored again.
        assert!(!complete(&c, &reg, &a).await);
    }
    assert_eq!(seen.len(), 6);
    let p = c.progress(&s.sweep_id).expect("progress");
    assert_eq!((p.completed, p.failed, p.running, p.queued), (6, 0, 0, 0));
    assert_eq!(p.state, SweepRunState::Finished);
    assert_eq!(c.results(&s.sweep_id).await.expect("results").len(), 6);
}

#[tokio::test]
async fn resumes_from_the_store_without_rerunning_finished_trials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep_id;
    {
        let c = coordinator(dir.path()).await;
        sweep_id = c.submit(SWEEP, "unit.toml").await.expect("submit").sweep_id;
        let reg = c.register("w", WorkerCaps::default()).expect("register");
        for _ in 0..2 {
            let a = c
                .acquire(&reg.worker_id, reg.generation, Duration::ZERO)
                .await
                .expect("acquire")
                .expect("trial");
            complete(&c, &reg, &a).await;
        }
        // One more acquired but never finished (the coordinator "crashes").
        c.acquire(&reg.worker_id, reg.generation, Duration::ZERO)
            .await
            .expect("acquire")
            .expect("trial");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = coordinator(dir.path()).await;
    let p = c.progress(&sweep_id).expect("loaded");
    assert_eq!((p.completed, p.queued), (2, 4));
    let reg = c.register("w", WorkerCaps::default()).expect("register");
    let mut n = 0;
    while let Some(a) = c
        .acquire(&reg.worker_id, reg.generation, Duration::ZERO)
        .await
        .expect("acquire")
    {
        complete(&c, &reg, &a).await;
        n += 1;
    }
    assert_eq!(n, 4);
}

#[tokio::test(start_paused = true)]
async fn expired_lease_is_taken_by_another_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    c.submit(SWEEP, "unit.toml").await.expect("submit");
    let dead = c.register("dead", WorkerCaps::default()).expect("register");
    let first = c
        .acquire(&dead.worker_id, dead.generation, Duration::ZERO)
        .await
        .expect("acquire")
        .expect("trial");
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(c.expire_leases(), 1);
    let alive = c
        .register("alive", WorkerCaps::default())
        .expect("register");
    let again = c
        .acquire(&alive.worker_id, alive.generation, Duration::ZERO)
        .await
        .expect("acquire")
        .expect("trial");
    assert_eq!(again.trial.trial_id, first.trial.trial_id);
    assert_eq!(again.attempt, 2);
    // The dead worker's heartbeat no longer holds the lease.
    let (valid, _) = c
        .heartbeat(
            &dead.worker_id,
            dead.generation,
            &first.lease_id,
            &first.trial.trial_id,
            false,
        )
        .expect("heartbeat");
    assert!(!valid);
}

/// A trial that takes down every worker it runs on (killed for memory, a
/// crash) fails at its `max_lost_workers`-th lost worker (default 3),
/// whether the lease expired or the restarted worker fenced it, instead of
/// crashing workers forever.
#[tokio::test(start_paused = true)]
async fn a_trial_that_loses_its_worker_again_and_again_fails_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let sweep = c.submit(SWEEP, "unit.toml").await.expect("submit").sweep_id;
    let first = next_trial(
        &c,
        &c.register("a", WorkerCaps::default()).expect("register"),
    )
    .await;
    let id = first.trial.trial_id.clone();
    // Lost 1: worker `a` restarts (a new generation fences its lease).
    let second = next_trial(
        &c,
        &c.register("a", WorkerCaps::default()).expect("register"),
    )
    .await;
    assert_eq!(
        (second.trial.trial_id.as_str(), second.attempt),
        (id.as_str(), 2)
    );
    // Lost 2: worker `a` goes silent and the lease expires.
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(c.expire_leases(), 1);
    assert_eq!(c.fail_lost().await.expect("fail_lost"), 0, "not yet");
    let third = next_trial(
        &c,
        &c.register("b", WorkerCaps::default()).expect("register"),
    )
    .await;
    assert_eq!(
        (third.trial.trial_id.as_str(), third.attempt),
        (id.as_str(), 3)
    );
    // Lost 3: worker `b` restarts. The trial leaves the queue for good.
    let b = c.register("b", WorkerCaps::default()).expect("register");
    assert_eq!(c.fail_lost().await.expect("fail_lost"), 1);
    let next = next_trial(&c, &b).await;
    assert_ne!(
        next.trial.trial_id, id,
        "the failed trial is not leased again"
    );
    let results = c.results(&sweep).await.expect("results");
    let r = results.iter().find(|r| r.trial_id == id).expect("stored");
    assert_eq!((r.status.as_str(), r.attempts), ("failed", 3));
    let reason = r.failure.as_deref().unwrap_or_default();
    assert!(
        reason.contains("lost 3 times") && reason.contains("worker `b`"),
        "{reason}"
    );
    let p = c.progress(&sweep).expect("progress");
    assert_eq!((p.failed, p.running, p.queued), (1, 1, 4));
}

/// An attempt counts when the trial starts: a reservation whose worker died
/// before starting it is not one.
#[tokio::test(start_paused = true)]
async fn a_reservation_that_never_started_is_not_an_attempt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    c.submit(SWEEP, "unit.toml").await.expect("submit");
    let busy = c.register("busy", WorkerCaps::default()).expect("register");
    let running = next_trial(&c, &busy).await;
    let reserved = c
        .reserve(&busy.worker_id, busy.generation, 1)
        .expect("reserve")
        .pop()
        .expect("a reservation");
    assert_eq!(reserved.attempt, 1, "the attempt it will be");
    // `busy` dies: both leases expire.
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(c.expire_leases(), 2);
    let other = c
        .register("other", WorkerCaps::default())
        .expect("register");
    let mut attempts = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let a = next_trial(&c, &other).await;
        attempts.insert(a.trial.trial_id.clone(), a.attempt);
    }
    assert_eq!(attempts[&running.trial.trial_id], 2, "it ran once before");
    assert_eq!(attempts[&reserved.trial.trial_id], 1, "it never ran");
}

/// A worker cut off long enough for its lease to expire, that then
/// heartbeats again and adopts its trial back, was not lost: partitions do
/// not add up to a failure.
#[tokio::test(start_paused = true)]
async fn a_worker_that_comes_back_for_its_trial_was_not_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    c.submit(SWEEP, "unit.toml").await.expect("submit");
    let reg = c.register("w", WorkerCaps::default()).expect("register");
    let a = next_trial(&c, &reg).await;
    for _ in 0..4 {
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(c.expire_leases(), 1);
        assert!(beat(&c, &reg, &a), "re-adopted");
    }
    assert_eq!(c.fail_lost().await.expect("fail_lost"), 0);
    assert!(complete(&c, &reg, &a).await, "its result counts");
}

/// An attempt that runs past `[resources] trial_timeout` fails and is
/// retried (`max_retries = 1`), then fails for good with the reason; its
/// lease ends, so the worker's heartbeat stops it. Heartbeats keep the
/// lease alive meanwhile: a hung program's worker still heartbeats.
#[tokio::test(start_paused = true)]
async fn an_attempt_past_its_trial_timeout_fails_and_is_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let sweep_text = SWEEP.replace(
        "max_retries = 1",
        "max_retries = 1\ntrial_timeout = \"30s\"",
    );
    let sweep = c
        .submit(&sweep_text, "unit.toml")
        .await
        .expect("submit")
        .sweep_id;
    let reg = c.register("w", WorkerCaps::default()).expect("register");
    let run_for = |a: &Assignment, seconds: u64| {
        let (c, reg, a) = (&c, &reg, a.clone());
        async move {
            for _ in 0..seconds / 5 {
                tokio::time::advance(Duration::from_secs(5)).await;
                c.time_out_trials().await.expect("time out");
                if !beat(c, reg, &a) {
                    return false;
                }
                assert_eq!(c.expire_leases(), 0, "heartbeats keep the lease");
            }
            true
        }
    };
    let a = next_trial(&c, &reg).await;
    assert!(run_for(&a, 25).await, "within the limit");
    assert!(!run_for(&a, 10).await, "the lease ends past 30 s");
    let b = next_trial(&c, &reg).await;
    assert_eq!(
        (b.trial.trial_id.as_str(), b.attempt),
        (a.trial.trial_id.as_str(), 2)
    );
    assert!(!run_for(&b, 40).await);
    let results = c.results(&sweep).await.expect("results");
    let r = results
        .iter()
        .find(|r| r.trial_id == a.trial.trial_id)
        .expect("stored");
    assert_eq!((r.status.as_str(), r.attempts), ("failed", 2));
    let reason = r.failure.as_deref().unwrap_or_default();
    assert!(
        reason.contains("ran longer than [resources] trial_timeout = 30s"),
        "{reason}"
    );
}

#[tokio::test]
async fn failures_retry_then_fail_for_good_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let sweep = c.submit(SWEEP, "unit.toml").await.expect("submit").sweep_id;
    let reg = c.register("w", WorkerCaps::default()).expect("register");
    let a = c
        .acquire(&reg.worker_id, reg.generation, Duration::ZERO)
        .await
        .expect("acquire")
        .expect("trial");
    let id = a.trial.trial_id.clone();
    assert!(
        c.fail(
            &reg.worker_id,
            reg.generation,
            &id,
            "loss is NaN at epoch 1"
        )
        .await
        .expect("fail")
    );
    let b = c
        .acquire(&reg.worker_id, reg.generation, Duration::ZERO)
        .await
        .expect("acquire")
        .expect("trial");
    assert_eq!(b.trial.trial_id, id, "a retried trial goes first");
    assert!(
        !c.fail(
            &reg.worker_id,
            reg.generation,
            &id,
            "loss is NaN at epoch 1"
        )
        .await
        .expect("fail")
    );
    let results = c.results(&sweep).await.expect("results");
    let r = results.iter().find(|r| r.trial_id == id).expect("stored");
    assert_eq!(r.status, "failed");
    assert_eq!(r.attempts, 2);
    assert!(r.failure.as_deref().unwrap_or_default().contains("NaN"));
    assert_eq!(c.progress(&sweep).expect("progress").failed, 1);
}

#[tokio::test]
async fn a_restarted_worker_fences_its_old_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    c.submit(SWEEP, "unit.toml").await.expect("submit");
    let old = c.register("w", WorkerCaps::default()).expect("register");
    let a = c
        .acquire(&old.worker_id, old.generation, Duration::ZERO)
        .await
        .expect("acquire")
        .expect("trial");
    let new = c.register("w", WorkerCaps::default()).expect("register");
    assert!(new.generation > old.generation);
    let err = c
        .complete(Completion {
            worker_id: old.worker_id.clone(),
            generation: old.generation,
            lease_id: a.lease_id.clone(),
            trial_id: a.trial.trial_id.clone(),
            test_metrics: metrics(0.1),
            valid_metrics: metrics(0.1),
            selected_epoch: 1,
            seconds: 1.0,
            predictions: None,
            weights: None,
            history: Vec::new(),
            hardware: None,
            program_selected: false,
        })
        .await
        .expect_err("stale generation");
    assert!(
        matches!(err, CoordinatorError::StaleGeneration { .. }),
        "{err}"
    );
    // The fenced trial is back in the queue, first.
    let b = c
        .acquire(&new.worker_id, new.generation, Duration::ZERO)
        .await
        .expect("acquire")
        .expect("trial");
    assert_eq!(b.trial.trial_id, a.trial.trial_id);
}

#[tokio::test]
async fn cancel_stops_handing_out_trials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let sweep = c.submit(SWEEP, "unit.toml").await.expect("submit").sweep_id;
    let reg = c.register("w", WorkerCaps::default()).expect("register");
    let a = c
        .acquire(&reg.worker_id, reg.generation, Duration::ZERO)
        .await
        .expect("acquire")
        .expect("trial");
    let p = c.cancel(&sweep).await.expect("cancel");
    assert_eq!(p.state, SweepRunState::Cancelled);
    assert!(
        c.acquire(&reg.worker_id, reg.generation, Duration::ZERO)
            .await
            .expect("acquire")
            .is_none()
    );
    let (valid, cancel) = c
        .heartbeat(
            &reg.worker_id,
            reg.generation,
            &a.lease_id,
            &a.trial.trial_id,
            false,
        )
        .expect("heartbeat");
    assert!(valid && cancel);
}

#[tokio::test]
async fn malformed_sweep_is_rejected_with_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let err = c
        .submit(&SWEEP.replace("lr = 0.1", "lr = \"fast\""), "bad.toml")
        .await
        .expect_err("invalid");
    let msg = err.to_string();
    assert!(msg.starts_with("bad.toml:12:"), "{msg}");
    assert!(msg.contains("training.lr"), "{msg}");
    assert!(c.list().is_empty());
}

#[tokio::test]
async fn fused_sweeps_hand_out_the_seeds_of_one_configuration_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let fused = SWEEP.replace("max_retries = 1", "max_retries = 1\nfuse_seeds = true");
    c.submit(&fused, "fused.toml").await.expect("submit");
    let reg = c.register("w", WorkerCaps::default()).expect("register");
    let got = c
        .acquire_many(&reg.worker_id, reg.generation, Duration::ZERO, 10)
        .await
        .expect("acquire");
    assert_eq!(got.len(), 3, "all three seeds of the first configuration");
    assert!(
        got.iter()
            .all(|a| a.trial.config.key == got[0].trial.config.key)
    );
    let seeds: Vec<u64> = got.iter().map(|a| a.trial.seed).collect();
    assert_eq!(seeds, [0, 1, 2]);
    // Without fuse_seeds, one at a time.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let c2 = coordinator(dir2.path()).await;
    c2.submit(SWEEP, "plain.toml").await.expect("submit");
    let reg2 = c2.register("w", WorkerCaps::default()).expect("register");
    let got = c2
        .acquire_many(&reg2.worker_id, reg2.generation, Duration::ZERO, 10)
        .await
        .expect("acquire");
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn sweeps_for_a_model_a_worker_declared_are_checked_against_its_declaration() {
    use sigsweep_types::{ModelDecl, ParamDecl, ParamKind};
    use std::borrow::Cow;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let sweep = |value: &str| {
        SWEEP
            .replace("name = \"late-fusion\"", "name = \"my-model\"")
            .replace("baseline = { hidden = 1 }", "baseline = { depth = 1 }")
            .replace("hidden = [1, 2]", &format!("depth = [1, {value}]"))
    };
    // Nobody declared `my-model` yet.
    let e = c
        .submit(&sweep("2"), "mine.toml")
        .await
        .expect_err("unknown");
    assert!(e.to_string().contains("unknown model `my-model`"), "{e}");
    let decl = ModelDecl {
        name: "my-model".into(),
        doc: "a user's own burn model".into(),
        params: vec![ParamDecl {
            name: "depth".into(),
            kind: ParamKind::Int { min: 1, max: 8 },
            default: "2".into(),
            doc: "layers".into(),
        }]
        .into(),
    };
    c.declare_models(&[decl]).expect("declare");
    let e = c
        .submit(&sweep("9"), "mine.toml")
        .await
        .expect_err("out of range");
    let e = e.to_string();
    assert!(
        e.contains("mine.toml:") && e.contains("grid.depth") && e.contains("[1, 8]"),
        "{e}"
    );
    let e = c
        .submit(
            &sweep("2").replace("[model]\n", "[model]\nwidth = 3\n"),
            "mine.toml",
        )
        .await
        .expect_err("undeclared");
    assert!(e.to_string().contains("model.width"), "{e}");
    c.submit(&sweep("2"), "mine.toml")
        .await
        .expect("declared and valid");
    // A worker cannot redefine a built-in model.
    let fake = ModelDecl {
        name: Cow::Borrowed("late-fusion"),
        doc: "".into(),
        params: Vec::new().into(),
    };
    c.declare_models(&[fake]).expect("ignored");
    c.submit(SWEEP, "unit.toml")
        .await
        .expect("built-in declaration kept");
}

/// A completion's history is bounded, finite and in epoch order; anything
/// else is refused before it is stored.
#[test]
fn a_completion_history_must_be_finite_and_in_order() {
    use super::outcomes::check_history;
    let e = |epoch: u32, loss: f64, v: f64| sigsweep_types::EpochRecord {
        epoch,
        train_loss: loss,
        valid: BTreeMap::from([("acc".to_string(), v)]),
        test: BTreeMap::new(),
    };
    assert!(check_history(&[e(1, 0.5, 0.1), e(2, 0.4, 0.2)]).is_ok());
    for (bad, why) in [
        (vec![e(1, f64::NAN, 0.1)], "non-finite training loss"),
        (vec![e(1, 0.5, f64::INFINITY)], "not finite"),
        (vec![e(2, 0.5, 0.1), e(2, 0.4, 0.1)], "must increase"),
        (vec![e(0, 0.5, 0.1)], "must increase"),
    ] {
        let err = check_history(&bad).expect_err(why);
        assert!(err.to_string().contains(why), "{err}");
    }
    let long: Vec<_> = (1..=10_001).map(|i| e(i, 0.1, 0.1)).collect();
    assert!(check_history(&long).is_err());
    // Too many bytes for a stored result; what the worker's fit_history
    // leaves of it is accepted.
    let mut wide: Vec<_> = (1..=100)
        .map(|i| {
            let mut r = e(i, 0.1, 0.1);
            r.test = (0..1000).map(|k| (format!("f1_class_{k}"), 0.5)).collect();
            r
        })
        .collect();
    let err = check_history(&wide).expect_err("too large");
    assert!(
        err.to_string()
            .contains("bytes (as JSON or protobuf, the larger), more than the limit of 524288"),
        "{err}"
    );
    assert!(sigsweep_types::record::fit_history(&mut wide, "acc", 3).is_some());
    check_history(&wide).expect("fitted");
}

/// A completion names its predictions and weights only as the trial's own
/// files in the artifacts directory; any other path is refused and nothing
/// is stored.
#[tokio::test]
async fn predictions_are_only_the_trials_own_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let s = c.submit(SWEEP, "unit.toml").await.expect("submit");
    let reg = c.register("w", WorkerCaps::default()).expect("register");
    let a = c
        .acquire(&reg.worker_id, reg.generation, Duration::ZERO)
        .await
        .expect("acquire")
        .expect("a trial");
    let with = |p: &str| Completion {
        worker_id: reg.worker_id.clone(),
        generation: reg.generation,
        lease_id: a.lease_id.clone(),
        trial_id: a.trial.trial_id.clone(),
        test_metrics: metrics(0.5),
        valid_metrics: metrics(0.4),
        selected_epoch: 1,
        seconds: 1.0,
        predictions: Some(p.to_string()),
        weights: None,
        history: Vec::new(),
        hardware: None,
        program_selected: false,
    };
    for bad in [
        "../../etc/passwd",
        "/tmp/x.jsonl",
        "predictions/other.jsonl",
    ] {
        let err = c.complete(with(bad)).await.expect_err(bad);
        assert!(err.to_string().contains("predictions must be"), "{err}");
    }
    let own = format!("predictions/{}.jsonl", a.trial.trial_id);
    let own_weights = format!("weights/{}.safetensors", a.trial.trial_id);
    for bad in [
        "../weights/x.safetensors",
        "/etc/shadow",
        "weights/other.safetensors",
    ] {
        let c2 = Completion {
            weights: Some(bad.to_string()),
            ..with(&own)
        };
        let err = c.complete(c2).await.expect_err(bad);
        assert!(err.to_string().contains("weights must be"), "{err}");
    }
    // A hardware description is bounded printable text.
    for bad in ["x".repeat(10_000), "CPU\n\u{1b}[2J".to_string()] {
        let c2 = Completion {
            hardware: Some(bad),
            ..with(&own)
        };
        let err = c.complete(c2).await.expect_err("hardware");
        assert!(err.to_string().contains("hardware must be"), "{err}");
    }
    assert!(c.results(&s.sweep_id).await.expect("results").is_empty());
    let done = Completion {
        weights: Some(own_weights.clone()),
        hardware: Some("CPU: Test CPU (2 logical CPUs); trained on cpu, 1 thread(s)".to_string()),
        ..with(&own)
    };
    assert!(c.complete(done).await.expect("own files"));
    let stored = c.results(&s.sweep_id).await.expect("results");
    assert_eq!(stored[0].predictions.as_deref(), Some(own.as_str()));
    assert_eq!(stored[0].weights.as_deref(), Some(own_weights.as_str()));
    assert!(
        stored[0]
            .hardware
            .as_deref()
            .is_some_and(|h| h.starts_with("CPU: Test CPU"))
    );
}

/// A worker whose reservation was taken over hands it back (stale), and the
/// worker that took it over fails it retryably: the trial goes back to the
/// queue once and runs again. (Before, the stale release ended the new
/// holder's lease and queued the trial, and the new holder's failure then
/// took it out of the queue for good: the sweep never finished.)
#[tokio::test]
async fn a_stale_release_does_not_lose_a_taken_over_trial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let s = c.submit(SWEEP, "unit.toml").await.expect("submit");
    let busy = c.register("busy", WorkerCaps::default()).expect("register");
    let idle = c.register("idle", WorkerCaps::default()).expect("register");
    let first = c
        .acquire(&busy.worker_id, busy.generation, Duration::ZERO)
        .await
        .expect("acquire")
        .expect("a trial");
    // Reserve everything else, so that the idle worker must take over.
    let mut reserved = Vec::new();
    loop {
        let r = c
            .reserve(&busy.worker_id, busy.generation, 1)
            .expect("reserve");
        if r.is_empty() {
            break;
        }
        reserved.extend(r);
    }
    let taken = c
        .acquire(&idle.worker_id, idle.generation, Duration::ZERO)
        .await
        .expect("acquire")
        .expect("takes over a reservation");
    let id = taken.trial.trial_id.clone();
    assert_ne!(id, first.trial.trial_id);
    // The reserving worker hands back what it no longer holds.
    c.release(&busy.worker_id, busy.generation, &id)
        .expect("release");
    assert_eq!(
        c.progress(&s.sweep_id).expect("progress").running,
        1 + reserved.len() as u32,
        "the taken-over trial is still running"
    );
    // …and a stale failure report of it is ignored too.
    assert!(
        !c.fail(&busy.worker_id, busy.generation, &id, "stale")
            .await
            .expect("fail")
    );
    // The new holder fails it: it is queued again, once, and runs again.
    assert!(
        c.fail(&idle.worker_id, idle.generation, &id, "backend: flaky")
            .await
            .expect("fail")
    );
    let again = c
        .acquire(&idle.worker_id, idle.generation, Duration::ZERO)
        .await
        .expect("acquire")
        .expect("the retried trial");
    assert_eq!(again.trial.trial_id, id);
    assert_eq!(again.attempt, 2);
}

/// Idle workers are forgotten after a while (not one holding a lease), and
/// the coordinator knows at most MAX_WORKERS at once: a registration loop
/// cannot grow it without bound.
#[tokio::test(start_paused = true)]
async fn idle_workers_are_forgotten_and_their_number_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    c.submit(SWEEP, "unit.toml").await.expect("submit");
    let busy = c.register("busy", WorkerCaps::default()).expect("register");
    next_trial(&c, &busy).await;
    let idle = c.register("idle", WorkerCaps::default()).expect("register");
    assert_eq!(c.forget_idle_workers(), 0);
    tokio::time::advance(super::FORGET_IDLE_WORKERS_AFTER + Duration::from_secs(1)).await;
    // Leases are not expired here: `busy` still holds one, and is kept.
    assert_eq!(c.forget_idle_workers(), 1, "only the idle worker");
    let err = c
        .acquire(&idle.worker_id, idle.generation, Duration::ZERO)
        .await
        .expect_err("forgotten");
    assert!(matches!(err, CoordinatorError::UnknownWorker(_)), "{err}");
    c.register("idle", WorkerCaps::default())
        .expect("a forgotten worker registers again");

    for i in 2..super::MAX_WORKERS {
        c.register(&format!("w{i}"), WorkerCaps::default())
            .expect("below the limit");
    }
    let err = c
        .register("one-too-many", WorkerCaps::default())
        .expect_err("full");
    assert!(matches!(err, CoordinatorError::Full(_)), "{err}");
    assert!(err.to_string().contains("65536 workers"), "{err}");
    c.register("busy", WorkerCaps::default())
        .expect("a known worker registers again when full");
    tokio::time::advance(super::FORGET_IDLE_WORKERS_AFTER + Duration::from_secs(1)).await;
    assert!(c.forget_idle_workers() >= super::MAX_WORKERS - 2);
    c.register("one-too-many", WorkerCaps::default())
        .expect("room again");
}

/// A finished sweep leaves its counts and its stored results, not an entry
/// per trial in memory; retrying its failed trials makes theirs anew.
#[tokio::test]
async fn a_finished_sweep_releases_its_trials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let sweep = c.submit(SWEEP, "unit.toml").await.expect("submit").sweep_id;
    let total = c.state().trials.len();
    assert!(total > 1);
    let w = c.register("w", WorkerCaps::default()).expect("register");
    for i in 0..total {
        let a = next_trial(&c, &w).await;
        if i == 0 {
            c.fail_with(
                &w.worker_id,
                w.generation,
                &a.trial.trial_id,
                "broken",
                false,
            )
            .await
            .expect("fail");
        } else {
            complete(&c, &w, &a).await;
        }
    }
    let progress = c.progress(&sweep).expect("progress");
    assert_eq!((progress.completed, progress.failed), (total as u32 - 1, 1));
    assert!(c.state().trials.is_empty(), "every entry released");
    assert_eq!(c.retry_failed(&sweep).await.expect("retry"), 1);
    assert_eq!(c.state().trials.len(), total, "loaded again");
    let a = next_trial(&c, &w).await;
    complete(&c, &w, &a).await;
    assert!(c.state().trials.is_empty());
}

/// A cancelled sweep releases its trials too, but not one still running
/// (its worker is being told to stop); and the trials of running sweeps a
/// coordinator holds are bounded: a submission past `max_live_trials` is
/// refused, nothing stored, until a sweep stops.
#[tokio::test]
async fn live_trials_are_bounded_and_a_cancelled_sweep_releases_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path().join("state.redb")).expect("store");
    let c = Coordinator::start(
        Catalog::new(Arc::new(store)),
        CoordinatorConfig {
            max_live_trials: 7,
            ..config()
        },
    )
    .await
    .expect("start");
    let first = c.submit(SWEEP, "unit.toml").await.expect("submit").sweep_id;
    let held = c.state().trials.len();
    assert!(held <= 7 && held * 2 > 7, "{held} trials a sweep");
    let other = SWEEP.replace("name = \"unit\"", "name = \"other\"");
    assert_ne!(other, SWEEP);
    let err = c.submit(&other, "other.toml").await.expect_err("full");
    assert!(matches!(err, CoordinatorError::Full(_)), "{err}");
    assert!(err.to_string().contains("cancel a sweep"), "{err}");
    assert_eq!(c.list().len(), 1, "nothing stored for the refused sweep");
    c.submit(SWEEP, "unit.toml")
        .await
        .expect("the same sweep again is no new trial");

    let w = c.register("w", WorkerCaps::default()).expect("register");
    let running = next_trial(&c, &w).await;
    c.cancel(&first).await.expect("cancel");
    let left: Vec<String> = c.state().trials.keys().map(|k| k.to_string()).collect();
    assert_eq!(left.len(), 1, "only the running one: {left:?}");
    assert_eq!(*left[0], *running.trial.trial_id);
    // Its worker lets go (here: it finished first): the entry goes too.
    complete(&c, &w, &running).await;
    assert!(c.state().trials.is_empty(), "released once its lease ended");
    c.submit(&other, "other.toml").await.expect("room again");
}

/// The same for a running trial of a cancelled sweep whose worker hands it
/// back, fails it, or goes silent: no entry outlives its lease.
#[tokio::test(start_paused = true)]
async fn a_cancelled_trial_is_released_however_its_lease_ends() {
    for ending in ["release", "fail", "expire"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = coordinator(dir.path()).await;
        let sweep = c.submit(SWEEP, "unit.toml").await.expect("submit").sweep_id;
        let w = c.register("w", WorkerCaps::default()).expect("register");
        let running = next_trial(&c, &w).await;
        assert!(beat(&c, &w, &running), "started");
        c.cancel(&sweep).await.expect("cancel");
        assert_eq!(c.state().trials.len(), 1, "{ending}: the running one");
        let id = &running.trial.trial_id;
        match ending {
            "release" => c.release(&w.worker_id, w.generation, id).expect("release"),
            "fail" => {
                c.fail(&w.worker_id, w.generation, id, "stopped")
                    .await
                    .expect("fail");
            }
            _ => {
                tokio::time::advance(Duration::from_secs(11)).await;
                assert_eq!(c.expire_leases(), 1);
            }
        }
        assert!(c.state().trials.is_empty(), "{ending}: released");
        assert_eq!(
            c.progress(&sweep).expect("progress").state,
            SweepRunState::Cancelled
        );
    }
}

/// A store that remembers the most `results/` records one read answered.
struct Counting {
    inner: EmbeddedStore,
    most: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl crate::store::Store for Counting {
    async fn get(&self, key: &str) -> crate::store::StoreResult<Option<crate::store::Versioned>> {
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        precondition: crate::store::Precondition,
    ) -> crate::store::StoreResult<crate::store::Version> {
        self.inner.put(key, value, precondition).await
    }
    async fn delete(
        &self,
        key: &str,
        precondition: crate::store::Precondition,
    ) -> crate::store::StoreResult<()> {
        self.inner.delete(key, precondition).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> crate::store::StoreResult<Vec<(String, crate::store::Versioned)>> {
        let out = self.inner.list(prefix).await?;
        self.count(&out);
        Ok(out)
    }
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> crate::store::StoreResult<Vec<(String, crate::store::Versioned)>> {
        let out = self.inner.list_page(prefix, after, limit).await?;
        self.count(&out);
        Ok(out)
    }
    fn describe(&self) -> String {
        "counting".into()
    }
}

impl Counting {
    fn count(&self, out: &[(String, crate::store::Versioned)]) {
        let n = out
            .iter()
            .filter(|(k, _)| k.starts_with("results/"))
            .count();
        self.most.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A restart lists stopped sweeps with their counts while holding one page
/// of stored results at a time, not every result (each can carry a
/// history of up to 512 KiB).
#[tokio::test]
async fn a_restart_reads_stored_results_a_page_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let many = SWEEP.replace("seeds = 3", "seeds = 70");
    let (finished, total) = {
        let c = coordinator(dir.path()).await;
        let s = c.submit(&many, "many.toml").await.expect("submit");
        let w = c.register("w", WorkerCaps::default()).expect("register");
        for i in 0..s.total_trials {
            let a = next_trial(&c, &w).await;
            if i % 7 == 0 {
                c.fail_with(&w.worker_id, w.generation, &a.trial.trial_id, "no", false)
                    .await
                    .expect("fail");
            } else {
                complete(&c, &w, &a).await;
            }
        }
        (s.sweep_id, s.total_trials)
    };
    assert!(total as usize > 2 * crate::store::RESULTS_SCAN_PAGE);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let store = Arc::new(Counting {
        inner: EmbeddedStore::open(dir.path().join("state.redb")).expect("store"),
        most: 0.into(),
    });
    let c = Coordinator::start(Catalog::new(store.clone()), config())
        .await
        .expect("start");
    let p = c.progress(&finished).expect("listed");
    let failed = total.div_ceil(7);
    assert_eq!(
        (p.state, p.completed, p.failed),
        (SweepRunState::Finished, total - failed, failed)
    );
    let most = store.most.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (1..=crate::store::RESULTS_SCAN_PAGE).contains(&most),
        "{most} results in one read"
    );
}

/// A sweep whose trials no connected worker can take says why in its
/// progress (and to watchers, when a worker registers), instead of waiting
/// in silence.
#[tokio::test]
async fn a_sweep_no_worker_can_take_says_why_it_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let two = SWEEP.replace("max_retries = 1", "max_retries = 1\ngpus_per_trial = 2");
    let sweep = c.submit(&two, "two.toml").await.expect("submit").sweep_id;
    let waiting = || c.progress(&sweep).expect("progress").waiting;
    assert_eq!(waiting(), Some(Waiting::NoWorker));
    let watch = c.watch(&sweep).expect("watch");
    let caps = |backend: &str, gpus: u32, per_gpu: u32| WorkerCaps {
        backend: backend.into(),
        gpus: (0..gpus).collect(),
        trials_per_gpu: per_gpu,
    };
    c.register("cpu", caps("cpu", 0, 1)).expect("register");
    let Some(Waiting::NoneFits(why)) = waiting() else {
        panic!("{:?}", waiting());
    };
    assert!(
        why.contains("each needs 2 GPU(s)") && why.contains("at most 0") && why.contains("cpu"),
        "{why}"
    );
    assert_eq!(watch.borrow().waiting, waiting(), "watchers were told");
    c.register("one", caps("cuda", 1, 1)).expect("register");
    assert!(
        matches!(waiting(), Some(Waiting::NoneFits(w)) if w.contains("at most 1")),
        "{:?}",
        waiting()
    );
    c.register("packed", caps("cuda", 2, 4)).expect("register");
    assert!(
        matches!(waiting(), Some(Waiting::NoneFits(w)) if w.contains("share a GPU")),
        "{:?}",
        waiting()
    );
    let fits = c.register("two", caps("cuda", 2, 1)).expect("register");
    assert_eq!(waiting(), None);
    assert_eq!(watch.borrow().waiting, None, "watchers were told");
    let a = next_trial(&c, &fits).await;
    assert!(beat(&c, &fits, &a));
    assert_eq!(waiting(), None, "something runs");
}

/// Watchers of a sweep that waits for workers are told when the only
/// worker its trials fit falls silent, although nothing else happens.
#[tokio::test]
async fn watchers_are_told_when_the_worker_a_sweep_fits_falls_silent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path()).await;
    let sweep = c.submit(SWEEP, "unit.toml").await.expect("submit").sweep_id;
    let watch = c.watch(&sweep).expect("watch");
    assert_eq!(watch.borrow().waiting, Some(Waiting::NoWorker));
    let caps = WorkerCaps {
        backend: "cpu".into(),
        gpus: Vec::new(),
        trials_per_gpu: 1,
    };
    c.register("w", caps).expect("register");
    assert_eq!(watch.borrow().waiting, None, "told at registration");
    tokio::time::pause();
    assert_eq!(c.tell_silent_workers(), 0, "nobody fell silent");
    tokio::time::advance(config().lease_ttl + Duration::from_secs(1)).await;
    assert_eq!(
        c.progress(&sweep).expect("progress").waiting,
        Some(Waiting::NoWorker)
    );
    assert_eq!(c.tell_silent_workers(), 1);
    assert_eq!(
        watch.borrow().waiting,
        Some(Waiting::NoWorker),
        "watchers were told"
    );
    assert_eq!(c.tell_silent_workers(), 0, "told once");
}
