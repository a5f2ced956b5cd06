//! `sigsweep confirm`: the exploratory sweep's winner (the report's) and
//! its baseline again on fresh seeds, as a confirmatory run
//! ([`sigsweep_coordinator::sweep::Confirmation`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use sigsweep_coordinator::sweep::Confirmation;

use crate::cli::{ConfirmArgs, RunArgs};

pub async fn run(args: ConfirmArgs) -> anyhow::Result<ExitCode> {
    let state_dir: PathBuf = if args.target.is_file() {
        let (_, spec) = crate::steps::load_sweep(&args.target)?;
        PathBuf::from("sigsweep-state").join(spec.name)
    } else {
        args.target.clone()
    };
    let (spec, records) = sigsweep_coordinator::local::load_state_dir(&state_dir).await?;
    if records.is_empty() {
        bail!(
            "{} holds no finished trials to confirm",
            state_dir.display()
        );
    }
    let (winner, baseline, seeds, text) = match spec.confirmation(&records, args.seeds)? {
        Confirmation::NoWinner => bail!("no configuration has a finite validation score"),
        Confirmation::BaselineWins { baseline } => {
            println!(
                "the baseline ({baseline}) is also the best configuration on validation: nothing to confirm"
            );
            return Ok(ExitCode::SUCCESS);
        }
        Confirmation::Run {
            winner,
            baseline,
            seeds,
            sweep_toml,
        } => (winner, baseline, seeds, sweep_toml),
    };
    let confirm_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| state_dir.join("confirm"));
    std::fs::create_dir_all(&confirm_dir)?;
    let file = confirm_dir.join("sweep.toml");
    std::fs::write(&file, &text).with_context(|| format!("cannot write {}", file.display()))?;
    eprintln!(
        "confirming winner {winner} against baseline {baseline} on fresh seeds {}..{} ({})",
        seeds[0],
        seeds[seeds.len() - 1],
        file.display()
    );
    let run = RunArgs {
        sweep: file,
        state_dir: Some(confirm_dir),
        workers: args.workers,
        backend: args.backend,
        lease_ttl: std::time::Duration::from_secs(5),
        no_progress: false,
        dry_run: false,
        retry_failed: false,
    };
    crate::local::run(run, true).await
}
