//! An in-process coordinator on a free loopback port, over an embedded
//! store in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use sigsweep_coordinator::server::{self, LeaderSlot, ServerOptions};
use sigsweep_coordinator::store::{Catalog, EmbeddedStore};
use sigsweep_coordinator::{Coordinator, CoordinatorConfig};

/// A running node; cancel `shutdown` to stop it (`task` then ends).
pub struct Node {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub coordinator: Coordinator,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    pub dir: tempfile::TempDir,
}

/// Starts a coordinator (lease TTL 30 s, long polls of 200 ms) serving with
/// `options` (TLS, token) on port 0.
pub async fn start_node(options: ServerOptions) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path().join("state.redb")).expect("store");
    let coordinator = Coordinator::start(
        Catalog::new(Arc::new(store)),
        CoordinatorConfig {
            lease_ttl: Duration::from_secs(30),
            max_acquire_wait: Duration::from_millis(200),
            allow_command: false,
            ..CoordinatorConfig::default()
        },
    )
    .await
    .expect("start the coordinator");
    let listener = server::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let health = server::health_service(&server::HealthReporter::new());
    let task = tokio::spawn(server::serve_slot(
        listener,
        LeaderSlot::leading(coordinator.clone()),
        options,
        health,
        shutdown.clone(),
    ));
    Node {
        url,
        coordinator,
        shutdown,
        task,
        dir,
    }
}
