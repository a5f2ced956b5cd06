//! The settings of a worker as flags, `SIGSWEEP_…` variables and the
//! `[worker]` table of a configuration file give them: every field optional;
//! [`WorkerSettings::resolve`] fills what no layer set from
//! [`AgentConfig::default`], the only copy of each default.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use sigsweep_types::duration;

use super::AgentConfig;
use crate::backend::BackendKind;

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
    #[arg(long, value_parser = duration::parse, env = "SIGSWEEP_DRAIN_TIMEOUT")]
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub drain_timeout: Option<Duration>,
    /// Exit after the coordinator has been unreachable this long [default: 300s].
    #[arg(long, value_parser = duration::parse, env = "SIGSWEEP_ORPHAN_TIMEOUT")]
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub orphan_timeout: Option<Duration>,
    /// Exit after this long without a trial.
    #[arg(long, value_parser = duration::parse, env = "SIGSWEEP_EXIT_WHEN_IDLE")]
    #[serde(
        default,
        with = "duration::option",
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
    /// Where trials write what their sweep saves (`[training] save`):
    /// `predictions/<trial_id>.jsonl`. A volume every worker shares.
    #[arg(long, env = "SIGSWEEP_ARTIFACTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<PathBuf>,
    /// Run training programs (`[model] name = "command"`). Whoever can
    /// submit sweeps to the coordinator then runs code on this machine, as
    /// this worker's user.
    #[arg(long, env = "SIGSWEEP_ALLOW_COMMAND", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_command: Option<bool>,
    /// When a training program is stopped, how long after SIGTERM its
    /// processes get SIGKILL [default: 10s].
    #[arg(long, value_parser = duration::parse, env = "SIGSWEEP_KILL_GRACE")]
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub kill_grace: Option<Duration>,
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

sigsweep_types::layered!(WorkerSettings {
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
    artifacts,
    allow_command,
    kill_grace,
    tls_ca,
    tls_cert,
    tls_key,
    token_file,
    insecure,
});

/// Most slot processes (and trials per GPU) one worker host runs: each is
/// a process of its own, and a typo such as `--slots 100000` must not
/// start that many.
pub const MAX_SLOTS: u32 = 1024;

impl WorkerSettings {
    /// Every setting with a constant default at it ([`AgentConfig::default`]).
    pub fn defaults() -> Self {
        let d = AgentConfig::default();
        Self {
            backend: Some(d.backend.to_string()),
            trials_per_gpu: Some(d.trials_per_gpu),
            drain_timeout: Some(d.drain_timeout),
            orphan_timeout: Some(d.orphan_timeout),
            exit_when_idle: d.exit_when_idle,
            threads: Some(d.threads),
            insecure: Some(false),
            allow_command: Some(d.allow_command),
            kill_grace: Some(d.kill_grace),
            ..Self::default()
        }
    }

    /// The agent configuration these settings give, and the number of
    /// slot processes (`--slots`, else GPUs × trials_per_gpu when that is
    /// more than 1 on CUDA, else 1).
    pub fn resolve(&self) -> Result<(AgentConfig, u32), String> {
        let d = AgentConfig::default();
        let coordinator = self.coordinator.clone().ok_or(
            "no coordinator: pass --coordinator URL (or SIGSWEEP_COORDINATOR, or `coordinator` in [worker] of --config)",
        )?;
        let backend: BackendKind = match &self.backend {
            Some(b) => b.parse()?,
            None => d.backend,
        };
        let gpus = parse_gpus(self.gpus.as_deref(), backend)?;
        let trials_per_gpu = self.trials_per_gpu.unwrap_or(d.trials_per_gpu).max(1);
        if trials_per_gpu > MAX_SLOTS {
            return Err(format!(
                "--trials-per-gpu {trials_per_gpu}: at most {MAX_SLOTS} (what a coordinator accepts)"
            ));
        }
        let slots = match self.slots {
            Some(n) => n.max(1),
            None if backend == BackendKind::Cuda && trials_per_gpu > 1 => {
                (gpus.len() as u32).saturating_mul(trials_per_gpu)
            }
            None => 1,
        };
        if slots > MAX_SLOTS {
            return Err(format!(
                "{slots} slots (--slots, or GPUs × trials per GPU): at most {MAX_SLOTS} \
                 processes on one host"
            ));
        }
        let config = AgentConfig {
            coordinator,
            name: self.name.clone().unwrap_or(d.name),
            backend,
            gpus,
            trials_per_gpu,
            drain_timeout: self.drain_timeout.unwrap_or(d.drain_timeout),
            orphan_timeout: self.orphan_timeout.unwrap_or(d.orphan_timeout),
            exit_when_idle: self.exit_when_idle.or(d.exit_when_idle),
            fuse_max: d.fuse_max,
            threads: self.threads.unwrap_or(d.threads),
            artifacts: self.artifacts.clone().or(d.artifacts),
            allow_command: self.allow_command.unwrap_or(d.allow_command),
            kill_grace: self.kill_grace.unwrap_or(d.kill_grace),
        };
        Ok((config, slots))
    }
}

/// `--gpus`: `all` (every visible GPU on CUDA, none on CPU) or `0,1,…`.
fn parse_gpus(spec: Option<&str>, backend: BackendKind) -> Result<Vec<u32>, String> {
    match (spec.map(str::trim), backend) {
        (None | Some(""), BackendKind::Cpu) | (Some("all"), BackendKind::Cpu) => Ok(Vec::new()),
        (None | Some("all"), BackendKind::Cuda) => {
            let n = crate::backend::visible_gpus()?;
            Ok((0..n).collect())
        }
        (Some(list), _) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("invalid GPU ordinal `{s}` in --gpus"))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WorkerSettings {
        WorkerSettings {
            coordinator: Some("http://127.0.0.1:1".into()),
            ..WorkerSettings::default()
        }
    }

    #[test]
    fn slot_counts_are_bounded() {
        let (_, slots) = settings().resolve().expect("defaults");
        assert_eq!(slots, 1);
        let many = WorkerSettings {
            slots: Some(MAX_SLOTS),
            ..settings()
        };
        assert_eq!(many.resolve().expect("at the bound").1, MAX_SLOTS);
        let too_many = WorkerSettings {
            slots: Some(100_000),
            ..settings()
        };
        let e = too_many.resolve().expect_err("past the bound");
        assert!(e.contains("at most 1024"), "{e}");
        let shared = WorkerSettings {
            trials_per_gpu: Some(u32::MAX),
            ..settings()
        };
        let e = shared.resolve().expect_err("past the bound");
        assert!(e.contains("--trials-per-gpu"), "{e}");
    }
}
