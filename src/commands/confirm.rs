//! `sigsweep confirm`: confirmatory rerun of the winner against the baseline.

use std::process::ExitCode;

use anyhow::bail;

use crate::cli::ConfirmArgs;

pub async fn run(args: ConfirmArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    bail!("confirm: not wired yet")
}
