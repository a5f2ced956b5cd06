//! `sigsweep predict`: a weights file in, a predictions file out.
//!
//! Loads a safetensors weights file into a freshly built model (strictly:
//! every tensor with its shape, nothing else), runs one split of a dataset
//! in inference mode and writes the same per-example predictions file a
//! trial writes (`[training] save = ["predictions"]`). Weights that sigsweep
//! wrote name their model, parameters, seed and dataset in the file's
//! metadata, so by default the trial's own network and data are rebuilt;
//! flags override each. Weights trained elsewhere (MM-DFN's `state_dict`
//! saved as safetensors) need `--model` and, for a network that is not the
//! default one, `--param`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use indexmap::IndexMap;

use crate::backend::BackendKind;
use crate::models;
use crate::trial::{
    DatasetRequest, Params, Prediction, Split, TrialRequest, Value, Weights, load_dataset,
    predictions_jsonl,
};

/// What to predict.
#[derive(Debug, Clone)]
pub struct PredictArgs {
    pub weights: PathBuf,
    /// The model (default: the file's `model` metadata).
    pub model: Option<String>,
    /// Parameters over the file's (`key`, value).
    pub params: Vec<(String, Value)>,
    /// The dataset (default: the file's `dataset` metadata).
    pub dataset: Option<DatasetRequest>,
    /// The seed of synthetic data and of any random draw at construction
    /// (default: the file's `seed`, else 0).
    pub seed: Option<u64>,
    pub split: Split,
    pub out: PathBuf,
}

/// What a prediction run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PredictSummary {
    pub model: String,
    pub examples: usize,
    /// Share of examples whose prediction equals the gold label
    /// (classification).
    pub accuracy: Option<f64>,
    /// Mean absolute error (regression).
    pub mae: Option<f64>,
    pub out: String,
}

/// Runs `args` on the CPU and writes the predictions file.
pub fn predict(args: &PredictArgs) -> anyhow::Result<PredictSummary> {
    let bytes = std::fs::read(&args.weights)
        .with_context(|| format!("cannot read {}", args.weights.display()))?;
    let weights =
        Weights::from_safetensors(&bytes).with_context(|| format!("{}", args.weights.display()))?;
    let described = weights.described()?;
    let model = match (&args.model, &described) {
        (Some(m), _) => m.clone(),
        (None, Some((m, _))) => m.clone(),
        (None, None) => bail!(
            "{} does not name its model (it was not written by sigsweep): give --model",
            args.weights.display()
        ),
    };
    let mut values: IndexMap<String, Value> = match &described {
        Some((m, p)) if *m == model => p.values().clone(),
        _ => IndexMap::new(),
    };
    for (k, v) in &args.params {
        values.insert(k.clone(), v.clone());
    }
    let dataset = match &args.dataset {
        Some(d) => d.clone(),
        None => weights.described_dataset()?.with_context(|| {
            format!(
                "{} does not name its dataset: give --data",
                args.weights.display()
            )
        })?,
    };
    let seed = match args.seed {
        Some(s) => s,
        None => weights
            .metadata
            .get("seed")
            .map(|s| s.parse::<u64>())
            .transpose()
            .context("the file's `seed` metadata")?
            .unwrap_or(0),
    };
    let params = Params::new(values);
    let req = TrialRequest {
        trial_id: "predict".into(),
        seed,
        model: model.clone(),
        params,
        dataset,
        select: String::new(),
        select_higher_is_better: true,
        select_split: Split::Valid,
        checkpoint: None,
        program: None,
    };
    models::check_request(&req)?;
    let valid_fraction = req.params.f64("valid_fraction", 0.1)?;
    let data = load_dataset(&req.dataset, req.seed, valid_fraction)?;
    let mut workload = models::build(&req, data, BackendKind::Cpu)?;
    workload
        .load_weights(weights)
        .with_context(|| format!("{} into `{model}`", args.weights.display()))?;
    let predictions = workload.predictions(args.split)?;
    let text = predictions_jsonl(&predictions)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&args.out, text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(summarise(model, &predictions, &args.out))
}

fn summarise(model: String, p: &[Prediction], out: &std::path::Path) -> PredictSummary {
    let n = p.len();
    let classifier = p.iter().any(|x| x.log_probs.is_some());
    let mean =
        |f: &dyn Fn(&Prediction) -> f64| (n > 0).then(|| p.iter().map(f).sum::<f64>() / n as f64);
    PredictSummary {
        model,
        examples: n,
        accuracy: if classifier {
            mean(&|x| f64::from(u8::from(x.pred == x.gold)))
        } else {
            None
        },
        mae: if classifier {
            None
        } else {
            mean(&|x| (x.pred - x.gold).abs())
        },
        out: out.display().to_string(),
    }
}
