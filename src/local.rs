//! A whole sweep on this machine (`sigsweep run`, `sigsweep confirm`) — an in-process
//! coordinator over the state directory's embedded store
//! ([`sigsweep_coordinator::local`]), N worker processes of this binary
//! ([`sigsweep_worker::supervisor`], replaced when they die), a progress
//! bar, and at the end `results.jsonl`, `report.md`, `report.html` and the
//! report on stdout. Running it again resumes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Command;

use sigsweep_coordinator::local::{LocalRun, Serving};
use sigsweep_coordinator::service::{SweepRunState, Waiting};
use sigsweep_coordinator::sweep::SweepSpec;
use sigsweep_worker::backend::BackendKind;
use sigsweep_worker::supervisor::{Pool, Restart};

use crate::cli::RunArgs;

/// `run --dry-run`: what the sweep would run and the checks it passed.
fn print_plan(path: &Path, spec: &SweepSpec) {
    let configs = spec.configurations();
    let baseline = spec.baseline_key();
    println!("sweep file {}: `{}`", path.display(), spec.name);
    println!(
        "model `{}`, dataset {}",
        spec.models().join("`, `"),
        spec.dataset_label()
    );
    println!("{} configuration(s):", configs.len());
    for c in &configs {
        let mark = if c.key == baseline {
            "  (baseline)"
        } else {
            ""
        };
        println!("  {}{mark}", c.key);
    }
    let trials = configs.len() * spec.seeds.len();
    println!("{} seed(s) -> {trials} trial(s)", spec.seeds.len());
    println!("checks passed:");
    for check in [
        "sweep file: keys, types, grid, seeds, baseline, metrics, name",
        "model parameters: names the model declares",
        "model settings: each configuration as its model reads it (even widths, heads, lists)",
        "dataset parameters: names, types and ranges the dataset kind declares, generator memory",
        "dataset file: exists and can be opened (local runs)",
        "resources: data parallelism supported by the model",
    ] {
        println!("  ok  {check}");
    }
    println!("nothing was started (--dry-run)");
}

/// The local worker processes: this binary's `worker`, one core each.
fn workers(
    n: usize,
    serving: &Serving,
    backend: BackendKind,
    logs: &Path,
    artifacts: &Path,
) -> anyhow::Result<Pool> {
    let exe = std::env::current_exe().context("cannot find the sigsweep executable")?;
    let mut commands = Vec::new();
    for i in 0..n {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("worker-{i}.log")))
            .context("cannot open worker log")?;
        let mut cmd = Command::new(&exe);
        cmd.args([
            "worker",
            "--coordinator",
            &serving.url,
            "--name",
            &format!("local-{i}"),
        ])
        .arg("--token-file")
        .arg(serving.token_file())
        .args(["--backend", &backend.to_string()])
        .args(["--orphan-timeout", "30s", "--drain-timeout", "2s"])
        .arg("--artifacts")
        .arg(artifacts)
        // The user runs their own sweep file on their own machine.
        .arg("--allow-command")
        .env("MATMUL_NUM_THREADS", "1")
        .env("RAYON_NUM_THREADS", "1")
        .env_remove("SIGSWEEP_STATE_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        commands.push((format!("worker {i}"), cmd));
    }
    let policy = Restart {
        max: 20,
        on_clean_exit: true,
        kill_after: Some(Duration::from_secs(5)),
    };
    Ok(Pool::start(commands, policy))
}

/// Why this run's workers (`backend`, on this machine) could never take
/// the sweep's trials, if they could not.
fn local_backend_problem(spec: &SweepSpec, backend: BackendKind) -> Option<anyhow::Error> {
    if let Err(e) = sigsweep_worker::backend::check_available(backend) {
        return Some(anyhow::anyhow!(e));
    }
    let gpus = spec.resources.gpus_per_trial;
    (gpus > 0 && backend == BackendKind::Cpu).then(|| {
        spec.key_error(
            "resources",
            "gpus_per_trial",
            format!(
                "each trial needs {gpus} GPU(s), but this run's workers train on the CPU \
                 (--backend cpu); set gpus_per_trial = 0 to train on the CPU, or run with \
                 --backend cuda"
            ),
        )
        .into()
    })
}

