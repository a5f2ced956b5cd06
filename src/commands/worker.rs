//! `sigsweep worker`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use sigsweep_worker::agent::{self, AgentConfig};
use sigsweep_worker::backend::BackendKind;

use crate::cli::WorkerArgs;
use crate::config::{self, FileConfig, WorkerSettings};

fn parse_gpus(spec: Option<&str>, backend: BackendKind) -> anyhow::Result<Vec<u32>> {
    match (spec.map(str::trim), backend) {
        (None | Some(""), BackendKind::Cpu) => Ok(Vec::new()),
        (None | Some("all"), BackendKind::Cuda) => Ok(vec![0]),
        (Some("all"), BackendKind::Cpu) => Ok(Vec::new()),
        (Some(list), _) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<u32>()
                    .with_context(|| format!("invalid GPU ordinal `{s}` in --gpus"))
            })
            .collect(),
    }
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => Some(FileConfig::load(path)?.worker),
        None => None,
    };
    let settings = config::resolve(args.settings, file, WorkerSettings::defaults());
    if args.print_config {
        print!(
            "{}",
            toml::to_string(&FileConfig {
                worker: settings,
                ..FileConfig::default()
            })?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(url) = settings.coordinator.clone() else {
        anyhow::bail!(
            "no coordinator: pass --coordinator URL (or SIGSWEEP_COORDINATOR, or `coordinator` in [worker] of --config)"
        );
    };
    let connection = super::client::connection(
        &url,
        settings.tls_ca.as_deref(),
        settings.tls_cert.as_deref(),
        settings.tls_key.as_deref(),
        settings.token_file.as_deref(),
        settings.insecure.unwrap_or(false),
    )?;
    let backend: BackendKind = settings
        .backend
        .as_deref()
        .unwrap_or("cpu")
        .parse()
        .map_err(anyhow::Error::msg)?;
    let gpus = parse_gpus(settings.gpus.as_deref(), backend)?;
    // One compute thread per process by default: N worker processes use N
    // cores, and per-trial numbers do not depend on thread counts.
    sigsweep_worker::backend::set_cpu_threads(settings.threads.unwrap_or(1));
    let name = settings.name.unwrap_or_else(config::default_name);
    let config = AgentConfig {
        coordinator: url,
        name,
        backend,
        gpus,
        trials_per_gpu: settings.trials_per_gpu.unwrap_or(1).max(1),
        drain_timeout: settings.drain_timeout.unwrap_or(Duration::from_secs(120)),
        orphan_timeout: settings.orphan_timeout.unwrap_or(Duration::from_secs(300)),
        exit_when_idle: settings.exit_when_idle,
        // Up to 16 seeds of one configuration at once, for sweeps that set
        // `fuse_seeds = true` (others are handed out one trial at a time).
        fuse_max: 16,
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::info!("signal received: draining (send again to exit now)");
        signal.cancel();
        super::shutdown_signal().await;
        std::process::exit(130);
    });
    agent::run_with(config, connection, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
