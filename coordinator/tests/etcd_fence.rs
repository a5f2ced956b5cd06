//! Fencing a deposed leader, against a real etcd: once a leader's election
//! key is gone (lease revoked or expired, key deleted) etcd refuses the
//! writes of its fenced store with `StoreError::Fenced` — even when the
//! leader has not noticed yet — while the new leader's writes succeed; a
//! refused write ends the term in `run_leader_loop`.

use sigsweep_testkit::etcd as etcd_harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_harness::EtcdProcess;
use sigsweep_coordinator::election::{Fence, campaign, run_leader_loop};
use sigsweep_coordinator::store::{EtcdOptions, EtcdStore, Precondition, Store, StoreError};
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const NAME: &str = "/sigsweep-test/fence/coordinator";
const TTL: Duration = Duration::from_secs(2);

async fn store(etcd: &EtcdProcess) -> EtcdStore {
    EtcdStore::connect(&etcd.url(), EtcdOptions::default())
        .await
        .expect("connect")
}

/// The same fence as `fence`, as seen by a leader that has not noticed
/// anything yet (say, it was paused): not deposed locally.
fn unaware(fence: &Fence) -> Fence {
    Fence::new(fence.key(), fence.revision(), CancellationToken::new())
}

#[tokio::test]
async fn a_deposed_leaders_writes_are_fenced_while_the_new_leaders_succeed() {
    let etcd = EtcdProcess::start().await;
    let shared = store(&etcd).await;
    let a = campaign(shared.client(), NAME, "a", TTL)
        .await
        .expect("a leads");
    let a_store = shared.with_fence(a.fence());
    let v1 = a_store
        .put("sweeps/s", b"from a".to_vec(), Precondition::Absent)
        .await
        .expect("the leader writes");
    // The fence leaves CAS alone: a failed precondition is a conflict.
    let err = a_store
        .put("sweeps/s", b"again".to_vec(), Precondition::Absent)
        .await
        .expect_err("absent");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let err = a_store
        .delete("sweeps/s", Precondition::Version(v1 + 100))
        .await
        .expect_err("stale");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(!a.fence().is_deposed());

    // A is frozen: its view of leadership is stale, and its lease is
    // revoked (what expiry does) behind its back. B takes over.
    let stale = unaware(&a.fence());
    let a_frozen = shared.with_fence(stale.clone());
    let mut leases = shared.client().lease_client();
    leases.revoke(a.lease_id()).await.expect("revoke a's lease");
    let b = tokio::time::timeout(TTL * 3, campaign(shared.client(), NAME, "b", TTL))
        .await
        .expect("b leads once a's key is gone")
        .expect("campaign");
    let b_store = shared.with_fence(b.fence());

    // A wakes up with writes in flight: etcd refuses every one, whatever
    // its precondition, and the fence is deposed.
    let current = shared.get("sweeps/s").await.expect("get").expect("present");
    let err = a_frozen
        .put(
            "sweeps/s",
            b"late a".to_vec(),
            Precondition::Version(current.version),
        )
        .await
        .expect_err("fenced");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert!(err.to_string().contains("no longer the leader"), "{err}");
    assert!(stale.is_deposed(), "a refused write deposes the fence");
    let err = a_frozen
        .put("sweeps/late", b"x".to_vec(), Precondition::Absent)
        .await
        .expect_err("fenced");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    let err = a_frozen
        .delete("sweeps/s", Precondition::None)
        .await
        .expect_err("fenced");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    // Both failing (stale version and lost fence): fenced wins.
    let err = unaware_store(&shared, &a)
        .put("sweeps/s", b"x".to_vec(), Precondition::Version(1))
        .await
        .expect_err("fenced");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert_eq!(
        shared.get("sweeps/s").await.expect("get").expect("present"),
        current,
        "no write of the deposed leader landed"
    );
    assert!(shared.get("sweeps/late").await.expect("get").is_none());

    // B writes, with CAS as usual.
    let v = b_store
        .put(
            "sweeps/s",
            b"from b".to_vec(),
            Precondition::Version(current.version),
        )
        .await
        .expect("the new leader writes");
    b_store
        .put("sweeps/b", b"b".to_vec(), Precondition::Absent)
        .await
        .expect("the new leader writes");
    let err = b_store
        .put(
            "sweeps/s",
            b"x".to_vec(),
            Precondition::Version(current.version),
        )
        .await
        .expect_err("stale");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    b_store
        .delete("sweeps/b", Precondition::None)
        .await
        .expect("the new leader deletes");
    assert_eq!(
        shared
            .get("sweeps/s")
            .await
            .expect("get")
            .map(|g| g.version),
        Some(v)
    );

    // A's own guard notices too (its lease is gone), and from then on its
    // store refuses writes without asking etcd.
    tokio::time::timeout(TTL * 2, a.lost())
        .await
        .expect("a's guard sees the lease gone");
    etcd.pause();
    let started = Instant::now();
    let err = a_store
        .put("sweeps/s", b"x".to_vec(), Precondition::None)
        .await
        .expect_err("fenced locally");
    etcd.resume();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500));
    b.resign().await.expect("resign");
}

fn unaware_store(
    shared: &EtcdStore,
    guard: &sigsweep_coordinator::election::LeaderGuard,
) -> EtcdStore {
    shared.with_fence(unaware(&guard.fence()))
}

/// Deleting the leader key (an operator, or etcd expiring it) also fences,
/// and a fenced write ends the term at once: `run_leader_loop` goes back to
/// campaigning, wins a new term with a new fence, and that one writes.
#[tokio::test]
async fn a_fenced_write_ends_the_term_and_the_next_term_writes() {
    let etcd = EtcdProcess::start().await;
    let shared = store(&etcd).await;
    let terms = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    // A long TTL: the leader key checker (every TTL/3) is too slow to be
    // what ends the first term.
    let ttl = Duration::from_secs(9);
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        run_leader_loop(
            shared.client(),
            NAME,
            "leader",
            ttl,
            shutdown.clone(),
            |stop, fence| {
                let (store, shared, terms, shutdown) = (
                    shared.with_fence(fence.clone()),
                    shared.clone(),
                    terms.clone(),
                    shutdown.clone(),
                );
                async move {
                    let term = terms.fetch_add(1, Ordering::SeqCst) + 1;
                    store
                        .put(&format!("terms/{term}"), vec![1], Precondition::Absent)
                        .await
                        .map_err(|e| format!("term {term}: {e}"))?;
                    if term == 1 {
                        // The key goes behind the leader's back.
                        let mut kv = shared.client().kv_client();
                        kv.delete(fence.key(), None).await.expect("delete key");
                        let err = store
                            .put("terms/late", vec![1], Precondition::None)
                            .await
                            .expect_err("fenced");
                        assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
                        tokio::time::timeout(Duration::from_millis(500), stop.cancelled())
                            .await
                            .expect("a fenced write ends the term at once");
                    } else {
                        shutdown.cancel();
                        stop.cancelled().await;
                    }
                    Ok::<(), BoxError>(())
                }
            },
        ),
    )
    .await
    .expect("the loop ends");
    outcome.expect("no error");
    assert_eq!(terms.load(Ordering::SeqCst), 2);
    assert!(shared.get("terms/1").await.expect("get").is_some());
    assert!(shared.get("terms/2").await.expect("get").is_some());
    assert!(shared.get("terms/late").await.expect("get").is_none());
}
