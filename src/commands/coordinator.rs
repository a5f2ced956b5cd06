//! `sigsweep coordinator`: a long-running coordinator server.
//!
//! Configuration is layered (see [`crate::config`]). With an embedded store
//! the process leads at once. With etcd it campaigns for leadership
//! ([`sigsweep_coordinator::election::run_leader_loop`]): while standby the
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
//! leadership is lost or shutdown. First SIGINT/SIGTERM: orderly shutdown
//! (resign leadership, stop serving); second: exit at once.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use sigsweep_coordinator::server::{self, LeaderSlot, ServerOptions, TlsSettings};
use sigsweep_coordinator::store::{
    Catalog, EmbeddedStore, EtcdCredentials, EtcdOptions, EtcdStore, EtcdTls, Store,
};
use sigsweep_coordinator::{Coordinator, CoordinatorConfig};

use crate::cli::CoordinatorArgs;
use crate::config::{self, CoordinatorSettings, FileConfig};

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
pub async fn open_etcd(url: &str, settings: &CoordinatorSettings) -> anyhow::Result<EtcdStore> {
    let credentials = match &settings.etcd_username {
        Some(username) => Some(EtcdCredentials {
            username: username.clone(),
            password: std::env::var("SIGSWEEP_ETCD_PASSWORD")
                .context("SIGSWEEP_ETCD_USERNAME is set but SIGSWEEP_ETCD_PASSWORD is not")?,
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

/// What the settings ask for, checked: files read, addresses parsed.
struct Plan {
    listen: String,
    health_listen: Option<String>,
    metrics_listen: Option<String>,
    store: String,
    lease_ttl: Duration,
    election_ttl: Duration,
    advertise: String,
    options: ServerOptions,
}

fn plan(s: &CoordinatorSettings) -> anyhow::Result<Plan> {
    let listen = s.listen.clone().unwrap_or_else(|| "127.0.0.1:50051".into());
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
    if tls.is_none() && !s.insecure.unwrap_or(false) && !is_loopback_listen(&listen) {
        bail!(
            "refusing to serve plaintext gRPC on the non-loopback address {listen}: configure --tls-cert/--tls-key, or pass --insecure (SIGSWEEP_INSECURE=true) to accept plaintext"
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
        None => server::Auth::default().allow_unauthenticated(s.insecure.unwrap_or(false)),
    };
    Ok(Plan {
        listen,
        health_listen: s.health_listen.clone(),
        metrics_listen: s.metrics_listen.clone(),
        store: s
            .store
            .clone()
            .unwrap_or_else(|| "embedded:./sigsweep-state/coordinator".into()),
        lease_ttl: s.lease_ttl.unwrap_or(Duration::from_secs(30)),
        election_ttl: s.election_ttl.unwrap_or(Duration::from_secs(10)),
        advertise: s.advertise.clone().unwrap_or_else(config::default_name),
        options: ServerOptions { tls, auth },
    })
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

pub async fn run(args: CoordinatorArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => Some(FileConfig::load(path)?.coordinator),
        None => None,
    };
    let settings = config::resolve(args.settings, file, CoordinatorSettings::defaults());
    if args.print_config {
        print!(
            "{}",
            toml::to_string(&FileConfig {
                coordinator: settings,
                ..FileConfig::default()
            })?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let plan = plan(&settings)?;
    match server::raise_open_files_limit() {
        Ok(limit) => tracing::info!(limit, "open files limit (one per worker connection)"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }

    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::info!("signal received: shutting down (send again to exit now)");
        signal.cancel();
        super::shutdown_signal().await;
        std::process::exit(130);
    });

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
    if let Some(addr) = &plan.health_listen {
        let listener = bind("health", addr).await?;
        let health = server::health_service(&reporter);
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            server::serve_health(listener, health, shutdown)
                .await
                .context("health server failed")
        });
    }
    if let Some(addr) = &plan.metrics_listen {
        let listener = bind("metrics", addr).await?;
        let (slot, shutdown) = (slot.clone(), shutdown.clone());
        tasks.spawn(async move {
            server::metrics::serve_metrics(listener, slot, shutdown).await;
            Ok(())
        });
    }
    let listener = bind("grpc", &plan.listen).await?;
    {
        let (slot, options, shutdown) = (slot.clone(), plan.options.clone(), shutdown.clone());
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
        store = %plan.store,
        tls = plan.options.tls.is_some(),
        mutual_tls = plan.options.tls.as_ref().is_some_and(|t| t.client_ca_pem.is_some()),
        etcd_tls = plan.store.starts_with("etcds://")
            || settings.etcd_ca.is_some()
            || settings.etcd_cert.is_some()
            || settings.etcd_key.is_some(),
        "coordinator starting"
    );

    let config = CoordinatorConfig {
        lease_ttl: plan.lease_ttl,
        max_acquire_wait: Duration::from_secs(5),
    };
    let outcome = if is_etcd_url(&plan.store) {
        let etcd = open_etcd(&plan.store, &settings).await?;
        // Connections are lazy: say early if etcd does not answer (down, or
        // a TLS mismatch, which the error explains); campaigning retries.
        if let Err(e) = etcd.ping().await {
            tracing::warn!(error = %e, "etcd does not answer yet; campaigning anyway");
        }
        let client = etcd.client();
        tracing::info!(store = %etcd.describe(), candidate = %plan.advertise, "campaigning for leadership");
        sigsweep_coordinator::election::run_leader_loop(
            client,
            ELECTION_NAME,
            &plan.advertise,
            plan.election_ttl,
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
        let store = open_store(&plan.store)?;
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
    result.map(|()| ExitCode::SUCCESS)
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
