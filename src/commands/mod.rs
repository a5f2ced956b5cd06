//! One module per subcommand. Each parses its arguments, calls a library
//! and prints; no command imports another (the steps several share are in
//! [`crate::steps`], the local run in [`crate::local`]).

pub mod bench;
pub mod confirm;
pub mod coordinator;
pub mod predict;
pub mod remote;
pub mod report;
pub mod stats;
pub mod worker;

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{BenchCommand, Cli, Command, DataCommand};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs the parsed command line.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => runtime()?.block_on(crate::local::run(args, false)),
        Command::Worker(args) => runtime()?.block_on(worker::run(args)),
        Command::Coordinator(args) => runtime()?.block_on(coordinator::run(args)),
        Command::Submit(args) => runtime()?.block_on(remote::submit(args)),
        Command::Status(args) => runtime()?.block_on(remote::status(args)),
        Command::Watch(args) => runtime()?.block_on(remote::watch(args)),
        Command::Cancel(args) => runtime()?.block_on(remote::cancel(args)),
        Command::Results(args) => runtime()?.block_on(remote::results(args)),
        Command::Logs(args) => runtime()?.block_on(remote::logs(args)),
        Command::Report(args) => runtime()?.block_on(report::run(args)),
        Command::Stats(args) => stats::run(args),
        Command::Data {
            command: DataCommand::Inspect { path, format, json },
        } => {
            let format: sigsweep_data::formats::Format =
                format.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let inspection = sigsweep_data::formats::inspect(&path, format)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inspection)?);
            } else {
                println!("{inspection}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Confirm(args) => runtime()?.block_on(confirm::run(args)),
        Command::Predict(args) => predict::run(args),
        Command::Bench {
            command: BenchCommand::Train(args),
        } => bench::train(args),
        Command::Bench {
            command: BenchCommand::Scheduler(args),
        } => runtime()?.block_on(bench::scheduler(args)),
    }
}
