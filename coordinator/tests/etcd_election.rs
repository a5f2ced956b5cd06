//! Leader election against a real etcd: one leader at a time, a standby
//! takes over after the leader resigns or stops renewing its lease, and a
//! leader cut off from etcd gives up before its lease can expire.

use sigsweep_testkit::etcd as etcd_harness;

use std::time::{Duration, Instant};

use etcd_harness::EtcdProcess;
use sigsweep_coordinator::election::{campaign, current_leader};

const NAME: &str = "/sigsweep-test/election/coordinator";
const TTL: Duration = Duration::from_secs(2);

async fn client(etcd: &EtcdProcess) -> etcd_client::Client {
    etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("connect")
}

#[tokio::test]
async fn standby_takes_over_after_resign_and_after_crash() {
    let etcd = EtcdProcess::start().await;
    let first = campaign(client(&etcd).await, NAME, "first", TTL)
        .await
        .expect("first leads");
    assert!(first.is_leader());
    assert_eq!(
        current_leader(&client(&etcd).await, NAME)
            .await
            .expect("leader")
            .as_deref(),
        Some("first")
    );

    // The second candidate waits while the first leads.
    let second = tokio::spawn({
        let c = client(&etcd).await;
        async move { campaign(c, NAME, "second", TTL).await }
    });
    tokio::time::sleep(TTL * 2).await;
    assert!(!second.is_finished(), "second must wait while first leads");
    assert!(first.is_leader(), "first keeps its lease alive");

    // Resigning hands over at once.
    let lost = first.lost();
    let started = Instant::now();
    first.resign().await.expect("resign");
    tokio::time::timeout(Duration::from_secs(1), lost)
        .await
        .expect("lost fires on resign");
    let second = tokio::time::timeout(Duration::from_secs(2), second)
        .await
        .expect("second leads soon after resign")
        .expect("join")
        .expect("campaign");
    eprintln!("takeover after resign: {:?}", started.elapsed());
    assert_eq!(
        current_leader(&client(&etcd).await, NAME)
            .await
            .expect("leader")
            .as_deref(),
        Some("second")
    );

    // A third waits; the second "crashes" (drops the guard: no resign, the
    // lease just stops being renewed) and the third leads within ~TTL.
    let third = tokio::spawn({
        let c = client(&etcd).await;
        async move { campaign(c, NAME, "third", TTL).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished());
    let started = Instant::now();
    drop(second);
    let third = tokio::time::timeout(TTL * 3, third)
        .await
        .expect("third leads within the TTL")
        .expect("join")
        .expect("campaign");
    let took = started.elapsed();
    eprintln!("takeover after crash: {took:?}");
    assert!(third.is_leader());
    third.resign().await.expect("resign");
}

#[tokio::test]
async fn leader_cut_off_from_etcd_gives_up_before_its_lease_expires() {
    let etcd = EtcdProcess::start().await;
    let leader = campaign(client(&etcd).await, NAME, "leader", TTL)
        .await
        .expect("leads");
    let started = Instant::now();
    etcd.pause();
    tokio::time::timeout(TTL * 2, leader.lost())
        .await
        .expect("lost fires when the lease cannot be renewed");
    let took = started.elapsed();
    etcd.resume();
    assert!(took < TTL, "gave up after {took:?}, not before the TTL");
    assert!(!leader.is_leader());
}

#[tokio::test]
async fn deleting_the_leader_key_ends_leadership() {
    let etcd = EtcdProcess::start().await;
    let leader = campaign(client(&etcd).await, NAME, "leader", TTL)
        .await
        .expect("leads");
    let mut c = client(&etcd).await;
    c.delete(
        format!("{NAME}/"),
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await
    .expect("delete");
    tokio::time::timeout(TTL * 2, leader.lost())
        .await
        .expect("lost fires when the key disappears");
}
