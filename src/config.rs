//! Layered configuration of the long-running processes (`sigsweep
//! coordinator`, `sigsweep worker`): defaults → file (`--config FILE`, TOML
//! with `[coordinator]` and `[worker]` tables) → `SIGSWEEP_…` environment →
//! command-line flags.
//!
//! One struct per process serves as the clap arguments (every field
//! optional, so "not given" is visible), as the file table (serde, unknown
//! keys rejected) and as the effective configuration (`--print-config`
//! prints it as TOML that can be fed back with `--config`). Flags and the
//! environment come through clap (a flag wins over its variable);
//! [`Layered::layer`] fills what they left unset from the file, then from
//! the defaults. Secrets never appear here: tokens and keys are file paths,
//! and the etcd password is read from `SIGSWEEP_ETCD_PASSWORD` only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::cli::parse_duration;

/// The configuration file: one optional table per process.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub coordinator: CoordinatorSettings,
    #[serde(default)]
    pub worker: WorkerSettings,
}

impl FileConfig {
    /// Reads `path`; errors name the file, line and key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }
}

/// Fills unset fields from a lower layer.
pub trait Layered: Sized {
    fn layer(self, lower: Self) -> Self;
}

macro_rules! layered {
    ($ty:ty { $($field:ident),* $(,)? }) => {
        impl Layered for $ty {
            fn layer(self, lower: Self) -> Self {
                Self { $($field: self.$field.or(lower.$field),)* }
            }
        }
    };
}

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
    #[arg(long, value_parser = parse_duration, env = "SIGSWEEP_LEASE_TTL")]
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub lease_ttl: Option<Duration>,
    /// Leader election lease TTL (etcd store): a standby takes over within
    /// about this long after the leader dies [default: 10s].
    #[arg(long, value_parser = parse_duration, env = "SIGSWEEP_ELECTION_TTL")]
    #[serde(
        default,
        with = "duration_opt",
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

layered!(CoordinatorSettings {
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
    etcd_username,
    etcd_ca,
    etcd_cert,
    etcd_key,
});

impl CoordinatorSettings {
    pub fn defaults() -> Self {
        Self {
            listen: Some("127.0.0.1:50051".into()),
            store: Some("embedded:./sigsweep-state/coordinator".into()),
            lease_ttl: Some(Duration::from_secs(30)),
            election_ttl: Some(Duration::from_secs(10)),
            advertise: Some(default_name()),
            insecure: Some(false),
            ..Self::default()
        }
    }
}

/// `sigsweep worker` settings (`[worker]` in the config file).
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Coordinator URL, e.g. http://127.0.0.1:50051 or https://coordinator:50051.
    #[arg(long, env = "SIGSWEEP_COORDINATOR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<String>,
    /// Worker name [default: host name and process id]. A restarted worker
    /// with the same name fences off its old leases.
    #[arg(long, env = "SIGSWEEP_WORKER_NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Training backend: cpu or cuda [default: cpu].
    #[arg(long, env = "SIGSWEEP_BACKEND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// GPUs to use: `all` or a list such as `0,1` (cuda backend).
    #[arg(long, env = "SIGSWEEP_GPUS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<String>,
    /// How many trials may share one GPU [default: 1]. With k > 1 the
    /// worker runs k slot processes per GPU (each its own CUDA context),
    /// and takes GPU trials only from sweeps whose `trials_per_gpu` ≥ k.
    #[arg(long, env = "SIGSWEEP_TRIALS_PER_GPU")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trials_per_gpu: Option<u32>,
    /// Trials run at once on this host, each slot its own worker process
    /// [default: GPUs × trials_per_gpu when trials_per_gpu > 1, else 1].
    /// On CPU, N slots use N cores.
    #[arg(long, env = "SIGSWEEP_SLOTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// On SIGTERM, how long the running trial may continue before it is
    /// stopped and handed back [default: 120s].
    #[arg(long, value_parser = parse_duration, env = "SIGSWEEP_DRAIN_TIMEOUT")]
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub drain_timeout: Option<Duration>,
    /// Exit after the coordinator has been unreachable this long [default: 300s].
    #[arg(long, value_parser = parse_duration, env = "SIGSWEEP_ORPHAN_TIMEOUT")]
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub orphan_timeout: Option<Duration>,
    /// Exit after this long without a trial.
    #[arg(long, value_parser = parse_duration, env = "SIGSWEEP_EXIT_WHEN_IDLE")]
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub exit_when_idle: Option<Duration>,
    /// Compute threads for the CPU backend [default: 1 per worker process,
    /// so N workers use N cores and results do not depend on thread counts].
    #[arg(long, env = "SIGSWEEP_THREADS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Checkpoint directory (reserved for resumable trials).
    #[arg(long, env = "SIGSWEEP_CHECKPOINT_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_dir: Option<PathBuf>,
    /// CA (PEM) that signed the coordinator's certificate (https:// URLs).
    #[arg(long, env = "SIGSWEEP_TLS_CA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    #[arg(long, env = "SIGSWEEP_TLS_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM), for mutual TLS.
    #[arg(long, env = "SIGSWEEP_TLS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// File holding the bearer token sent with every request.
    #[arg(long, env = "SIGSWEEP_TOKEN_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Allow plaintext http:// to a non-loopback coordinator.
    #[arg(long, env = "SIGSWEEP_INSECURE", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

