//! `sigsweep predict`: a weights file in, a predictions file out
//! ([`sigsweep_worker::predict`]).

use std::process::ExitCode;

use anyhow::{Context, bail};

use sigsweep_worker::predict::PredictArgs as Request;
use sigsweep_worker::trial::{DatasetRequest, Split};

use crate::cli::PredictArgs;

pub fn run(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let split = match args.split.as_str() {
        "test" => Split::Test,
        "valid" => Split::Valid,
        "train" => Split::Train,
        other => bail!("--split `{other}`: expected test, valid or train"),
    };
    let dataset = match args.data.as_deref() {
        None => None,
        Some(name) if name.starts_with("synthetic-") => {
            let (generator, params) = sigsweep_worker::bench::dataset(name)?;
            Some(DatasetRequest {
                kind: "synthetic".into(),
                generator,
                path: String::new(),
                params,
                fold: None,
            })
        }
        Some(path) => {
            if !matches!(args.format.as_str(), "iemocap" | "meld" | "m3ed" | "mmsa") {
                bail!(
                    "--format `{}`: expected iemocap, meld, m3ed or mmsa",
                    args.format
                );
            }
            let params = match &args.data_params {
                Some(text) => serde_json::from_str(text).context("--data-params")?,
                None => serde_json::json!({}),
            };
            Some(DatasetRequest {
                kind: args.format.clone(),
                generator: String::new(),
                path: path.to_string(),
                params,
                fold: None,
            })
        }
    };
    let params = args
        .params
        .iter()
        .map(|kv| sigsweep_worker::bench::parse_param(kv))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let summary = sigsweep_worker::predict::predict(&Request {
        weights: args.weights,
        model: args.model,
        params,
        dataset,
        seed: args.seed,
        split,
        out: args.out,
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let score = match (summary.accuracy, summary.mae) {
            (Some(a), _) => format!(", accuracy {a:.4}"),
            (_, Some(m)) => format!(", MAE {m:.4}"),
            _ => String::new(),
        };
        println!(
            "{}: {} examples{score} → {}",
            summary.model, summary.examples, summary.out
        );
    }
    Ok(ExitCode::SUCCESS)
}
