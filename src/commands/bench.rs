//! `sigsweep bench`: training throughput ([`sigsweep_worker::bench`]) and
//! scheduler throughput ([`sigsweep_coordinator::bench`]).

use std::process::ExitCode;

use anyhow::Context;

use sigsweep_coordinator::bench::{Protocol, SchedulerBench};
use sigsweep_worker::bench::{Mode, TrainBench};

use crate::cli::{BenchMode, BenchProtocol, BenchSchedulerArgs, BenchTrainArgs};

pub fn train(args: BenchTrainArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the sigsweep executable")?;
    let bench = TrainBench {
        model: args.model,
        dataset: args.dataset,
        epochs: args.epochs,
        backend: args.backend,
        params: args.params,
        threads: args.threads,
        mode: match args.mode {
            BenchMode::Single => Mode::Single,
            BenchMode::Packed => Mode::Packed,
            BenchMode::Fused => Mode::Fused,
            BenchMode::Dp => Mode::Dp,
        },
        k: args.k,
        seeds: args.seeds,
        devices: args.devices,
        trial_epochs: args.trial_epochs,
        json: args.json,
        count_products: args.count_products,
        generic_ops: args.generic_ops,
        composite_attention: args.composite_attention,
        exe: vec![exe.display().to_string()],
    };
    let figures = sigsweep_worker::bench::train(&bench)?;
    if bench.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        println!("{}", figures.summary());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn scheduler(args: BenchSchedulerArgs) -> anyhow::Result<ExitCode> {
    let bench = SchedulerBench {
        workers: args.workers,
        trials: args.trials,
        trial_ms: args.trial_ms,
        store: args.store,
        protocol: match args.protocol {
            BenchProtocol::Reserve => Protocol::Reserve,
            BenchProtocol::Acquire => Protocol::Acquire,
        },
        etcd_url: args.etcd_url,
    };
    println!("{}", sigsweep_coordinator::bench::run(&bench).await?);
    Ok(ExitCode::SUCCESS)
}
