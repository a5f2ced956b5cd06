//! `sigsweep worker`: one agent, or a supervisor of slot processes.
//!
//! A worker with several slots (`--slots N`, or `--trials-per-gpu k` with
//! GPUs) runs each slot as its own `sigsweep worker` process
//! ([`sigsweep_worker::supervisor`]): its own CUDA context and RNG (so
//! per-trial numbers do not depend on packing), pinned to one GPU with
//! `CUDA_VISIBLE_DEVICES`, registered as `NAME-sI` with that GPU. The
//! supervisor forwards SIGTERM (each slot drains), restarts a slot that
//! died, and its slots get SIGTERM if it dies itself.

use std::process::ExitCode;

use anyhow::Context;

use sigsweep_client::{Connection, TlsFiles};
use sigsweep_worker::agent::{self, AgentConfig};
use sigsweep_worker::backend::BackendKind;
use sigsweep_worker::supervisor::{Pool, Restart};

use crate::cli::WorkerArgs;
use crate::config::{self, FileConfig, WorkerSettings};

pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => Some(FileConfig::load(path)?.worker),
        None => None,
    };
    let settings = config::resolve(args.settings, file, WorkerSettings::defaults());
    if args.print_config {
        let file = FileConfig {
            worker: settings,
            ..FileConfig::default()
        };
        print!("{}", toml::to_string(&file)?);
        return Ok(ExitCode::SUCCESS);
    }
    let (config, slots) = settings.resolve().map_err(anyhow::Error::msg)?;
    let tls = TlsFiles {
        ca: settings.tls_ca.as_deref(),
        cert: settings.tls_cert.as_deref(),
        key: settings.tls_key.as_deref(),
    };
    let insecure = settings.insecure.unwrap_or(false);
    let connection = Connection::new(
        &config.coordinator,
        tls,
        settings.token_file.as_deref(),
        insecure,
    )?;
    sigsweep_worker::backend::set_cpu_threads(config.threads);
    if slots > 1 {
        return supervise(&settings, &config, slots).await;
    }
    sigsweep_worker::backend::set_cuda_gpus(&config.gpus);
    let shutdown = crate::signals::shutdown_token("draining");
    agent::run_with(config, connection, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `slots` slot processes, each from a configuration file with its own
/// name and GPU.
async fn supervise(
    settings: &WorkerSettings,
    config: &AgentConfig,
    slots: u32,
) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the sigsweep executable")?;
    let dir = tempfile::tempdir().context("cannot create a directory for slot configurations")?;
    let gpus = &config.gpus;
    let mut commands = Vec::new();
    for slot in 0..slots {
        let gpu = (!gpus.is_empty()).then(|| gpus[slot as usize % gpus.len()]);
        let mut s = settings.clone();
        s.name = Some(format!("{}-s{slot}", config.name));
        s.slots = Some(1);
        if let Some(g) = gpu {
            s.gpus = Some(g.to_string());
            // Slots spread evenly over the GPUs: this many share each.
            s.trials_per_gpu = Some(slots.div_ceil(gpus.len() as u32));
        }
        let path = dir.path().join(format!("slot-{slot}.toml"));
        let file = FileConfig {
            worker: s,
            ..FileConfig::default()
        };
        std::fs::write(&path, toml::to_string(&file)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("worker").arg("--config").arg(&path);
        // The slot reads everything from its file: drop the variables that
        // would override it.
        for (key, _) in std::env::vars_os() {
            if key
                .to_str()
                .is_some_and(|k| k.starts_with("SIGSWEEP_") && k != "SIGSWEEP_LOG_FORMAT")
            {
                cmd.env_remove(&key);
            }
        }
        if let (Some(g), BackendKind::Cuda) = (gpu, config.backend) {
            cmd.env("CUDA_VISIBLE_DEVICES", visible_device(g));
        }
        commands.push((format!("slot {slot}"), cmd));
    }
    tracing::info!(slots, gpus = ?gpus, "starting slot processes");
    let policy = Restart {
        max: 10,
        on_clean_exit: false,
        kill_after: None,
    };
    let mut pool = Pool::start(commands, policy);
    let stop = pool.shutdown_token();
    tokio::spawn(async move {
        crate::signals::signal().await;
        tracing::info!("signal received: draining every slot");
        stop.cancel();
    });
    let ok = pool.wait().await;
    drop(dir);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The `CUDA_VISIBLE_DEVICES` entry of this process's GPU `g`: ordinals
/// are relative to the supervisor's own `CUDA_VISIBLE_DEVICES` when it has
/// one (GPU 1 of `2,3` is physical GPU 3).
fn visible_device(g: u32) -> String {
    std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .and_then(|list| {
            list.split(',')
                .nth(g as usize)
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| g.to_string())
}
