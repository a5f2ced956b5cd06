//! `sigsweep bench`: training and scheduler benchmarks.

use std::process::ExitCode;

use anyhow::bail;

use crate::cli::{BenchSchedulerArgs, BenchTrainArgs};

pub fn train(args: BenchTrainArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    bail!("bench train: not wired yet")
}

pub async fn scheduler(args: BenchSchedulerArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    bail!("bench scheduler: not wired yet")
}
