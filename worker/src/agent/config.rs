//! The agent's settings and errors.

use std::time::Duration;

use tonic::Status;

use crate::backend::BackendKind;

/// A worker's configuration, resolved. Its `Default` is the only copy of
/// each default: the CLI's layered settings fill what flags, environment and
/// file leave unset from it, and `configs/worker.toml` documents the same
/// values.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Coordinator URL, e.g. `http://127.0.0.1:50051`.
    pub coordinator: String,
    pub name: String,
    pub backend: BackendKind,
    pub gpus: Vec<u32>,
    pub trials_per_gpu: u32,
    /// On shutdown, how long the running trial may go on before it is
    /// stopped and released.
    pub drain_timeout: Duration,
    /// Give up after the coordinator has been unreachable this long.
    pub orphan_timeout: Duration,
    /// Exit after this long without getting a trial (None: never).
    pub exit_when_idle: Option<Duration>,
    /// Most trials taken at once from a sweep with `fuse_seeds = true` (the
    /// seeds of one configuration, trained as one fused model).
    pub fuse_max: u32,
    /// Compute threads of the CPU backend: 1 per worker process, so N
    /// workers use N cores and results do not depend on thread counts.
    pub threads: usize,
    /// Where trials write what their sweep saves (`predictions/…`); a
    /// trial that saves something fails on a worker without it.
    pub artifacts: Option<std::path::PathBuf>,
    /// Run training programs (`[model] name = "command"`): whoever can
    /// submit sweeps to the coordinator then runs code on this machine.
    pub allow_command: bool,
    /// When a training program is stopped (cancel, drain, lost lease), how
    /// long after SIGTERM its process group gets SIGKILL.
    pub kill_grace: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            coordinator: String::new(),
            name: crate::default_name(),
            backend: BackendKind::Cpu,
            gpus: Vec::new(),
            trials_per_gpu: 1,
            drain_timeout: Duration::from_secs(120),
            orphan_timeout: Duration::from_secs(300),
            exit_when_idle: None,
            // Up to 16 seeds of one configuration at once, for sweeps that
            // set `fuse_seeds = true` (others are handed out one at a time).
            fuse_max: 16,
            threads: 1,
            artifacts: None,
            allow_command: false,
            kill_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The connection settings are wrong (URL, TLS files, token).
    #[error("{0}")]
    Connection(String),
    #[error("coordinator unreachable for {0:?}: giving up")]
    Orphaned(Duration),
    #[error("{0}")]
    Backend(String),
    #[error("coordinator rejected the request: {0}")]
    Rejected(Status),
}

impl From<sigsweep_client::ClientError> for AgentError {
    fn from(e: sigsweep_client::ClientError) -> Self {
        match e {
            sigsweep_client::ClientError::Rejected(s) => Self::Rejected(s),
            other => Self::Connection(other.to_string()),
        }
    }
}
