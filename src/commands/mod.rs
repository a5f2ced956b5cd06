//! One module per subcommand.

pub mod bench;
pub mod bench_scheduler;
pub mod client;
pub mod confirm;
pub mod coordinator;
pub mod data;
pub mod report;
pub mod run;
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
        Command::Run(args) => runtime()?.block_on(run::run(args)),
        Command::Worker(args) => runtime()?.block_on(worker::run(args)),
        Command::Coordinator(args) => runtime()?.block_on(coordinator::run(args)),
        Command::Submit(args) => runtime()?.block_on(client::submit(args)),
        Command::Status(args) => runtime()?.block_on(client::status(args)),
        Command::Watch(args) => runtime()?.block_on(client::watch(args)),
        Command::Cancel(args) => runtime()?.block_on(client::cancel(args)),
        Command::Results(args) => runtime()?.block_on(client::results(args)),
        Command::Report(args) => runtime()?.block_on(report::run(args)),
        Command::Stats(args) => stats::run(args),
        Command::Data {
            command: DataCommand::Inspect { path, format, json },
        } => data::inspect(&path, &format, json),
        Command::Confirm(args) => runtime()?.block_on(confirm::run(args)),
        Command::Bench {
            command: BenchCommand::Train(args),
        } => bench::train(args),
        Command::Bench {
            command: BenchCommand::Scheduler(args),
        } => runtime()?.block_on(bench::scheduler(args)),
    }
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
