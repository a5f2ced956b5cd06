//! `sigsweep coordinator`: a long-running coordinator server.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use sigsweep_coordinator::store::{Catalog, EmbeddedStore, Store};
use sigsweep_coordinator::{Coordinator, CoordinatorConfig};

use crate::cli::CoordinatorArgs;

/// Opens the store named by `--store`.
pub fn open_store(spec: &str) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(dir) = spec.strip_prefix("embedded:") {
        let path = std::path::Path::new(dir).join("state.redb");
        let store = EmbeddedStore::open(&path)
            .with_context(|| format!("cannot open the embedded store at {}", path.display()))?;
        return Ok(Arc::new(store));
    }
    if spec.starts_with("etcd://") {
        bail!("the etcd store is not available in this build yet (use --store embedded:DIR)");
    }
    bail!("invalid --store `{spec}`: expected embedded:DIR or etcd://HOST:PORT[,HOST:PORT…]")
}

pub async fn run(args: CoordinatorArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(&args.store)?;
    let description = store.describe();
    let coordinator = Coordinator::start(
        Catalog::new(store),
        CoordinatorConfig {
            lease_ttl: args.lease_ttl,
            max_acquire_wait: Duration::from_secs(5),
        },
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, store = %description, "coordinator serving");
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::info!("signal received: shutting down");
        signal.cancel();
    });
    sigsweep_coordinator::server::serve(listener, coordinator, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
