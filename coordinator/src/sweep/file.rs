//! The raw TOML shape of a sweep file and its validation.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use sigsweep_types::command::{COMMAND_MODEL, CommandSpec};

use super::locate::SpanLocator;
use super::{
    MAX_TRIALS, MODEL_KEY, ParamValue, SweepError, SweepSpec, applies, config_key, is_training_key,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSweep {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    model: RawModel,
    /// Optional for a training program (`name = "command"`).
    #[serde(default)]
    dataset: Option<RawDataset>,
    #[serde(default)]
    training: Option<TrainingSection>,
    #[serde(default)]
    grid: IndexMap<Spanned<String>, Spanned<Vec<Spanned<toml::Value>>>>,
    #[serde(default)]
    seeds: Option<Spanned<SeedsSpec>>,
    #[serde(default)]
    baseline: Option<Spanned<IndexMap<Spanned<String>, Spanned<toml::Value>>>>,
    metrics: RawMetrics,
    #[serde(default)]
    resources: ResourcesSection,
}

#[derive(Debug, Default, Deserialize)]
struct RawModel {
    /// Optional when the grid names the models (`model = [...]`).
    #[serde(default)]
    name: Option<Spanned<String>>,
    #[serde(flatten)]
    params: IndexMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    kind: Spanned<String>,
    #[serde(default)]
    generator: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    params: IndexMap<String, Spanned<toml::Value>>,
    /// Cross-validation: the number of folds.
    #[serde(default)]
    folds: Option<Spanned<i64>>,
    /// `session` (IEMOCAP), `dialogue` or `example`.
    #[serde(default)]
    fold_by: Option<Spanned<String>>,
    /// Seed of the fold partition (default 0).
    #[serde(default)]
    fold_seed: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    select: Spanned<String>,
    #[serde(default)]
    select_goal: Option<Goal>,
    #[serde(default)]
    select_split: Option<Spanned<String>>,
    report: Spanned<IndexMap<String, Goal>>,
}

/// The model to train and its fixed parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSection {
    pub name: String,
    pub params: IndexMap<String, ParamValue>,
    /// `[model.<name>]`: fixed parameters (training settings included) of one
    /// model of a swept `model`, over `params` and `[training]`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub per_model: IndexMap<String, IndexMap<String, ParamValue>>,
    /// How to run a training program (`name = "command"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandSpec>,
}

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSection {
    /// `synthetic`, or a file format: `iemocap`, `meld`, `m3ed`, `mmsa`.
    pub kind: String,
    pub generator: Option<String>,
    pub path: Option<String>,
    pub params: IndexMap<String, serde_json::Value>,
    /// Cross-validation folds; each trial holds one out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<Folds>,
}

/// `[dataset] folds`, `fold_by`, `fold_seed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Folds {
    pub folds: u32,
    pub by: sigsweep_data::folds::FoldBy,
    pub seed: u64,
}

/// Most folds a sweep may ask for.
pub const MAX_FOLDS: i64 = 20;

/// Most GPUs a trial may ask for and trials a GPU may be shared by: a
/// worker registers at most as many (`service::MAX_WORKER_GPUS`), so a
/// trial asking more could never start.
pub const MAX_GPUS: u32 = 1024;

/// Training settings shared by every trial (grid keys may override them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSection {
    pub epochs: u32,
    pub batch_size: u32,
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Gradient-norm clipping; 0 disables it.
    #[serde(default)]
    pub grad_clip: f64,
    /// Fraction of training data carved out for validation when the dataset
    /// has no validation split.
    #[serde(default = "default_valid_fraction")]
    pub valid_fraction: f64,
    /// What each trial saves in its worker's artifacts directory:
    /// `"predictions"` (per-example test predictions at the selected epoch),
    /// `"weights"` (the selected epoch's weights as safetensors) and
    /// `"checkpoints"` (every epoch's state, to resume from).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub save: Vec<String>,
}

/// What a trial can save (`[training] save`).
pub const SAVE_KINDS: &[&str] = &["predictions", "weights", "checkpoints"];

fn default_valid_fraction() -> f64 {
    0.1
}

