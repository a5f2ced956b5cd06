//! A coordinator node: opens the store, campaigns for leadership (etcd),
//! serves, and runs the task set until shutdown: [`run`].
//!
//! With an embedded store
//! the process leads at once. With etcd it campaigns for leadership
//! ([`crate::election::run_leader_loop`]): while standby the
//! sweep and worker services answer `UNAVAILABLE` (clients reconnect, a
//! load balancer lands them on the leader) and the health port reports
//! `sigsweep.v1.SweepService` not serving; on winning, state is reloaded
//! from etcd ([`Coordinator::start`]); on losing, the process stops acting
//! as leader at once and campaigns again. Every store write of a term is
//! fenced by its election key ([`EtcdStore::with_fence`]): etcd refuses the
//! writes of a deposed leader, even late ones, and a refused write ends the
//! term like a lost lease does.
//!
//! Tasks and their policies: the gRPC server, the health server and the
//! metrics responder run until shutdown; a failing gRPC server ends the
//! process (with an error); the leader term runs lease expiry until
//! leadership is lost or `shutdown` (resign leadership, stop serving).

mod config;
mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::server::{self, LeaderSlot, ServerOptions, TlsSettings};
use crate::store::{
    Catalog, EmbeddedStore, EtcdCredentials, EtcdOptions, EtcdStore, EtcdTls, Store,
};
use crate::{Coordinator, CoordinatorConfig};

pub use config::{NodeConfig, default_name};
pub use settings::CoordinatorSettings;

/// The etcd election every coordinator of an installation campaigns in.
pub const ELECTION_NAME: &str = "/sigsweep-election/coordinator";

/// Opens an embedded store (`embedded:DIR`).
pub fn open_store(spec: &str) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(dir) = spec.strip_prefix("embedded:") {
        let path = std::path::Path::new(dir).join("state.redb");
        let store = EmbeddedStore::open(&path)
            .with_context(|| format!("cannot open the embedded store at {}", path.display()))?;
        return Ok(Arc::new(store));
    }
    if is_etcd_url(spec) {
        bail!("open etcd stores with open_etcd");
    }
    bail!(
        "invalid --store `{spec}`: expected embedded:DIR, etcd://HOST:PORT[,HOST:PORT…] or etcds://HOST:PORT[,HOST:PORT…] (TLS)"
    )
}

/// Whether `--store` names etcd (`etcd://`, or `etcds://` for TLS).
fn is_etcd_url(spec: &str) -> bool {
    spec.starts_with("etcd://") || spec.starts_with("etcds://")
}

/// Connects to etcd with the credentials and TLS files of `settings` (the
/// password from `SIGSWEEP_ETCD_PASSWORD`). Any of `--etcd-ca`,
/// `--etcd-cert`, `--etcd-key` switches the connection to TLS (the CA is
/// required; the certificate and key, for mutual TLS, go together).
pub async fn open_etcd(url: &str, settings: &NodeConfig) -> anyhow::Result<EtcdStore> {
    let credentials = match &settings.etcd_username {
        Some(username) => Some(EtcdCredentials {
            username: username.clone(),
            password: settings
                .etcd_password
                .clone()
                .context("an etcd user is set but no password (SIGSWEEP_ETCD_PASSWORD)")?,
        }),
        None => None,
    };
    let tls =
        (settings.etcd_ca.is_some() || settings.etcd_cert.is_some() || settings.etcd_key.is_some())
            .then(|| EtcdTls {
                ca: settings.etcd_ca.clone(),
                cert: settings.etcd_cert.clone(),
                key: settings.etcd_key.clone(),
            });
    let options = EtcdOptions {
        credentials,
        tls,
        ..EtcdOptions::default()
    };
    EtcdStore::connect(url, options)
        .await
        .with_context(|| format!("cannot connect to etcd at {url}"))
}

/// The server options the configuration asks for, checked: files read.
fn server_options(s: &NodeConfig) -> anyhow::Result<ServerOptions> {
    let tls = match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => Some(TlsSettings {
            cert_pem: std::fs::read(cert)
                .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?,
            key_pem: std::fs::read(key)
                .with_context(|| format!("cannot read the TLS key {}", key.display()))?,
            client_ca_pem: match &s.tls_ca {
                Some(ca) => Some(
                    std::fs::read(ca)
                        .with_context(|| format!("cannot read the TLS CA {}", ca.display()))?,
                ),
                None => None,
            },
        }),
        (None, None) if s.tls_ca.is_some() => {
            bail!("--tls-ca (client CA for mutual TLS) needs --tls-cert and --tls-key")
        }
        (None, None) => None,
        _ => bail!("TLS needs both --tls-cert and --tls-key"),
    };
    if tls.is_none() && !s.insecure && !is_loopback_listen(&s.listen) {
        bail!(
            "refusing to serve plaintext gRPC on the non-loopback address {}: configure --tls-cert/--tls-key, or pass --insecure (SIGSWEEP_INSECURE=true) to accept plaintext",
            s.listen
        );
    }
    let auth = match &s.token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            if token.trim().is_empty() {
                bail!("the token file {} is empty", path.display());
            }
            server::Auth::with_token(&token)
        }
        // Without a token, non-loopback callers are refused unless the
        // operator accepts unauthenticated clients with --insecure (or
        // mutual TLS authenticates them).
        None => server::Auth::default().allow_unauthenticated(s.insecure),
    };
    let mutual = tls.as_ref().is_some_and(|t| t.client_ca_pem.is_some());
    if s.allow_command && !auth.has_token() && !mutual {
        tracing::warn!(
            listen = %s.listen,
            "--allow-command without a token or mutual TLS: whoever reaches this port ({}) may run code on the workers; configure --token-file",
            if s.insecure {
                "with --insecure, anyone on the network"
            } else {
                "on loopback, every user of this machine"
            }
        );
    }
    Ok(ServerOptions { tls, auth })
}

