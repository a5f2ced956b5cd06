//! `sigsweep run`: a whole sweep on this machine.
//!
//! Starts an embedded coordinator on loopback (state under the state
//! directory), spawns N worker processes of this same binary, shows a
//! progress bar, and at the end writes `results.jsonl` and `report.md` and
//! prints the report. Worker processes that die are replaced; their trials
//! return to the queue when their lease expires.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use sigsweep_coordinator::service::SweepRunState;
use sigsweep_coordinator::store::{Catalog, EmbeddedStore};
use sigsweep_coordinator::sweep::SweepSpec;
use sigsweep_coordinator::{Coordinator, CoordinatorConfig};

use crate::cli::RunArgs;

/// Reads and validates a sweep file, including model parameter names.
pub fn load_sweep(path: &Path) -> anyhow::Result<(String, SweepSpec)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read sweep file {}", path.display()))?;
    let name = path.display().to_string();
    let spec = SweepSpec::parse(&text, &name)?;
    // Local workers are this binary: its built-in models.
    spec.check_declared(&[])?;
    spec.check_data_parallel(sigsweep_worker::parallel::supports_data_parallel(
        &spec.model.name,
    ))?;
    Ok((text, spec))
}

/// `run --dry-run`: what the sweep would run and the checks it passed.
fn print_plan(path: &Path, spec: &SweepSpec) {
    let configs = spec.configurations();
    let baseline = spec.baseline_key();
    println!("sweep file {}: `{}`", path.display(), spec.name);
    println!(
        "model `{}`, dataset {}",
        spec.model.name,
        report_spec(spec).dataset
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
    println!(
        "{} seed(s) -> {} trial(s)",
        spec.seeds.len(),
        configs.len() * spec.seeds.len()
    );
    println!("checks passed:");
    for check in [
        "sweep file: keys, types, grid, seeds, baseline, metrics, name",
        "model parameters: names the model declares",
        "dataset parameters: names, types and ranges the dataset kind declares, generator memory",
        "dataset file: exists and can be opened (local runs)",
        "resources: data parallelism supported by the model",
    ] {
        println!("  ok  {check}");
    }
    println!("nothing was started (--dry-run)");
}

/// A local run reads its dataset file itself: refuse a missing or
/// unreadable one before any worker starts.
fn check_local_files(spec: &SweepSpec) -> anyhow::Result<()> {
    if let Some(path) = &spec.dataset.path {
        let problem = match std::fs::metadata(path) {
            Err(e) => Some(format!("cannot read `{path}`: {e}")),
            Ok(m) if !m.is_file() => Some(format!("`{path}` is not a file")),
            Ok(_) => std::fs::File::open(path)
                .err()
                .map(|e| format!("cannot open `{path}`: {e}")),
        };
        if let Some(message) = problem {
            return Err(spec.key_error("dataset", "path", message).into());
        }
    }
    Ok(())
}

struct WorkerPool {
    exe: PathBuf,
    url: String,
    log_dir: PathBuf,
    backend: String,
    children: Vec<Option<Child>>,
    restarts: usize,
}

impl WorkerPool {
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("worker-{i}.log")))
            .context("cannot open worker log")?;
        let child = Command::new(&self.exe)
            .arg("worker")
            .arg("--coordinator")
            .arg(&self.url)
            .arg("--name")
            .arg(format!("local-{i}"))
            .arg("--backend")
            .arg(&self.backend)
            .arg("--orphan-timeout")
            .arg("30s")
            .arg("--drain-timeout")
            .arg("2s")
            .env("MATMUL_NUM_THREADS", "1")
            .env("RAYON_NUM_THREADS", "1")
            .env_remove("SIGSWEEP_STATE_DIR")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start worker process {}", self.exe.display()))?;
        tracing::debug!(worker = i, pid = child.id(), "worker process started");
        self.children[i] = Some(child);
        Ok(())
    }

    /// Replaces workers that exited while the sweep still runs.
    fn supervise(&mut self) -> anyhow::Result<()> {
        for i in 0..self.children.len() {
            let exited = match self.children[i].as_mut() {
                Some(c) => c.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                self.restarts += 1;
                if self.restarts > 20 * self.children.len() {
                    bail!(
                        "worker processes keep exiting (last: {status}); see {}",
                        self.log_dir.display()
                    );
                }
                tracing::warn!(worker = i, %status, "worker process exited; starting a new one");
                self.spawn(i)?;
            }
        }
        Ok(())
    }

    async fn stop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            if let Some(pid) = c.id() {
                // Ask politely first (drain), then kill.
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
        }
        for c in self.children.iter_mut().flatten() {
            if tokio::time::timeout(Duration::from_secs(5), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    run_sweep(args, false).await
}

/// Runs a sweep; `confirmatory` marks its report as a confirmation on fresh
/// seeds (see `sigsweep confirm`).
pub async fn run_sweep(args: RunArgs, confirmatory: bool) -> anyhow::Result<ExitCode> {
    let (text, spec) = load_sweep(&args.sweep)?;
    check_local_files(&spec)?;
    if args.dry_run {
        print_plan(&args.sweep, &spec);
        return Ok(ExitCode::SUCCESS);
    }
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("sigsweep-state").join(&spec.name));
    std::fs::create_dir_all(state_dir.join("logs"))
        .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
    let store = EmbeddedStore::open(state_dir.join("state.redb")).with_context(|| {
        format!(
            "cannot open the state in {} (is another sigsweep using it?)",
            state_dir.display()
        )
    })?;
    let catalog = Catalog::new(Arc::new(store));
    let coordinator = Coordinator::start(
        catalog,
        CoordinatorConfig {
            lease_ttl: args.lease_ttl,
            max_acquire_wait: Duration::from_secs(2),
        },
    )
    .await?;
    let submitted = coordinator
        .submit(&text, &args.sweep.display().to_string())
        .await?;
    let sweep_id = submitted.sweep_id.clone();
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
        let shutdown = CancellationToken::new();
        let listener =
            sigsweep_coordinator::server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(sigsweep_coordinator::server::serve(
            listener,
            coordinator.clone(),
            shutdown.clone(),
        ));
        let workers = args
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .clamp(1, remaining as usize);
        let mut pool = WorkerPool {
            exe: std::env::current_exe().context("cannot find the sigsweep executable")?,
            url: format!("http://{addr}"),
            log_dir: state_dir.join("logs"),
            backend: args.backend.clone(),
            children: (0..workers).map(|_| None).collect(),
            restarts: 0,
        };
        for i in 0..workers {
            pool.spawn(i)?;
        }
        eprintln!(
            "{workers} worker processes on {addr} (logs in {})",
            pool.log_dir.display()
        );
        let outcome = follow(&coordinator, &sweep_id, &mut pool, args.no_progress).await;
        pool.stop().await;
        shutdown.cancel();
        let _ = server.await;
        outcome?;
    }

    let results = coordinator.results(&sweep_id).await?;
    write_outputs(&state_dir, &spec, &results, confirmatory)?;
    let progress = coordinator.progress(&sweep_id)?;
    if progress.failed > 0 {
        // The report is written; the exit status still says that the sweep
        // is incomplete (fix the cause, then `run --retry-failed`).
        eprintln!(
            "{} trial(s) failed; see the report (after fixing the cause, rerun with --retry-failed)",
            progress.failed
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn follow(
    coordinator: &Coordinator,
    sweep_id: &str,
    pool: &mut WorkerPool,
    plain: bool,
) -> anyhow::Result<()> {
    let mut watch = coordinator.watch(sweep_id)?;
    let first = watch.borrow().clone();
    let bar = if plain || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(u64::from(first.total))
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} trials  {msg}  [{elapsed_precise}, ETA {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let signal = super::shutdown_signal();
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_logged = (u32::MAX, u32::MAX);
    loop {
        let p = watch.borrow_and_update().clone();
        bar.set_position(u64::from(p.completed + p.failed));
        bar.set_message(format!(
            "done {} · failed {} · running {}",
            p.completed, p.failed, p.running
        ));
        if (plain || bar.is_hidden()) && (p.completed, p.failed) != last_logged {
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
        tokio::select! {
            () = &mut signal => {
                bar.abandon();
                bail!("interrupted: finished trials are saved; run the same command again to resume");
            }
            _ = watch.changed() => {}
            _ = tick.tick() => { pool.supervise()?; }
        }
    }
}

/// The report spec of a sweep.
pub fn report_spec(spec: &SweepSpec) -> sigsweep_report::ReportSpec {
    let goal = |g: sigsweep_coordinator::sweep::Goal| match g {
        sigsweep_coordinator::sweep::Goal::Max => sigsweep_report::Goal::Max,
        sigsweep_coordinator::sweep::Goal::Min => sigsweep_report::Goal::Min,
    };
    sigsweep_report::ReportSpec {
        sweep_name: spec.name.clone(),
        dataset: match (&spec.dataset.generator, &spec.dataset.path) {
            (Some(g), _) if spec.dataset.kind == "synthetic" => format!("synthetic {g}"),
            (_, Some(p)) => format!("{} ({p})", spec.dataset.kind),
            _ => spec.dataset.kind.clone(),
        },
        grid_keys: spec.grid.keys().cloned().collect(),
        baseline_key: spec.baseline_key(),
        select_metric: spec.metrics.select.clone(),
        select_goal: goal(spec.metrics.select_goal),
        metrics: spec
            .metrics
            .report
            .iter()
            .map(|(k, g)| (k.clone(), goal(*g)))
            .collect(),
        test: sigsweep_report::TestKind::PairedT,
        correction: sigsweep_report::Correction::Holm,
        selection_on_test: spec.metrics.select_split == "test",
        confirmatory: false,
    }
}

/// Writes `results.jsonl`, `report.md`, `report.html` and prints the report.
pub fn write_outputs(
    state_dir: &Path,
    spec: &SweepSpec,
    results: &[sigsweep_coordinator::store::ResultRecord],
    confirmatory: bool,
) -> anyhow::Result<()> {
    let mut jsonl = String::new();
    for r in results {
        jsonl.push_str(&serde_json::to_string(r)?);
        jsonl.push('\n');
    }
    std::fs::write(state_dir.join("results.jsonl"), jsonl)?;
    let mut rs = report_spec(spec);
    rs.confirmatory = confirmatory;
    let report = sigsweep_report::build(&rs, results);
    std::fs::write(
        state_dir.join("report.md"),
        sigsweep_report::render(&report, sigsweep_report::Format::Markdown),
    )?;
    std::fs::write(
        state_dir.join("report.html"),
        sigsweep_report::render(&report, sigsweep_report::Format::Html),
    )?;
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
    println!(
        "{}",
        sigsweep_report::render(&report, sigsweep_report::Format::Term { color })
    );
    eprintln!(
        "wrote {0}/results.jsonl, {0}/report.md and {0}/report.html",
        state_dir.display()
    );
    Ok(())
}
