//! Every sweep in the store is served after a coordinator restart — finished,
//! cancelled and running alike — on both stores: ListSweeps, GetSweep,
//! WatchSweep (a finished sweep's watch ends at once) and ListResults, with
//! exact counts.

use sigsweep_testkit::etcd as etcd_harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sigsweep_coordinator::service::{Completion, SweepRunState, WorkerCaps};
use sigsweep_coordinator::store::{Catalog, EmbeddedStore, EtcdOptions, EtcdStore, Store};
use sigsweep_coordinator::{Coordinator, CoordinatorConfig};

/// Sweeps with distinct `lr`, so that they share no trial (a trial's id is
/// its fixed settings, configuration and seed).
fn sweep(name: &str, seeds: u32) -> String {
    let lr = 0.01 * f64::from(seeds);
    format!(
        r#"name = "{name}"
seeds = {seeds}
baseline = {{ hidden = 1 }}
[model]
name = "late-fusion"
[dataset]
kind = "synthetic"
generator = "fusion"
[training]
epochs = 1
batch_size = 4
lr = {lr}
[grid]
hidden = [1, 2]
[metrics]
select = "accuracy"
report = {{ accuracy = "max" }}
"#
    )
}

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        lease_ttl: Duration::from_secs(10),
        max_acquire_wait: Duration::from_millis(20),
        allow_command: false,
        ..CoordinatorConfig::default()
    }
}

/// Runs every trial of `sweep_id` to completion (`limit` trials at most).
async fn finish(c: &Coordinator, limit: usize) -> usize {
    let reg = c.register("w", WorkerCaps::default()).expect("register");
    let mut done = 0;
    while done < limit {
        let Some(a) = c
            .acquire(&reg.worker_id, reg.generation, Duration::ZERO)
            .await
            .expect("acquire")
        else {
            break;
        };
        let m = BTreeMap::from([("accuracy".to_string(), 0.5 + a.trial.seed as f64 / 100.0)]);
        assert!(
            c.complete(Completion {
                worker_id: reg.worker_id.clone(),
                generation: reg.generation,
                lease_id: a.lease_id.clone(),
                trial_id: a.trial.trial_id.clone(),
                test_metrics: m.clone(),
                valid_metrics: m,
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
        );
        done += 1;
    }
    done
}

/// Submits a finished, a cancelled and a half-run sweep, restarts the
/// coordinator over the same store (`open` opens it again), and reads
/// everything back.
async fn survives_a_restart<S: Store + 'static>(open: impl AsyncFnMut() -> S) {
    let mut open = open;
    let c = Coordinator::start(Catalog::new(Arc::new(open().await)), config())
        .await
        .expect("start");
    let finished = c
        .submit(&sweep("done", 3), "done.toml")
        .await
        .expect("submit");
    assert_eq!(finish(&c, usize::MAX).await, 6);
    assert_eq!(
        c.progress(&finished.sweep_id).expect("p").state,
        SweepRunState::Finished
    );
    let cancelled = c
        .submit(&sweep("stopped", 2), "stopped.toml")
        .await
        .expect("submit");
    c.cancel(&cancelled.sweep_id).await.expect("cancel");
    let running = c
        .submit(&sweep("half", 4), "half.toml")
        .await
        .expect("submit");
    assert_eq!(finish(&c, 3).await, 3);
    drop(c);

    let c = Coordinator::start(Catalog::new(Arc::new(open().await)), config())
        .await
        .expect("restart");
    let listed: Vec<String> = c.list().into_iter().map(|p| p.sweep_id).collect();
    for id in [&finished.sweep_id, &cancelled.sweep_id, &running.sweep_id] {
        assert!(listed.contains(id), "{id} missing from {listed:?}");
    }
    assert_eq!(listed.len(), 3, "{listed:?}");

    let p = c
        .progress(&finished.sweep_id)
        .expect("finished sweep served");
    assert_eq!(
        (p.state, p.total, p.completed, p.failed),
        (SweepRunState::Finished, 6, 6, 0)
    );
    let results = c.results(&finished.sweep_id).await.expect("results");
    assert_eq!(results.len(), 6);
    let mut ids: Vec<_> = results.iter().map(|r| r.trial_id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 6, "one result per trial");
    // A finished sweep's watch starts at its terminal state.
    let w = c.watch(&finished.sweep_id).expect("watch");
    assert_eq!(w.borrow().state, SweepRunState::Finished);

    let p = c
        .progress(&cancelled.sweep_id)
        .expect("cancelled sweep served");
    assert_eq!(
        (p.state, p.total, p.completed, p.queued),
        (SweepRunState::Cancelled, 4, 0, 0)
    );
    assert!(
        c.results(&cancelled.sweep_id)
            .await
            .expect("results")
            .is_empty()
    );

    let p = c.progress(&running.sweep_id).expect("running sweep served");
    assert_eq!(
        (p.state, p.total, p.completed),
        (SweepRunState::Running, 8, 3)
    );
    assert_eq!(
        c.results(&running.sweep_id).await.expect("results").len(),
        3
    );
    // Only the running sweep's trials are queued again.
    assert_eq!(finish(&c, usize::MAX).await, 5);
    let p = c.progress(&running.sweep_id).expect("p");
    assert_eq!((p.state, p.completed), (SweepRunState::Finished, 8));
}

#[tokio::test]
async fn embedded_store_serves_every_sweep_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.redb");
    // The previous coordinator's store writer thread releases the file lock
    // once it has seen the last sender go: retry for a moment.
    survives_a_restart(async || {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match EmbeddedStore::open(&path) {
                Ok(store) => return store,
                Err(e) if std::time::Instant::now() > deadline => panic!("store: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
}

#[tokio::test]
async fn etcd_store_serves_every_sweep_after_a_restart() {
    let etcd = etcd_harness::EtcdProcess::start().await;
    let url = etcd.url();
    survives_a_restart(async || {
        EtcdStore::connect(&url, EtcdOptions::default())
            .await
            .expect("connect")
    })
    .await;
}
