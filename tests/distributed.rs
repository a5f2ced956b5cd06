//! Distributed-mode tests with real processes: the `sigsweep` binary as
//! coordinator(s), workers and CLI client, a real etcd (`sigsweep-testkit`),
//! TLS certificates made in the test (rcgen), faults injected with SIGKILL
//! and SIGSTOP. Sweeps are tiny (late-fusion, small synthetic data), so the
//! file runs in a few minutes on two cores.
//!
//! Every sweep test checks the invariant that matters: exactly one result
//! per (configuration, seed), none duplicated.

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::etcd::EtcdProcess;
use common::proc::free_port;
use sigsweep_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_answers_unavailable_and_takes_over_when_the_leader_dies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = EtcdProcess::start().await;
    let (pa, pb_) = (free_port(), free_port());
    let (ha, hb) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let (ma, mb) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut a = coordinator(
        dir.path(),
        "coord-a",
        pa,
        &etcd.url(),
        &[
            "--advertise",
            "a",
            "--election-ttl",
            "3s",
            "--health-listen",
            &ha,
            "--metrics-listen",
            &ma,
        ],
    );
    let url_a = format!("http://127.0.0.1:{pa}");
    let url_b = format!("http://127.0.0.1:{pb_}");
    // A leads (it is alone); then B starts and stands by.
    let deadline = Instant::now() + Duration::from_secs(30);
    while health(&ha, "sigsweep.v1.SweepService").await.ok() != Some(SERVING) {
        assert!(Instant::now() < deadline, "A never led\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b = coordinator(
        dir.path(),
        "coord-b",
        pb_,
        &etcd.url(),
        &[
            "--advertise",
            "b",
            "--election-ttl",
            "3s",
            "--health-listen",
            &hb,
            "--metrics-listen",
            &mb,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while health(&hb, "").await.ok() != Some(SERVING) {
        assert!(Instant::now() < deadline, "B never came up\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        health(&hb, "sigsweep.v1.SweepService").await.ok(),
        Some(NOT_SERVING)
    );
    let e = client(&url_b)
        .await
        .list_sweeps(pb::ListSweepsRequest {})
        .await
        .expect_err("standby");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
    let metrics_b = http_get(&mb, "/metrics").expect("metrics B");
    assert_eq!(
        metric(&metrics_b, "sigsweep_leader"),
        Some(0.0),
        "{metrics_b}"
    );

    let sweep = sweep_file(
        dir.path(),
        "failover",
        2,
        20,
        20000,
        "modality_hidden = [2, 8]",
        "",
    );
    let id = submit(&url_a, &sweep, &[&a, &b]).await;
    // One worker per coordinator address: the one pointed at A must move.
    let proxy = LeaderProxy::start(vec![(pa, ma.clone()), (pb_, mb.clone())]).await;
    let wa = worker(dir.path(), "w-a", &proxy.url());
    let w2 = worker(dir.path(), "w-b", &proxy.url());
    wait_for(
        &url_a,
        &id,
        Duration::from_secs(60),
        &[&a, &wa, &w2],
        "a trial to complete",
        |s| s.completed >= 1,
    )
    .await;
    let metrics_a = http_get(&ma, "/metrics").expect("metrics A");
    assert_eq!(
        metric(&metrics_a, "sigsweep_leader"),
        Some(1.0),
        "{metrics_a}"
    );
    assert!(
        metric(&metrics_a, "sigsweep_trials_completed").unwrap_or(0.0) >= 1.0,
        "{metrics_a}"
    );
    assert!(
        metric(&metrics_a, "sigsweep_workers_live").is_some(),
        "{metrics_a}"
    );

    a.kill9();
    let s = wait_finished(&url_b, &id, Duration::from_secs(120), &[&b, &wa, &w2]).await;
    assert_eq!(s.completed, 4, "{s:?}");
    assert_eq!(
        health(&hb, "sigsweep.v1.SweepService").await.ok(),
        Some(SERVING)
    );
    let rows = results(&url_b, &id).await;
    assert_one_result_per_trial(&rows, 4);
    assert_all_completed(&rows);
    drop(proxy);
}

// ------------------------------------------------------------ fault tolerance

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_trial_is_leased_again_and_completes_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (coord, url) = embedded_coordinator(dir.path());
    let sweep = sweep_file(
        dir.path(),
        "killw",
        2,
        20,
        20000,
        "modality_hidden = [2, 8]",
        "",
    );
    let id = submit(&url, &sweep, &[&coord]).await;
    let mut doomed = worker(dir.path(), "doomed", &url);
    wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        &[&coord, &doomed],
        "a running trial",
        |s| s.running >= 1,
    )
    .await;
    doomed.kill9();
    let survivor = worker(dir.path(), "survivor", &url);
    let s = wait_finished(&url, &id, Duration::from_secs(120), &[&coord, &survivor]).await;
    assert_eq!((s.completed, s.failed), (4, 0), "{s:?}");
    let rows = results(&url, &id).await;
    assert_one_result_per_trial(&rows, 4);
    assert_all_completed(&rows);
    assert!(
        rows.iter().any(|r| r.worker.contains("survivor")),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_coordinator_restarted_on_its_store_finishes_the_sweep() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = EtcdProcess::start().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut first = coordinator(
        dir.path(),
        "coord-1",
        port,
        &etcd.url(),
        &["--election-ttl", "2s"],
    );
    let sweep = sweep_file(
        dir.path(),
        "killc",
        2,
        20,
        20000,
        "modality_hidden = [2, 8]",
        "",
    );
    let id = submit(&url, &sweep, &[&first]).await;
    let w = worker(dir.path(), "w", &url);
    wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        &[&first, &w],
        "a completed trial",
        |s| s.completed >= 1,
    )
    .await;
    first.kill9();
    let second = coordinator(
        dir.path(),
        "coord-2",
        port,
        &etcd.url(),
        &["--election-ttl", "2s"],
    );
    let s = wait_finished(&url, &id, Duration::from_secs(120), &[&second, &w]).await;
    assert_eq!(s.completed, 4, "{s:?}");
    let rows = results(&url, &id).await;
    assert_one_result_per_trial(&rows, 4);
    assert_all_completed(&rows);

    // Once more, with the sweep finished: the restarted coordinator still
    // serves it (status, list, results), exactly one result per trial.
    let mut second = second;
    second.kill9();
    let third = coordinator(
        dir.path(),
        "coord-3",
        port,
        &etcd.url(),
        &["--election-ttl", "2s"],
    );
    let s = wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        &[&third],
        "the finished sweep served after a restart",
        |s| s.completed == 4,
    )
    .await;
    assert_eq!((s.total, s.completed, s.failed), (4, 4, 0), "{s:?}");
    assert_eq!(s.state, pb::SweepState::Finished as i32, "{s:?}");
    let listed = list_sweeps(&url).await;
    assert!(listed.iter().any(|s| s.sweep_id == id), "{listed:?}");
    let rows = results(&url, &id).await;
    assert_one_result_per_trial(&rows, 4);
    assert_all_completed(&rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_and_workers_recover_from_a_frozen_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = EtcdProcess::start().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut coord = coordinator(
        dir.path(),
        "coordinator",
        port,
        &etcd.url(),
        &["--election-ttl", "3s"],
    );
    let sweep = sweep_file(
        dir.path(),
        "freeze",
        2,
        20,
        20000,
        "modality_hidden = [2, 8]",
        "",
    );
    let id = submit(&url, &sweep, &[&coord]).await;
    let w = worker(dir.path(), "w", &url);
    wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        &[&coord, &w],
        "a running trial",
        |s| s.running >= 1,
    )
    .await;
    etcd.pause();
    tokio::time::sleep(Duration::from_secs(10)).await;
    etcd.resume();
    let s = wait_finished(&url, &id, Duration::from_secs(120), &[&coord, &w]).await;
    assert_eq!(s.completed, 4, "{s:?}");
    assert!(
        coord.exited().is_none(),
        "the coordinator survived\n{}",
        coord.log()
    );
    let log = std::fs::read_to_string(&coord.log_path).unwrap_or_default();
    assert!(
        log.contains("back to standby"),
        "leadership was lost while etcd was frozen\n{}",
        coord.log()
    );
    let rows = results(&url, &id).await;
    assert_one_result_per_trial(&rows, 4);
    assert_all_completed(&rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deterministic_failure_is_retried_max_retries_times_then_failed_and_left_unpaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (coord, url) = embedded_coordinator(dir.path());
    // lr = 1e30 makes the loss non-finite in the first epoch.
    let sweep = sweep_file(
        dir.path(),
        "nan",
        2,
        2,
        128,
        "lr = [0.005, 1e30]",
        "[resources]\nmax_retries = 1\n",
    );
    let id = submit(&url, &sweep, &[&coord]).await;
    let w = worker(dir.path(), "w", &url);
    let s = wait_finished(&url, &id, Duration::from_secs(120), &[&coord, &w]).await;
    assert_eq!((s.completed, s.failed), (2, 2), "{s:?}");
    let rows = results(&url, &id).await;
    assert_one_result_per_trial(&rows, 4);
    for r in &rows {
        let huge_lr = r.config.iter().any(|p| {
            p.name == "lr" && matches!(p.value.as_ref().and_then(|v| v.kind.as_ref()), Some(pb::param_value::Kind::Float(x)) if *x > 1.0)
        });
        if huge_lr {
            assert_eq!(r.outcome, pb::TrialOutcome::Failed as i32, "{r:?}");
            assert!(r.attempts <= 2, "at most 1 + max_retries attempts: {r:?}");
            assert!(
                r.failure.to_lowercase().contains("finite")
                    || r.failure.to_lowercase().contains("nan"),
                "{r:?}"
            );
        } else {
            assert_eq!(r.outcome, pb::TrialOutcome::Completed as i32, "{r:?}");
        }
    }
    // The report only pairs seeds present on both sides: the failed
    // configuration has none, so it is reported without a paired test.
    let out = sigsweep(&["report", &id, "--coordinator", &url, "--format", "json"]);
    assert!(out.status.success(), "{}\n{}", text(&out), coord.log());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report json");
    let rows = report["tables"][0]["rows"].as_array().expect("report rows");
    let failed_row = rows
        .iter()
        .find(|r| {
            r["config_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("lr=1e"))
        })
        .expect("the failed configuration has a row");
    assert_eq!(failed_row["comparison"]["n_pairs"], 0, "{failed_row}");
    assert_eq!(
        failed_row["comparison"]["excluded_seeds"],
        serde_json::json!([0, 1]),
        "{failed_row}"
    );
    let failures = report["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures.iter().all(|f| f["reason"]
            .as_str()
            .is_some_and(|r| r.contains("NaN") || r.contains("finite"))),
        "{failures:?}"
    );
}

// --------------------------------------------------------------- helpers

/// A coordinator started by this binary checks every configuration as the
/// models read it at submit, for any client (not only the CLI, which checks
/// first): `INVALID_ARGUMENT` naming the line and key, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_a_model_refuses_is_invalid_for_any_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (coord, url) = embedded_coordinator(dir.path());
    let source = "name = \"odd\"\nseeds = 1\nbaseline = { hidden = 16 }\n[model]\nname = \"mmic\"\n\
                  [dataset]\nkind = \"synthetic\"\ngenerator = \"erc\"\n[training]\nepochs = 1\n\
                  batch_size = 4\nlr = 0.001\n[grid]\nhidden = [16, 15]\n[metrics]\n\
                  select = \"accuracy\"\nreport = { accuracy = \"max\" }\n";
    let deadline = Instant::now() + Duration::from_secs(60);
    let err = loop {
        let reply = client(&url)
            .await
            .submit_sweep(pb::SubmitSweepRequest {
                sweep_toml: source.to_string(),
                source_name: "odd.toml".into(),
            })
            .await;
        match reply {
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break other.expect_err("refused"),
        }
    };
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{err}\n{}",
        coord.log()
    );
    assert!(
        err.message()
            .contains("odd.toml:14:1: key `grid.hidden`: must be even (two directions)"),
        "{err}"
    );
    assert!(list_sweeps(&url).await.is_empty(), "nothing stored");
}