/// Whether `listen` binds loopback only (`localhost:PORT`, `127.x`, `[::1]`).
fn is_loopback_listen(listen: &str) -> bool {
    match listen.parse::<SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => listen
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

async fn bind(what: &str, addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let resolved = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr} ({what})"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address ({what})"))?;
    let listener = server::bind(resolved)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what})"))?;
    tracing::info!(listen = %listener.local_addr()?, what, "listening");
    Ok(listener)
}

/// Runs a coordinator node until `shutdown` (or until its gRPC server
/// fails): the store, the election (etcd), the gRPC, health and metrics
/// servers, and lease expiry while leading.
pub async fn run(
    settings: NodeConfig,
    check_settings: Option<crate::sweep::SettingsCheck>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let options = server_options(&settings)?;
    match server::raise_open_files_limit() {
        Ok(limit) => tracing::info!(limit, "open files limit (one per worker connection)"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }

    let slot = LeaderSlot::new();
    let reporter = server::HealthReporter::new();
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    {
        let (slot, reporter, shutdown) = (slot.clone(), reporter.clone(), shutdown.clone());
        tasks.spawn(async move {
            server::track_health(slot, reporter, shutdown).await;
            Ok(())
        });
    }
    if let Some(addr) = &settings.health_listen {
        let listener = bind("health", addr).await?;
        let health = server::health_service(&reporter);
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            server::serve_health(listener, health, shutdown)
                .await
                .context("health server failed")
        });
    }
    if let Some(addr) = &settings.metrics_listen {
        let listener = bind("metrics", addr).await?;
        let (slot, auth, shutdown) = (slot.clone(), options.auth.clone(), shutdown.clone());
        tasks.spawn(async move {
            server::metrics::serve_metrics(listener, slot, auth, shutdown).await;
            Ok(())
        });
    }
    let listener = bind("grpc", &settings.listen).await?;
    {
        let (slot, options, shutdown) = (slot.clone(), options.clone(), shutdown.clone());
        let health = server::health_service(&reporter);
        tasks.spawn(async move {
            let result = server::serve_slot(listener, slot, options, health, shutdown.clone())
                .await
                .context("gRPC server failed");
            shutdown.cancel();
            result
        });
    }
    tracing::info!(
        store = %settings.store,
        tls = options.tls.is_some(),
        mutual_tls = options.tls.as_ref().is_some_and(|t| t.client_ca_pem.is_some()),
        etcd_tls = settings.store.starts_with("etcds://")
            || settings.etcd_ca.is_some()
            || settings.etcd_cert.is_some()
            || settings.etcd_key.is_some(),
        "coordinator starting"
    );

    let config = CoordinatorConfig {
        lease_ttl: settings.lease_ttl,
        max_acquire_wait: settings.max_acquire_wait,
        allow_command: settings.allow_command,
        check_settings,
        ..CoordinatorConfig::default()
    };
    let outcome = if is_etcd_url(&settings.store) {
        let etcd = open_etcd(&settings.store, &settings).await?;
        // Connections are lazy: say early if etcd does not answer (down, or
        // a TLS mismatch, which the error explains); campaigning retries.
        if let Err(e) = etcd.ping().await {
            tracing::warn!(error = %e, "etcd does not answer yet; campaigning anyway");
        }
        let client = etcd.client();
        tracing::info!(store = %etcd.describe(), candidate = %settings.advertise, "campaigning for leadership");
        crate::election::run_leader_loop(
            client,
            ELECTION_NAME,
            &settings.advertise,
            settings.election_ttl,
            shutdown.clone(),
            |stop, fence| {
                // This term's writes require its election key: a deposed
                // leader's late writes are refused, and a refusal ends the term.
                let store: Arc<dyn Store> = Arc::new(etcd.with_fence(fence));
                lead(store, config.clone(), slot.clone(), stop)
            },
        )
        .await
    } else {
        let store = open_store(&settings.store)?;
        tracing::info!(store = %store.describe(), "store opened");
        lead(store, config, slot.clone(), shutdown.clone()).await
    };
    shutdown.cancel();
    let mut result = outcome;
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(e)) = joined
            && result.is_ok()
        {
            result = Err(e);
        }
    }
    result
}

/// One term as leader: loads the state from the store (retrying while it
/// is unreachable), serves through `slot` and runs lease expiry until
/// `stop`, then stops serving.
async fn lead(
    store: Arc<dyn Store>,
    config: CoordinatorConfig,
    slot: LeaderSlot,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let coordinator = loop {
        let started = tokio::select! {
            started = Coordinator::start(Catalog::new(store.clone()), config.clone()) => started,
            () = stop.cancelled() => return Ok(()),
        };
        match started {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the coordinator state; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => return Ok(()),
                }
            }
        }
    };
    let sweeps = coordinator.list().len();
    slot.promote(coordinator.clone());
    tracing::info!(sweeps, "leading: serving requests");
    coordinator.run_expiry(stop).await;
    slot.demote();
    tracing::info!("no longer leading: requests answer UNAVAILABLE");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_listen;

    #[test]
    fn loopback_listen_addresses() {
        assert!(is_loopback_listen("127.0.0.1:50051"));
        assert!(is_loopback_listen("[::1]:1"));
        assert!(is_loopback_listen("localhost:1"));
        assert!(!is_loopback_listen("0.0.0.0:50051"));
        assert!(!is_loopback_listen("10.0.0.1:1"));
    }
}
