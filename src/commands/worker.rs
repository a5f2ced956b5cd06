//! `sigsweep worker`: one agent, or a supervisor of slot processes.
//!
//! A worker with several slots (`--slots N`, or `--trials-per-gpu k` with
//! GPUs) runs each slot as its own `sigsweep worker` process: its own CUDA
//! context and RNG (so per-trial numbers do not depend on packing), pinned
//! to one GPU with `CUDA_VISIBLE_DEVICES`, registered as `NAME-sI` with
//! that GPU. The supervisor forwards SIGTERM (each slot drains), restarts a
//! slot that died, and its slots get SIGTERM if it dies itself.

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
        (None | Some("all"), BackendKind::Cuda) => {
            let n = sigsweep_worker::backend::visible_gpus().map_err(anyhow::Error::msg)?;
            Ok((0..n).collect())
        }
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
    let name = settings.name.clone().unwrap_or_else(config::default_name);
    let trials_per_gpu = settings.trials_per_gpu.unwrap_or(1).max(1);
    let slots = match settings.slots {
        Some(n) => n.max(1),
        None if backend == BackendKind::Cuda && trials_per_gpu > 1 => {
            gpus.len() as u32 * trials_per_gpu
        }
        None => 1,
    };
    if slots > 1 {
        return supervise(settings, &name, backend, &gpus, slots).await;
    }
    sigsweep_worker::backend::set_cuda_gpus(&gpus);
    let config = AgentConfig {
        coordinator: url,
        name,
        backend,
        gpus,
        trials_per_gpu,
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

/// One slot's settings: the supervisor's, with its own name and GPU.
fn slot_settings(
    settings: &WorkerSettings,
    name: &str,
    gpus: &[u32],
    slot: u32,
    slots: u32,
) -> (WorkerSettings, Option<u32>) {
    let gpu = (!gpus.is_empty()).then(|| gpus[slot as usize % gpus.len()]);
    let mut s = settings.clone();
    s.name = Some(format!("{name}-s{slot}"));
    s.slots = Some(1);
    if let Some(g) = gpu {
        s.gpus = Some(g.to_string());
        // Slots spread evenly over the GPUs: this many share each.
        s.trials_per_gpu = Some(slots.div_ceil(gpus.len() as u32));
    }
    (s, gpu)
}

async fn supervise(
    settings: WorkerSettings,
    name: &str,
    backend: BackendKind,
    gpus: &[u32],
    slots: u32,
) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the sigsweep executable")?;
    let dir = tempfile::tempdir().context("cannot create a directory for slot configurations")?;
    let mut commands = Vec::new();
    for slot in 0..slots {
        let (s, gpu) = slot_settings(&settings, name, gpus, slot, slots);
        let path = dir.path().join(format!("slot-{slot}.toml"));
        std::fs::write(
            &path,
            toml::to_string(&FileConfig {
                worker: s,
                ..FileConfig::default()
            })?,
        )
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
        if let (Some(g), BackendKind::Cuda) = (gpu, backend) {
            cmd.env("CUDA_VISIBLE_DEVICES", visible_device(g));
        }
        #[cfg(target_os = "linux")]
        drain_when_parent_dies(&mut cmd);
        commands.push((slot, cmd));
    }
    tracing::info!(slots, gpus = ?gpus, "starting slot processes");
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::info!("signal received: draining every slot");
        signal.cancel();
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (slot, cmd) in commands {
        tasks.spawn(run_slot(slot, cmd, shutdown.clone()));
    }
    let mut failed = false;
    while let Some(r) = tasks.join_next().await {
        failed |= !matches!(r, Ok(Ok(())));
        if let Ok(Err(e)) = r {
            tracing::error!(error = %e, "slot gave up");
        }
    }
    drop(dir);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
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

/// Runs one slot process until it exits cleanly (idle exit, drained);
/// restarts it after a crash.
async fn run_slot(
    slot: u32,
    mut cmd: tokio::process::Command,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut restarts = 0u32;
    loop {
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start slot {slot}"))?;
        let status = tokio::select! {
            s = child.wait() => s?,
            () = shutdown.cancelled() => {
                if let Some(pid) = child.id() {
                    terminate(pid);
                }
                child.wait().await?
            }
        };
        if status.success() || shutdown.is_cancelled() {
            return Ok(());
        }
        restarts += 1;
        if restarts > 10 {
            anyhow::bail!("slot {slot} exited with {status} {restarts} times");
        }
        tracing::warn!(slot, %status, restarts, "slot process died; restarting it");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Makes the kernel send SIGTERM to the slot when the supervisor dies (so a
/// `kill -9` of the supervisor drains its slots instead of orphaning them).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn drain_when_parent_dies(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl,
    // which is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends SIGTERM to a slot (it drains its running trial).
#[allow(unsafe_code)]
fn terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; `pid` is our own
    // child, not yet reaped (we still hold its handle).
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}
