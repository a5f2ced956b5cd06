//! `sigsweep worker`.

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use sigsweep_worker::agent::{self, AgentConfig};
use sigsweep_worker::backend::BackendKind;

use crate::cli::WorkerArgs;

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
    let backend: BackendKind = args.backend.parse().map_err(anyhow::Error::msg)?;
    let gpus = parse_gpus(args.gpus.as_deref(), backend)?;
    // One compute thread per process by default: N worker processes use N
    // cores, and per-trial numbers do not depend on thread counts.
    sigsweep_worker::backend::set_cpu_threads(args.threads);
    let name = args.name.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let config = AgentConfig {
        coordinator: args.coordinator,
        name,
        backend,
        gpus,
        trials_per_gpu: args.trials_per_gpu.max(1),
        drain_timeout: args.drain_timeout,
        orphan_timeout: args.orphan_timeout,
        exit_when_idle: args.exit_when_idle,
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
    agent::run(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
