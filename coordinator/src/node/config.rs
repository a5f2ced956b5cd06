//! [`NodeConfig`]: everything a coordinator node runs with, resolved (no
//! "not given" left). Its `Default` is the only copy of each default: the
//! CLI's layered settings fill what flags, environment and file leave unset
//! from it, and `configs/coordinator.toml` documents the same values.

use std::path::PathBuf;
use std::time::Duration;

pub use sigsweep_types::host::default_name;

/// A coordinator node's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// gRPC listen address. A non-loopback address needs TLS or `insecure`.
    pub listen: String,
    /// Plaintext gRPC health listen address, for probes (off when `None`).
    pub health_listen: Option<String>,
    /// Prometheus metrics listen address (off when `None`).
    pub metrics_listen: Option<String>,
    /// Durable store: `embedded:DIR` or `etcd://HOST:PORT[,…]` (`etcds://`
    /// for TLS).
    pub store: String,
    /// A trial whose worker stops heartbeating is queued again after this.
    pub lease_ttl: Duration,
    /// Leader election lease (etcd store).
    pub election_ttl: Duration,
    /// Candidate id in the leader election.
    pub advertise: String,
    /// Longest an `AcquireTrial` long poll waits.
    pub max_acquire_wait: Duration,
    /// TLS of the gRPC endpoint: certificate chain and key (PEM).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) for client certificates: set ⇒ mutual TLS.
    pub tls_ca: Option<PathBuf>,
    /// File holding the bearer token every call must carry.
    pub token_file: Option<PathBuf>,
    /// Plaintext on a non-loopback address and, without a token,
    /// unauthenticated non-loopback clients.
    pub insecure: bool,
    /// Accept sweeps that run a training program on the workers.
    pub allow_command: bool,
    /// etcd user and password (the password never comes from a file or a
    /// flag: the CLI reads `SIGSWEEP_ETCD_PASSWORD`).
    pub etcd_username: Option<String>,
    pub etcd_password: Option<String>,
    /// etcd TLS: CA, client certificate and key (PEM). Any of them switches
    /// the etcd connection to TLS.
    pub etcd_ca: Option<PathBuf>,
    pub etcd_cert: Option<PathBuf>,
    pub etcd_key: Option<PathBuf>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            health_listen: None,
            metrics_listen: None,
            store: "embedded:./sigsweep-state/coordinator".into(),
            lease_ttl: Duration::from_secs(30),
            election_ttl: Duration::from_secs(10),
            advertise: default_name(),
            max_acquire_wait: Duration::from_secs(5),
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            token_file: None,
            insecure: false,
            allow_command: false,
            etcd_username: None,
            etcd_password: None,
            etcd_ca: None,
            etcd_cert: None,
            etcd_key: None,
        }
    }
}