impl TrainingSection {
    pub(super) fn as_params(&self) -> IndexMap<String, ParamValue> {
        let mut p = IndexMap::new();
        p.insert("epochs".into(), ParamValue::Int(i64::from(self.epochs)));
        p.insert(
            "batch_size".into(),
            ParamValue::Int(i64::from(self.batch_size)),
        );
        p.insert("lr".into(), ParamValue::Float(self.lr));
        p.insert("weight_decay".into(), ParamValue::Float(self.weight_decay));
        p.insert("grad_clip".into(), ParamValue::Float(self.grad_clip));
        p.insert(
            "valid_fraction".into(),
            ParamValue::Float(self.valid_fraction),
        );
        if self.save.iter().any(|s| s == "predictions") {
            p.insert("save_predictions".into(), ParamValue::Bool(true));
        }
        if self.save.iter().any(|s| s == "weights") {
            p.insert("save_weights".into(), ParamValue::Bool(true));
        }
        if self.save.iter().any(|s| s == "checkpoints") {
            p.insert("save_checkpoints".into(), ParamValue::Bool(true));
        }
        p
    }
}

pub use sigsweep_types::Goal;

/// Which metrics select epochs and which are reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSection {
    /// Metric that selects the epoch of every trial and the best configuration.
    pub select: String,
    pub select_goal: Goal,
    /// `valid` (default) or `test` (MM-DFN's protocol; the report says so).
    pub select_split: String,
    /// Test metrics reported, with their goals, in file order.
    pub report: IndexMap<String, Goal>,
}

/// Resources and retry policy per trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcesSection {
    /// GPUs per trial (0 = CPU); more than one trains data-parallel.
    pub gpus_per_trial: u32,
    /// How many trials may share one GPU.
    pub trials_per_gpu: u32,
    /// Attempts after the first before a trial is marked failed.
    pub max_retries: u32,
    /// Times a trial may lose its worker while running it (the process died
    /// or stopped renewing its lease) before it fails instead of being
    /// leased again: a trial that takes down every worker it runs on (out
    /// of memory, a crash) would otherwise do so forever. 0: no limit.
    /// (Left out of the sweep's id at its default, so sweeps written before
    /// it existed keep their ids and resume.)
    #[serde(skip_serializing_if = "is_default_lost_workers")]
    pub max_lost_workers: u32,
    /// Longest one attempt of a trial may run (`"2h"`, `"90m"`); past it the
    /// attempt fails ("ran longer than trial_timeout") and is retried up to
    /// `max_retries`: a hung program (a collective that never returns, a
    /// deadlocked data loader) would otherwise hold its worker forever.
    /// Unset: no limit.
    #[serde(
        default,
        with = "sigsweep_types::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub trial_timeout: Option<std::time::Duration>,
    /// Train the seeds of one configuration as one fused model.
    pub fuse_seeds: bool,
}

const DEFAULT_LOST_WORKERS: u32 = 3;

fn is_default_lost_workers(n: &u32) -> bool {
    *n == DEFAULT_LOST_WORKERS
}

impl Default for ResourcesSection {
    fn default() -> Self {
        Self {
            gpus_per_trial: 0,
            trials_per_gpu: 1,
            max_retries: 2,
            max_lost_workers: DEFAULT_LOST_WORKERS,
            trial_timeout: None,
            fuse_seeds: false,
        }
    }
}

/// `seeds = 10` (seeds 0..9) or `seeds = [3, 7, 11]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "a count of seeds (`seeds = 10`: seeds 0 to 9) or a list of seeds (`seeds = [3, 7, 11]`), each a whole number >= 0"
)]
pub enum SeedsSpec {
    Count(u64),
    List(Vec<u64>),
}

/// Longest sweep name.
pub const MAX_NAME_LEN: usize = 100;

/// A sweep's name becomes a directory name (`sigsweep-state/<name>`) and
/// part of its id: `[A-Za-z0-9._-]`, at most [`MAX_NAME_LEN`] characters,
/// no `..`, not starting with a dot.
fn check_sweep_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} characters long, more than the limit of {MAX_NAME_LEN}",
            name.chars().count()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{c:?} is not allowed: a sweep name may only hold letters, digits, `.`, `_` and `-` (it names a directory)"
        ));
    }
    if name.contains("..") || name.starts_with('.') {
        return Err("must not start with `.` or contain `..` (it names a directory)".into());
    }
    Ok(())
}