/// Runs a sweep; `confirmatory` marks its report as a confirmation on fresh
/// seeds (see `sigsweep confirm`).
pub async fn run(args: RunArgs, confirmatory: bool) -> anyhow::Result<ExitCode> {
    let (text, spec) = crate::steps::load_sweep(&args.sweep)?;
    spec.check_local_files()?;
    for w in spec.warnings() {
        eprintln!("warning: {w}");
    }
    // Whether this machine's workers could take the trials at all: an
    // error for a run (it would wait forever), a warning for a dry run
    // (the file may be meant for a cluster's coordinator).
    if let Some(problem) = local_backend_problem(&spec, args.backend) {
        if !args.dry_run {
            return Err(problem);
        }
        eprintln!("warning: `sigsweep run` on this machine would refuse it: {problem:#}");
    }
    if args.dry_run {
        print_plan(&args.sweep, &spec);
        return Ok(ExitCode::SUCCESS);
    }
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("sigsweep-state").join(&spec.name));
    let local = LocalRun::open(&state_dir, args.lease_ttl).await?;
    let coordinator = &local.coordinator;
    // The local workers are this binary: they train what it registered.
    coordinator.declare_models(&sigsweep_worker::models::extension_declarations())?;
    let sweep_id = coordinator
        .submit(&text, &args.sweep.display().to_string())
        .await?
        .sweep_id;
    if args.retry_failed {
        let n = coordinator.retry_failed(&sweep_id).await?;
        eprintln!("{n} failed trial(s) queued again");
    }
    let progress = coordinator.progress(&sweep_id)?;
    let remaining = progress.total - progress.completed - progress.failed;
    eprintln!(
        "sweep {sweep_id}: {} configurations × {} seeds = {} trials ({} already done); state in {}",
        spec.configurations().len(),
        spec.seeds.len(),
        progress.total,
        progress.completed + progress.failed,
        state_dir.display()
    );
    if remaining > 0 && progress.state == SweepRunState::Running {
        let serving = local.serve().await?;
        let n = args
            .workers
            .map(usize::from)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .clamp(1, remaining as usize);
        let logs = state_dir.join("logs");
        // An absolute path: the workers run in this directory too, but the
        // path is what their results name.
        let artifacts = std::path::absolute(state_dir.join("artifacts"))
            .context("cannot resolve the artifacts directory")?;
        let mut pool = workers(n, &serving, args.backend, &logs, &artifacts)?;
        eprintln!(
            "{n} worker processes on {} (logs in {})",
            serving.url,
            logs.display()
        );
        let outcome = follow(&local, &sweep_id, &mut pool, args.no_progress).await;
        pool.stop().await;
        serving.stop().await;
        outcome?;
    }
    let results = coordinator.results(&sweep_id).await?;
    let mut rs = crate::commands::report::report_spec(&spec);
    rs.confirmatory = confirmatory;
    let (predictions, load_notes) =
        sigsweep_report::per_example::load_predictions(&state_dir.join("artifacts"), &results);
    let mut report = sigsweep_report::build_with_predictions(&rs, &results, &predictions);
    report.notes.extend(load_notes);
    sigsweep_report::outputs::write_outputs(&state_dir, &report, &results)
        .with_context(|| format!("cannot write the outputs into {}", state_dir.display()))?;
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let term = sigsweep_report::Format::Term { color };
    println!("{}", sigsweep_report::render(&report, term));
    eprintln!(
        "wrote {0}/results.jsonl, {0}/report.md and {0}/report.html",
        state_dir.display()
    );
    let failed = coordinator.progress(&sweep_id)?.failed;
    if failed > 0 {
        // The report is written; the exit status still says that the sweep
        // is incomplete (fix the cause, then `run --retry-failed`).
        eprintln!(
            "{failed} trial(s) failed; see the report (after fixing the cause, rerun with --retry-failed)"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows progress until the sweep ends, a signal arrives or the workers
/// keep dying.
async fn follow(
    local: &LocalRun,
    sweep_id: &str,
    pool: &mut Pool,
    plain: bool,
) -> anyhow::Result<()> {
    let mut watch = local.coordinator.watch(sweep_id)?;
    let total = watch.borrow().total;
    let bar = if plain {
        indicatif::ProgressBar::hidden()
    } else {
        crate::steps::progress_bar(u64::from(total))
    };
    let signal = crate::signals::signal();
    tokio::pin!(signal);
    let mut last_logged = (u32::MAX, u32::MAX);
    let mut last_finished = (0, 0);
    loop {
        let p = watch.borrow_and_update().clone();
        bar.set_position(u64::from(p.completed + p.failed));
        bar.set_message(format!(
            "done {} · failed {} · running {}",
            p.completed, p.failed, p.running
        ));
        if (p.completed, p.failed) != last_finished {
            // Workers dying while trials still finish are not a crash loop
            // (a trial that kills its worker fails after max_lost_workers).
            last_finished = (p.completed, p.failed);
            pool.note_progress();
        }
        if bar.is_hidden() && (p.completed, p.failed) != last_logged {
            last_logged = (p.completed, p.failed);
            tracing::info!(
                done = p.completed,
                failed = p.failed,
                running = p.running,
                total = p.total,
                "progress"
            );
        }
        if p.state != SweepRunState::Running {
            bar.finish();
            return Ok(());
        }
        if let Some(Waiting::NoneFits(why)) = &p.waiting {
            // Every worker of this run is alike: none will ever fit.
            bar.abandon();
            bail!("the sweep cannot run on this machine: {why}");
        }
        tokio::select! {
            () = &mut signal => {
                bar.abandon();
                bail!("interrupted: finished trials are saved; run the same command again to resume");
            }
            why = pool.next_failure() => {
                bar.abandon();
                bail!("worker processes keep exiting ({why}); see {}", local.state_dir.join("logs").display());
            }
            _ = watch.changed() => {}
        }
    }
}