layered!(WorkerSettings {
    coordinator,
    name,
    backend,
    gpus,
    trials_per_gpu,
    slots,
    drain_timeout,
    orphan_timeout,
    exit_when_idle,
    threads,
    checkpoint_dir,
    tls_ca,
    tls_cert,
    tls_key,
    token_file,
    insecure,
});

impl WorkerSettings {
    pub fn defaults() -> Self {
        Self {
            backend: Some("cpu".into()),
            trials_per_gpu: Some(1),
            drain_timeout: Some(Duration::from_secs(120)),
            orphan_timeout: Some(Duration::from_secs(300)),
            threads: Some(1),
            insecure: Some(false),
            ..Self::default()
        }
    }
}

/// Flags/environment, then the file's table, then the defaults.
pub fn resolve<T: Layered>(given: T, file: Option<T>, defaults: T) -> T {
    match file {
        Some(file) => given.layer(file).layer(defaults),
        None => given.layer(defaults),
    }
}

/// `host-pid`, the default worker name and election candidate id.
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sigsweep".into());
    format!("{host}-{}", std::process::id())
}

/// Formats a duration the way [`parse_duration`] reads it back.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// Optional durations as strings such as `"120s"` or `"5m"`.
mod duration_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_flags_over_file_over_defaults() {
        let file = FileConfig::parse(
            "[coordinator]\nlisten = \"0.0.0.0:1\"\nlease_ttl = \"5m\"\nstore = \"embedded:/x\"\n",
            Path::new("c.toml"),
        )
        .expect("parses");
        let given = CoordinatorSettings {
            listen: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let eff = resolve(
            given,
            Some(file.coordinator),
            CoordinatorSettings::defaults(),
        );
        assert_eq!(eff.listen.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(eff.lease_ttl, Some(Duration::from_secs(300)));
        assert_eq!(eff.store.as_deref(), Some("embedded:/x"));
        assert_eq!(eff.election_ttl, Some(Duration::from_secs(10)));
        let printed = toml::to_string(&FileConfig {
            coordinator: eff,
            worker: WorkerSettings::default(),
        })
        .expect("prints");
        assert!(printed.contains("lease_ttl = \"5m\""), "{printed}");
        FileConfig::parse(&printed, Path::new("printed.toml")).expect("printed config parses back");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = FileConfig::parse(
            "[coordinator]\n\nlisten_addr = \"x\"\n",
            Path::new("bad.toml"),
        )
        .expect_err("unknown key");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("bad.toml") && msg.contains("line 3") && msg.contains("listen_addr"),
            "{msg}"
        );
        let e = FileConfig::parse(
            "[worker]\ndrain_timeout = \"10 parsecs\"\n",
            Path::new("w.toml"),
        )
        .expect_err("bad duration");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("w.toml") && msg.contains("line 2") && msg.contains("drain_timeout"),
            "{msg}"
        );
    }
}
