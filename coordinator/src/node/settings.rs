//! The settings of a coordinator node as flags, `SIGSWEEP_…` variables and
//! the `[coordinator]` table of a configuration file give them: every field
//! optional, so "not given" is visible; [`Layered`] fills what a layer left
//! unset from the one below, and [`CoordinatorSettings::resolve`] fills the
//! rest from [`NodeConfig::default`], the only copy of each default.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use sigsweep_types::duration;

use super::NodeConfig;

/// `sigsweep coordinator` settings (`[coordinator]` in the config file).
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorSettings {
    /// gRPC listen address [default: 127.0.0.1:50051]. A non-loopback
    /// address needs TLS (--tls-cert/--tls-key) or --insecure.
    #[arg(long, env = "SIGSWEEP_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Plaintext gRPC health (grpc.health.v1) listen address, for probes:
    /// service "" serves while the process is up, sigsweep.v1.SweepService
    /// only on the leader [default: off].
    #[arg(long, env = "SIGSWEEP_HEALTH_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_listen: Option<String>,
    /// Prometheus metrics listen address (plain HTTP, GET /metrics)
    /// [default: off].
    #[arg(long, env = "SIGSWEEP_METRICS_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Durable store: `embedded:DIR` or `etcd://HOST:PORT[,HOST:PORT…]`
    /// (`etcds://…`, or any of `--etcd-ca/--etcd-cert/--etcd-key`, for TLS)
    /// (etcd: leader election among coordinators)
    /// [default: embedded:./sigsweep-state/coordinator].
    #[arg(long, env = "SIGSWEEP_STORE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Trial lease TTL: a trial whose worker stops heartbeating is queued
    /// again after this long (e.g. 30s) [default: 30s].
    #[arg(long, value_parser = duration::parse, env = "SIGSWEEP_LEASE_TTL")]
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub lease_ttl: Option<Duration>,
    /// Leader election lease TTL (etcd store): a standby takes over within
    /// about this long after the leader dies [default: 10s].
    #[arg(long, value_parser = duration::parse, env = "SIGSWEEP_ELECTION_TTL")]
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub election_ttl: Option<Duration>,
    /// Candidate id in the leader election [default: host name and pid].
    #[arg(long, env = "SIGSWEEP_ADVERTISE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// TLS certificate chain (PEM) of the gRPC endpoint.
    #[arg(long, env = "SIGSWEEP_TLS_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of the gRPC endpoint.
    #[arg(long, env = "SIGSWEEP_TLS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) for client certificates: set ⇒ mutual TLS is required.
    #[arg(long, env = "SIGSWEEP_TLS_CA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// File holding the bearer token every call must carry (reads, submits,
    /// worker calls; a verified mTLS client certificate also suffices).
    /// Without one, only loopback clients are served unless --insecure.
    #[arg(long, env = "SIGSWEEP_TOKEN_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Allow plaintext gRPC on a non-loopback address and, without a token,
    /// serve unauthenticated non-loopback clients.
    #[arg(long, env = "SIGSWEEP_INSECURE", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Accept sweeps that run a training program (`[model] name =
    /// "command"`). Anyone who can submit then runs code on the workers.
    #[arg(long, env = "SIGSWEEP_ALLOW_COMMAND", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_command: Option<bool>,
    /// etcd user (the password comes from SIGSWEEP_ETCD_PASSWORD).
    #[arg(long, env = "SIGSWEEP_ETCD_USERNAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_username: Option<String>,
    /// CA (PEM) of the etcd servers (etcd TLS).
    #[arg(long, env = "SIGSWEEP_ETCD_CA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd.
    #[arg(long, env = "SIGSWEEP_ETCD_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd.
    #[arg(long, env = "SIGSWEEP_ETCD_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_key: Option<PathBuf>,
}

sigsweep_types::layered!(CoordinatorSettings {
    listen,
    health_listen,
    metrics_listen,
    store,
    lease_ttl,
    election_ttl,
    advertise,
    tls_cert,
    tls_key,
    tls_ca,
    token_file,
    insecure,
    allow_command,
    etcd_username,
    etcd_ca,
    etcd_cert,
    etcd_key,
});

impl CoordinatorSettings {
    /// Every setting at its default ([`NodeConfig::default`]).
    pub fn defaults() -> Self {
        let d = NodeConfig::default();
        Self {
            listen: Some(d.listen),
            health_listen: d.health_listen,
            metrics_listen: d.metrics_listen,
            store: Some(d.store),
            lease_ttl: Some(d.lease_ttl),
            election_ttl: Some(d.election_ttl),
            advertise: Some(d.advertise),
            tls_cert: d.tls_cert,
            tls_key: d.tls_key,
            tls_ca: d.tls_ca,
            token_file: d.token_file,
            insecure: Some(d.insecure),
            allow_command: Some(d.allow_command),
            etcd_username: d.etcd_username,
            etcd_ca: d.etcd_ca,
            etcd_cert: d.etcd_cert,
            etcd_key: d.etcd_key,
        }
    }

    /// The node configuration these settings give (unset ones at their
    /// defaults); the etcd password comes from `SIGSWEEP_ETCD_PASSWORD`.
    pub fn resolve(self) -> NodeConfig {
        let d = NodeConfig::default();
        NodeConfig {
            listen: self.listen.unwrap_or(d.listen),
            health_listen: self.health_listen,
            metrics_listen: self.metrics_listen,
            store: self.store.unwrap_or(d.store),
            lease_ttl: self.lease_ttl.unwrap_or(d.lease_ttl),
            election_ttl: self.election_ttl.unwrap_or(d.election_ttl),
            advertise: self.advertise.unwrap_or(d.advertise),
            max_acquire_wait: d.max_acquire_wait,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            tls_ca: self.tls_ca,
            token_file: self.token_file,
            insecure: self.insecure.unwrap_or(d.insecure),
            allow_command: self.allow_command.unwrap_or(d.allow_command),
            etcd_password: self
                .etcd_username
                .is_some()
                .then(|| std::env::var("SIGSWEEP_ETCD_PASSWORD").ok())
                .flatten(),
            etcd_username: self.etcd_username,
            etcd_ca: self.etcd_ca,
            etcd_cert: self.etcd_cert,
            etcd_key: self.etcd_key,
        }
    }
}
