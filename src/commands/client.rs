//! Remote client commands: submit, status, watch, cancel, results.

use std::process::ExitCode;

use anyhow::Context;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use sigsweep_proto::v1 as pb;
use sigsweep_proto::v1::sweep_service_client::SweepServiceClient;

use crate::cli::{ResultsArgs, ResultsFormat, StatusArgs, SubmitArgs, SweepRef};

pub async fn connect(url: &str) -> anyhow::Result<SweepServiceClient<Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .with_context(|| format!("invalid coordinator URL `{url}`"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot reach the coordinator at {url}"))?;
    Ok(SweepServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024))
}

fn state_name(s: i32) -> &'static str {
    match pb::SweepState::try_from(s) {
        Ok(pb::SweepState::Running) => "running",
        Ok(pb::SweepState::Finished) => "finished",
        Ok(pb::SweepState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

fn print_status(s: &pb::SweepStatus) {
    println!(
        "{}  {:<9}  {}/{} done, {} failed, {} running, {} queued",
        s.sweep_id,
        state_name(s.state),
        s.completed,
        s.total,
        s.failed,
        s.running,
        s.queued
    );
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let (text, _) = super::run::load_sweep(&args.sweep)?;
    let mut client = connect(&args.remote.coordinator).await?;
    let r = client
        .submit_sweep(pb::SubmitSweepRequest {
            sweep_toml: text,
            source_name: args.sweep.display().to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!("{}", r.sweep_id);
    eprintln!(
        "{} trials{}",
        r.total_trials,
        if r.created { "" } else { " (already submitted)" }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.remote.coordinator).await?;
    match args.sweep {
        Some(id) => {
            let s = client
                .get_sweep(pb::GetSweepRequest { sweep_id: id })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            print_status(&s);
        }
        None => {
            let list = client
                .list_sweeps(pb::ListSweepsRequest {})
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            if list.sweeps.is_empty() {
                println!("no sweeps");
            }
            for s in &list.sweeps {
                print_status(s);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn watch(args: SweepRef) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.remote.coordinator).await?;
    let mut stream = client
        .watch_sweep(pb::GetSweepRequest {
            sweep_id: args.sweep,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} trials  {msg}  [{elapsed_precise}, ETA {eta}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut last = None;
    while let Some(s) = stream.next().await {
        let s = s.map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        bar.set_length(u64::from(s.total));
        bar.set_position(u64::from(s.completed + s.failed));
        bar.set_message(format!("done {} · failed {} · running {}", s.completed, s.failed, s.running));
        last = Some(s);
    }
    bar.finish();
    if let Some(s) = last {
        print_status(&s);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(args: SweepRef) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.remote.coordinator).await?;
    let s = client
        .cancel_sweep(pb::CancelSweepRequest {
            sweep_id: args.sweep,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    print_status(&s);
    Ok(ExitCode::SUCCESS)
}

/// Converts a wire result into the JSON shape of `results.jsonl`.
pub fn result_json(r: &pb::TrialResult) -> serde_json::Value {
    let value = |v: &pb::ParamValue| match &v.kind {
        Some(pb::param_value::Kind::Float(x)) => serde_json::json!(x),
        Some(pb::param_value::Kind::Int(i)) => serde_json::json!(i),
        Some(pb::param_value::Kind::Text(s)) => serde_json::json!(s),
        Some(pb::param_value::Kind::Flag(b)) => serde_json::json!(b),
        None => serde_json::Value::Null,
    };
    let config: serde_json::Map<String, serde_json::Value> = r
        .config
        .iter()
        .map(|p| (p.name.clone(), p.value.as_ref().map_or(serde_json::Value::Null, value)))
        .collect();
    let metrics = |m: &Option<pb::Metrics>| -> std::collections::BTreeMap<String, f64> {
        m.as_ref().map(|m| m.values.clone().into_iter().collect()).unwrap_or_default()
    };
    serde_json::json!({
        "trial_id": r.trial_id,
        "config_key": r.config_key,
        "config": config,
        "seed": r.seed,
        "status": if r.outcome == pb::TrialOutcome::Completed as i32 { "completed" } else { "failed" },
        "metrics": metrics(&r.test_metrics),
        "valid_metrics": metrics(&r.valid_metrics),
        "selected_epoch": if r.outcome == pb::TrialOutcome::Completed as i32 { Some(r.selected_epoch) } else { None },
        "failure": if r.failure.is_empty() { None } else { Some(&r.failure) },
        "attempts": r.attempts,
        "seconds": r.seconds,
        "worker": r.worker,
    })
}

pub async fn fetch_results(url: &str, sweep: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut client = connect(url).await?;
    let list = client
        .list_results(pb::ListResultsRequest {
            sweep_id: sweep.to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    Ok(list.results.iter().map(result_json).collect())
}

pub async fn results(args: ResultsArgs) -> anyhow::Result<ExitCode> {
    let rows = fetch_results(&args.remote.coordinator, &args.sweep).await?;
    match args.format {
        ResultsFormat::Jsonl => {
            for r in &rows {
                println!("{r}");
            }
        }
        ResultsFormat::Csv => {
            let mut config_keys: Vec<String> = Vec::new();
            let mut metric_keys: Vec<String> = Vec::new();
            for r in &rows {
                for k in r["config"].as_object().into_iter().flatten().map(|(k, _)| k) {
                    if !config_keys.contains(k) {
                        config_keys.push(k.clone());
                    }
                }
                for k in r["metrics"].as_object().into_iter().flatten().map(|(k, _)| k) {
                    if !metric_keys.contains(k) {
                        metric_keys.push(k.clone());
                    }
                }
            }
            let mut header = vec!["trial_id".to_string(), "seed".into(), "status".into()];
            header.extend(config_keys.iter().cloned());
            header.extend(metric_keys.iter().cloned());
            println!("{}", header.join(","));
            for r in &rows {
                let mut line = vec![
                    r["trial_id"].as_str().unwrap_or_default().to_string(),
                    r["seed"].to_string(),
                    r["status"].as_str().unwrap_or_default().to_string(),
                ];
                for k in &config_keys {
                    line.push(match &r["config"][k] {
                        serde_json::Value::String(s) => s.clone(),
                        v => v.to_string(),
                    });
                }
                for k in &metric_keys {
                    line.push(r["metrics"][k].as_f64().map(|v| v.to_string()).unwrap_or_default());
                }
                println!("{}", line.join(","));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
