//! The client commands: `submit`, `status`, `watch`, `cancel`, `results`
//! (over [`sigsweep_client::SweepApi`]).

use std::process::ExitCode;

use anyhow::bail;
use tokio_stream::StreamExt;
use tonic::Code;

use sigsweep_proto::v1 as pb;

use crate::cli::{LogsArgs, Remote, ResultsArgs, ResultsFormat, StatusArgs, SubmitArgs, SweepRef};

fn api(remote: &Remote) -> anyhow::Result<sigsweep_client::SweepApi> {
    crate::steps::sweep_api(&remote.coordinator, &remote.credentials)
}

fn print_status(s: &pb::SweepStatus) {
    let state = match pb::SweepState::try_from(s.state) {
        Ok(pb::SweepState::Running) => "running",
        Ok(pb::SweepState::Finished) => "finished",
        Ok(pb::SweepState::Cancelled) => "cancelled",
        _ => "unknown",
    };
    println!(
        "{}  {state:<9}  {}/{} done, {} failed, {} running, {} queued",
        s.sweep_id, s.completed, s.total, s.failed, s.running, s.queued
    );
    if !s.waiting.is_empty() {
        println!("  waiting: {}", s.waiting);
    }
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let (text, spec) = crate::steps::load_sweep(&args.sweep)?;
    for w in spec.warnings() {
        eprintln!("warning: {w}");
    }
    let r = api(&args.remote)?
        .submit(&text, &args.sweep.display().to_string())
        .await?;
    println!("{}", r.sweep_id);
    let again = if r.created {
        ""
    } else {
        " (already submitted)"
    };
    eprintln!("{} trials{again}", r.total_trials);
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let api = api(&args.remote)?;
    let sweeps = match &args.sweep {
        Some(id) => vec![api.status(id).await?],
        None => api.list().await?,
    };
    if sweeps.is_empty() {
        println!("no sweeps");
    }
    sweeps.iter().for_each(print_status);
    Ok(ExitCode::SUCCESS)
}

pub async fn watch(args: SweepRef) -> anyhow::Result<ExitCode> {
    let api = api(&args.remote)?;
    let bar = crate::steps::progress_bar(0);
    let mut last = None;
    'watch: loop {
        let mut stream = api.watch(&args.sweep).await?;
        while let Some(s) = stream.next().await {
            let s = match s {
                Ok(s) => s,
                // The coordinator went away (restart, new leader): watch again.
                Err(s) if s.code() == Code::Unavailable || s.code() == Code::Unknown => {
                    continue 'watch;
                }
                Err(s) => bail!("{}", s.message()),
            };
            bar.set_length(u64::from(s.total));
            bar.set_position(u64::from(s.completed + s.failed));
            bar.set_message(format!(
                "done {} · failed {} · running {}",
                s.completed, s.failed, s.running
            ));
            // Why nothing starts, once each time it changes (also when
            // stderr is no terminal and the bar is hidden).
            if last
                .as_ref()
                .is_none_or(|l: &pb::SweepStatus| l.waiting != s.waiting)
                && !s.waiting.is_empty()
            {
                let line = format!("waiting: {}", s.waiting);
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
            last = Some(s);
        }
        break;
    }
    bar.finish();
    if let Some(s) = last {
        print_status(&s);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(args: SweepRef) -> anyhow::Result<ExitCode> {
    print_status(&api(&args.remote)?.cancel(&args.sweep).await?);
    Ok(ExitCode::SUCCESS)
}

pub async fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    if let Some(state) = &args.state {
        if args.trial.is_empty()
            || !args
                .trial
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("`{}` is not a trial id", args.trial);
        }
        let path = state
            .join("artifacts")
            .join("logs")
            .join(format!("{}.log", args.trial));
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "no log at {} (only trials of training programs have one)",
                path.display()
            )
        })?;
        print!("{}", String::from_utf8_lossy(&text));
        return Ok(ExitCode::SUCCESS);
    }
    print!(
        "{}",
        api(&args.remote)?
            .trial_log(&args.sweep, &args.trial)
            .await?
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn results(args: ResultsArgs) -> anyhow::Result<ExitCode> {
    let records = api(&args.remote)?.results(&args.sweep).await?;
    match args.format {
        ResultsFormat::Jsonl => print!("{}", sigsweep_report::outputs::results_jsonl(&records)),
        ResultsFormat::Csv => print!("{}", sigsweep_report::outputs::results_csv(&records)?),
    }
    Ok(ExitCode::SUCCESS)
}