impl RawSweep {
    pub(super) fn validate(
        self,
        loc: &SpanLocator<'_>,
        source: &str,
        source_name: &str,
    ) -> Result<SweepSpec, SweepError> {
        let name = self.name.get_ref().trim().to_string();
        if let Err(message) = check_sweep_name(&name) {
            return Err(loc.at(self.name.span().start, Some("name".into()), message));
        }

        // Model: `[model] name`, or the grid's `model` key (one sweep, several
        // models paired by seed); the grid's first model stands for the sweep.
        let grid_models = self.grid.iter().find(|(k, _)| k.get_ref() == MODEL_KEY);
        let model_name = match (&self.model.name, grid_models) {
            (Some(name), None) => {
                let n = name.get_ref().trim().to_string();
                if n.is_empty() {
                    return Err(loc.at(
                        name.span().start,
                        Some("model.name".into()),
                        "must not be empty",
                    ));
                }
                n
            }
            (Some(name), Some(_)) => {
                return Err(loc.at(
                    name.span().start,
                    Some("model.name".into()),
                    "the grid names the models (`model = [...]`): leave `name` out of [model]",
                ));
            }
            (None, Some((key, values))) => {
                let mut first = None;
                for v in values.get_ref() {
                    match v.get_ref().as_str().map(str::trim) {
                        Some(n) if !n.is_empty() => {
                            first.get_or_insert_with(|| n.to_string());
                        }
                        _ => {
                            return Err(loc.at(
                                v.span().start,
                                Some(format!("grid.{MODEL_KEY}")),
                                "model names are non-empty strings",
                            ));
                        }
                    }
                }
                first.ok_or_else(|| {
                    loc.at(
                        key.span().start,
                        Some(format!("grid.{MODEL_KEY}")),
                        "the list of models is empty",
                    )
                })?
            }
            (None, None) => {
                return Err(loc.key_error(
                    "model",
                    "name",
                    "name the model: `name = \"...\"` in [model], or `model = [...]` in [grid]"
                        .into(),
                ));
            }
        };
        let mut model_params = IndexMap::new();
        let mut per_model: IndexMap<String, IndexMap<String, ParamValue>> = IndexMap::new();
        let swept_models: Vec<String> = grid_models
            .map(|(_, values)| {
                values
                    .get_ref()
                    .iter()
                    .filter_map(|v| v.get_ref().as_str().map(|m| m.trim().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if swept_models.len() > 1
            && let Some((key, _)) = grid_models
            && swept_models.iter().any(|m| m == COMMAND_MODEL)
        {
            return Err(loc.at(
                key.span().start,
                Some(format!("grid.{MODEL_KEY}")),
                "a training program (`command`) cannot be swept together with other models: give it its own sweep",
            ));
        }
        let is_command = model_name == COMMAND_MODEL;
        for (k, v) in &self.model.params {
            if is_command && super::command::COMMAND_KEYS.contains(&k.as_str()) {
                continue;
            }
            if let toml::Value::Table(table) = v {
                let table_name = format!("model.{k}");
                if !swept_models.contains(k) {
                    return Err(loc.key_error(
                        "model",
                        k,
                        format!(
                            "[{table_name}] sets parameters of one model of a swept `model`, but `{k}` is not in the grid's `model` list"
                        ),
                    ));
                }
                let mut params = IndexMap::new();
                for (pk, pv) in table {
                    let value = super::value::from_toml(pv).ok_or_else(|| {
                        loc.key_error(
                            &table_name,
                            pk,
                            "must be a number, a string or a boolean".into(),
                        )
                    })?;
                    params.insert(pk.clone(), value);
                }
                per_model.insert(k.clone(), params);
                continue;
            }
            if is_training_key(k) {
                return Err(loc.key_error(
                    "model",
                    k,
                    format!("`{k}` is a training setting: set it in [training]"),
                ));
            }
            let pv = super::value::from_toml(v).ok_or_else(|| {
                loc.key_error("model", k, "must be a number, a string or a boolean".into())
            })?;
            model_params.insert(k.clone(), pv);
        }

        // Training: optional for a training program, required otherwise.
        let command = model_name == COMMAND_MODEL;
        if let Some(t) = &self.training {
            // Each setting against its declaration (type and range), the
            // same one workers check each trial's settings with.
            for (k, v) in t.as_params() {
                if let Some(d) = sigsweep_types::params::training(&k) {
                    d.check(v.as_scalar())
                        .map_err(|m| loc.key_error("training", &k, m))?;
                }
            }
            if let Some(bad) = t.save.iter().find(|s| !SAVE_KINDS.contains(&s.as_str())) {
                return Err(loc.key_error(
                    "training",
                    "save",
                    format!(
                        "cannot save `{bad}`; a trial saves: {} (weights are not written yet)",
                        SAVE_KINDS.join(", ")
                    ),
                ));
            }
            if command && let Some(bad) = t.save.iter().find(|s| s.as_str() != "predictions") {
                return Err(loc.key_error(
                    "training",
                    "save",
                    format!(
                        "a training program's trials cannot save `{bad}`: sigsweep keeps what the program writes to $SIGSWEEP_OUTPUT_DIR, and its predictions.jsonl"
                    ),
                ));
            }
        } else if !command {
            return Err(loc.at(0, Some("training".into()), "missing table [training]"));
        }
        // Grid.
        let mut grid: IndexMap<String, Vec<ParamValue>> = IndexMap::new();
        let mut trials: usize = 1;
        // The grid key with the most values: what to name when the grid
        // alone makes too many trials.
        let mut longest: Option<(usize, String, usize)> = None;
        for (key, values) in &self.grid {
            let k = key.get_ref().clone();
            let key_name = Some(format!("grid.{k}"));
            if model_params.contains_key(&k) {
                return Err(loc.at(
                    key.span().start,
                    key_name,
                    format!("`{k}` is both fixed in [model] and swept in [grid]: keep one"),
                ));
            }
            if values.get_ref().is_empty() {
                return Err(loc.at(values.span().start, key_name, "the list of values is empty"));
            }
            let mut converted: Vec<ParamValue> = Vec::new();
            for v in values.get_ref() {
                let pv = super::value::from_toml(v.get_ref()).ok_or_else(|| {
                    loc.at(
                        v.span().start,
                        key_name.clone(),
                        "values must be numbers, strings or booleans",
                    )
                })?;
                if converted.contains(&pv) {
                    return Err(loc.at(
                        v.span().start,
                        key_name.clone(),
                        format!("duplicate value {pv}"),
                    ));
                }
                if let Some(first) = converted.first()
                    && std::mem::discriminant(first) != std::mem::discriminant(&pv)
                    && !(first.as_f64().is_some() && pv.as_f64().is_some())
                {
                    return Err(loc.at(
                        v.span().start,
                        key_name.clone(),
                        format!("value {pv} has a different type from the first value {first}"),
                    ));
                }
                converted.push(pv);
            }
            trials = trials.saturating_mul(converted.len());
            if longest
                .as_ref()
                .is_none_or(|(_, _, n)| converted.len() > *n)
            {
                longest = Some((key.span().start, k.clone(), converted.len()));
            }
            grid.insert(k, converted);
        }
        let configurations = trials;

        // Seeds. The trial count is checked before anything proportional to
        // it is allocated: `seeds = 1000000000` must not allocate 8 GB. The
        // error names the grid's longest list when the configurations alone
        // are too many, the seeds otherwise.
        let too_many = |trials: u64, seeds_offset: usize| {
            let message = format!(
                "the sweep expands to {trials} trials ({configurations} configurations × seeds), \
                 more than the limit of {MAX_TRIALS}"
            );
            match &longest {
                Some((offset, key, _)) if configurations > MAX_TRIALS => {
                    loc.at(*offset, Some(format!("grid.{key}")), message)
                }
                _ => loc.at(seeds_offset, Some("seeds".into()), message),
            }
        };
        let (seeds, seeds_offset) = match &self.seeds {
            None => ((0..10).collect::<Vec<u64>>(), 0),
            Some(s) => {
                let seeds = match s.get_ref() {
                    SeedsSpec::Count(n) => {
                        let total = (trials as u64).saturating_mul(*n);
                        if total > MAX_TRIALS as u64 {
                            return Err(too_many(total, s.span().start));
                        }
                        (0..*n).collect()
                    }
                    SeedsSpec::List(list) => list.clone(),
                };
                (seeds, s.span().start)
            }
        };
        if seeds.is_empty() {
            return Err(loc.at(
                seeds_offset,
                Some("seeds".into()),
                "at least one seed is needed",
            ));
        }
        let mut sorted = seeds.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(loc.at(seeds_offset, Some("seeds".into()), "duplicate seed"));
        }
        trials = trials.saturating_mul(seeds.len());
        if trials > MAX_TRIALS {
            return Err(too_many(trials as u64, seeds_offset));
        }

        // Baseline: a point of the grid.
        let mut baseline = IndexMap::new();
        match &self.baseline {
            None if grid.is_empty() => {}
            None => {
                return Err(loc.at(
                    0,
                    Some("baseline".into()),
                    "a sweep with a grid needs `baseline = { … }` naming one value per grid key",
                ));
            }
            Some(b) => {
                for (key, value) in b.get_ref() {
                    let k = key.get_ref();
                    let Some(values) = grid.get(k) else {
                        return Err(loc.at(
                            key.span().start,
                            Some(format!("baseline.{k}")),
                            format!("`{k}` is not a grid key"),
                        ));
                    };
                    let pv = super::value::from_toml(value.get_ref())
                        .filter(|pv| values.contains(pv))
                        .ok_or_else(|| {
                            loc.at(
                                value.span().start,
                                Some(format!("baseline.{k}")),
                                format!(
                                    "baseline value is not in the grid (grid values: {})",
                                    values
                                        .iter()
                                        .map(ToString::to_string)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            )
                        })?;
                    baseline.insert(k.clone(), pv);
                }
                let baseline_model = match baseline.get(MODEL_KEY) {
                    Some(ParamValue::Text(m)) => m.clone(),
                    _ => model_name.clone(),
                };
                let swept = grid.contains_key(MODEL_KEY);
                if let Some(missing) = grid
                    .keys()
                    .find(|k| !baseline.contains_key(*k) && (!swept || applies(&baseline_model, k)))
                {
                    return Err(loc.at(
                        b.span().start,
                        Some("baseline".into()),
                        format!("the baseline names no value for grid key `{missing}`"),
                    ));
                }
                // Keep grid order.
                baseline = grid
                    .keys()
                    .filter_map(|k| baseline.get(k).map(|v| (k.clone(), v.clone())))
                    .collect();
            }
        }
        // A key the baseline's model does not take is not part of its
        // configuration (the grid's configurations drop it the same way).
        let baseline_model = match baseline.get(MODEL_KEY) {
            Some(ParamValue::Text(m)) => m.clone(),
            _ => model_name.clone(),
        };
        if grid.contains_key(MODEL_KEY) {
            baseline.retain(|k, _| applies(&baseline_model, k));
        }
        debug_assert!(grid.is_empty() || !config_key(&baseline).is_empty());

        // Metrics.
        let m = &self.metrics;
        if m.report.get_ref().is_empty() {
            return Err(loc.at(
                m.report.span().start,
                Some("metrics.report".into()),
                "name at least one metric, e.g. report = { accuracy = \"max\" }",
            ));
        }
        let select = m.select.get_ref().clone();
        let select_goal = match (m.select_goal, m.report.get_ref().get(&select)) {
            (Some(g), _) => g,
            (None, Some(g)) => *g,
            (None, None) => {
                return Err(loc.at(
                    m.select.span().start,
                    Some("metrics.select".into()),
                    format!(
                        "`{select}` is not in metrics.report: add it there or set select_goal = \"max\"|\"min\""
                    ),
                ));
            }
        };
        let select_split = match &m.select_split {
            None => "valid".to_string(),
            Some(s) if s.get_ref() == "valid" || s.get_ref() == "test" => s.get_ref().clone(),
            Some(s) => {
                return Err(loc.at(
                    s.span().start,
                    Some("metrics.select_split".into()),
                    "must be \"valid\" or \"test\"",
                ));
            }
        };

        let dataset = match &self.dataset {
            Some(d) => Some(dataset_section(
                d,
                loc,
                command,
                self.training.as_ref().map_or(0.1, |t| t.valid_fraction),
                &select_split,
            )?),
            None if command => None,
            None => return Err(loc.at(0, Some("dataset".into()), "missing table [dataset]")),
        };
        // Resources.
        if self.resources.gpus_per_trial > 1
            && self
                .training
                .as_ref()
                .is_some_and(|t| t.save.iter().any(|s| s == "checkpoints"))
        {
            return Err(loc.key_error(
                "training",
                "save",
                "checkpoints are written by trials on one device; a data-parallel trial \
                 (gpus_per_trial > 1) cannot save them yet"
                    .into(),
            ));
        }
        if self.resources.trials_per_gpu == 0 {
            return Err(loc.key_error("resources", "trials_per_gpu", "must be at least 1".into()));
        }
        for (key, n) in [
            ("gpus_per_trial", self.resources.gpus_per_trial),
            ("trials_per_gpu", self.resources.trials_per_gpu),
        ] {
            if n > MAX_GPUS {
                return Err(loc.key_error(
                    "resources",
                    key,
                    format!("{n} is more than the {MAX_GPUS} a worker can have"),
                ));
            }
        }
        if self.resources.trial_timeout.is_some_and(|t| t.is_zero()) {
            return Err(loc.key_error(
                "resources",
                "trial_timeout",
                "must be longer than 0 (leave it out for no limit)".into(),
            ));
        }

        let command_spec = if command {
            if self.resources.fuse_seeds {
                return Err(loc.key_error(
                    "resources",
                    "fuse_seeds",
                    "seed fusion is for built-in models; a training program runs one trial per process".into(),
                ));
            }
            Some(super::command::command_spec(&self.model.params, loc)?)
        } else {
            None
        };
        let spec = SweepSpec {
            name,
            description: self.description,
            model: ModelSection {
                name: model_name,
                params: model_params,
                per_model,
                command: command_spec,
            },
            dataset,
            training: self.training,
            grid,
            baseline,
            seeds,
            metrics: MetricsSection {
                select,
                select_goal,
                select_split,
                report: m.report.get_ref().clone(),
            },
            resources: self.resources,
            source: source.to_string(),
            source_name: source_name.to_string(),
        };
        if let Some(c) = &spec.model.command {
            super::command::check_templates(&spec, c, loc)?;
        }
        Ok(spec)
    }
}

/// Validates `[dataset]`: its kind and parameters, the validation split the
/// epochs are selected on, and its cross-validation folds.
fn dataset_section(
    d: &RawDataset,
    loc: &SpanLocator<'_>,
    program: bool,
    valid_fraction: f64,
    select_split: &str,
) -> Result<DatasetSection, SweepError> {
    // Dataset.
    let kind = d.kind.get_ref().clone();
    match kind.as_str() {
        "synthetic" => {
            if d.generator.is_none() {
                return Err(loc.at(
                    d.kind.span().start,
                    Some("dataset.generator".into()),
                    "a synthetic dataset needs `generator` (e.g. \"fusion\", \"erc\", \"msa\")",
                ));
            }
        }
        "iemocap" | "meld" | "m3ed" | "mmsa" => {
            if d.path.is_none() {
                return Err(loc.at(
                    d.kind.span().start,
                    Some("dataset.path".into()),
                    format!("a `{kind}` dataset needs `path`"),
                ));
            }
        }
        other => {
            return Err(loc.at(
                d.kind.span().start,
                Some("dataset.kind".into()),
                format!(
                    "unknown dataset kind `{other}`; expected synthetic, iemocap, meld, m3ed or mmsa"
                ),
            ));
        }
    }
    let mut dataset_params = IndexMap::new();
    for (k, v) in &d.params {
        let json = serde_json::to_value(v.get_ref()).map_err(|e| {
            loc.at(
                v.span().start,
                Some(format!("dataset.params.{k}")),
                e.to_string(),
            )
        })?;
        dataset_params.insert(k.clone(), json);
    }
    // The parameters the dataset kind declares: names, types, ranges,
    // and the memory a generator would allocate.
    let params_json = serde_json::Value::Object(
        dataset_params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    if let Err(e) =
        sigsweep_data::synthetic::check_dataset(&kind, d.generator.as_deref(), &params_json)
    {
        let (key, message) = match e {
            sigsweep_data::DataError::Param { key, message } => (key, message),
            other => (String::new(), other.to_string()),
        };
        // A key the file sets points at its line (a message naming several
        // keys as `a/b` points at the first one the file sets).
        let found = key
            .split('/')
            .find_map(|k| d.params.get(k).map(|v| (k.to_string(), v.span().start)));
        return Err(match found {
            Some((k, offset)) => loc.at(offset, Some(format!("dataset.params.{k}")), message),
            None if key == "generator" || key == "kind" => {
                loc.at(d.kind.span().start, Some(format!("dataset.{key}")), message)
            }
            None => loc.at(
                d.kind.span().start,
                Some(format!("dataset.params.{key}")),
                message,
            ),
        });
    }

    // The selection split must exist: with no validation split every
    // epoch would score the same and the first would be kept silently.
    // (A training program carves its own validation split.)
    if select_split == "valid" && !program {
        let params_json = serde_json::to_value(&dataset_params).unwrap_or_default();
        let empty = sigsweep_data::synthetic::empty_validation(
            &kind,
            d.generator.as_deref(),
            &params_json,
            valid_fraction,
        )
        .ok()
        .flatten();
        if let Some((key, why)) = empty {
            let message = format!(
                "{why}, but epochs are selected on it (metrics.select_split = \"valid\"): \
                 give the validation split a positive {key}, or select on the test split \
                 with metrics.select_split = \"test\" (MM-DFN's protocol; the report says so)"
            );
            return Err(match (key, d.params.get(key)) {
                ("valid_rate", Some(v)) => loc.at(
                    v.span().start,
                    Some("dataset.params.valid_rate".into()),
                    message,
                ),
                ("valid_rate", None) => loc.at(
                    d.kind.span().start,
                    Some("dataset.params.valid_rate".into()),
                    message,
                ),
                _ => loc.key_error("training", "valid_fraction", message),
            });
        }
    }

    // Cross-validation folds.
    let erc = matches!(kind.as_str(), "iemocap" | "meld" | "m3ed")
        || (kind == "synthetic" && d.generator.as_deref() == Some("erc"));
    let folds = match &d.folds {
        None => {
            for (key, span) in [
                ("fold_by", d.fold_by.as_ref().map(|s| s.span().start)),
                ("fold_seed", d.fold_seed.as_ref().map(|s| s.span().start)),
            ] {
                if let Some(offset) = span {
                    return Err(loc.at(
                        offset,
                        Some(format!("dataset.{key}")),
                        "needs `folds` (the number of cross-validation folds)",
                    ));
                }
            }
            None
        }
        Some(n) => {
            let folds = *n.get_ref();
            if !(2..=MAX_FOLDS).contains(&folds) {
                return Err(loc.at(
                    n.span().start,
                    Some("dataset.folds".into()),
                    format!("must be between 2 and {MAX_FOLDS}"),
                ));
            }
            let by = match &d.fold_by {
                None if kind == "iemocap" => sigsweep_data::folds::FoldBy::Session,
                None if erc => sigsweep_data::folds::FoldBy::Dialogue,
                None => sigsweep_data::folds::FoldBy::Example,
                Some(b) => {
                    let by = sigsweep_data::folds::FoldBy::parse(b.get_ref()).ok_or_else(|| {
                        loc.at(
                            b.span().start,
                            Some("dataset.fold_by".into()),
                            "must be \"session\", \"dialogue\" or \"example\"",
                        )
                    })?;
                    use sigsweep_data::folds::FoldBy;
                    let fits = match by {
                        FoldBy::Session => kind == "iemocap",
                        FoldBy::Dialogue => erc,
                        FoldBy::Example => !erc,
                    };
                    if !fits {
                        return Err(loc.at(
                            b.span().start,
                            Some("dataset.fold_by".into()),
                            format!(
                                "a `{kind}` dataset cannot fold by {}: sessions are IEMOCAP's, dialogues fold dialogue datasets, examples fold sequence datasets",
                                by.as_str()
                            ),
                        ));
                    }
                    by
                }
            };
            let seed = match &d.fold_seed {
                None => 0,
                Some(s) => u64::try_from(*s.get_ref()).map_err(|_| {
                    loc.at(
                        s.span().start,
                        Some("dataset.fold_seed".into()),
                        "must be a non-negative integer",
                    )
                })?,
            };
            Some(Folds {
                folds: folds as u32,
                by,
                seed,
            })
        }
    };

    Ok(DatasetSection {
        kind,
        generator: d.generator.clone(),
        path: d.path.clone(),
        params: dataset_params,
        folds,
    })
}
