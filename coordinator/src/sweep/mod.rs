//! Sweep files: parsing, validation and expansion into trials.
//!
//! A sweep file (TOML) names a model with its fixed parameters, a dataset, the
//! training settings, a grid of hyperparameters, the seeds and the baseline
//! configuration. [`SweepSpec::parse`] turns the text into a validated spec;
//! every error names the file, the line and the key. [`SweepSpec::trials`]
//! expands the spec into trials, one per (configuration, seed), each with an
//! id derived from the sweep's fixed settings, the configuration and the seed
//! only — so extending a grid or adding seeds keeps the ids (and therefore the
//! stored results) of the trials that were already there.

mod command;
mod confirm;
mod error;
mod file;
mod locate;
mod report;
mod value;

pub use confirm::Confirmation;
pub use error::SweepError;
pub use file::{
    DatasetSection, Goal, MAX_GPUS, MetricsSection, ModelSection, ResourcesSection, SeedsSpec,
    TrainingSection,
};
pub use value::ParamValue;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sigsweep_types::ModelDecl;

use file::RawSweep;
use locate::SpanLocator;

/// Maximum number of trials one sweep may expand into.
pub const MAX_TRIALS: usize = 100_000;

/// The grid key that names the model of a configuration (`[model] name`
/// swept: `model = ["mmic", "mmdfn"]`), so that one sweep compares models
/// paired by seed.
pub const MODEL_KEY: &str = "model";

/// Whether the parameter `key` applies to a trial of `model`: the model
/// key and training settings always do; a model parameter does when the
/// model declares it. Models without a built-in declaration (declared by
/// workers) take every parameter, and their workers check them.
pub fn applies(model: &str, key: &str) -> bool {
    key == MODEL_KEY
        || is_training_key(key)
        || sigsweep_types::params::model(model).is_none_or(|m| m.param(key).is_some())
}

/// Whether `key` names a training setting (declared in
/// `sigsweep_types::params::TRAINING`); grid keys may name these as well as
/// model parameters.
pub fn is_training_key(key: &str) -> bool {
    sigsweep_types::params::training(key).is_some()
}

/// A validated sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    pub name: String,
    pub description: Option<String>,
    pub model: ModelSection,
    /// Optional for a training program (`[model] name = "command"`).
    pub dataset: Option<DatasetSection>,
    /// Optional for a training program.
    pub training: Option<TrainingSection>,
    /// Hyperparameter → values, in file order.
    pub grid: IndexMap<String, Vec<ParamValue>>,
    /// The baseline configuration: one value for every grid key.
    pub baseline: IndexMap<String, ParamValue>,
    pub seeds: Vec<u64>,
    pub metrics: MetricsSection,
    pub resources: ResourcesSection,
    /// The file text the spec was parsed from.
    pub source: String,
    pub source_name: String,
}

/// One point of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Configuration {
    /// Canonical name, `k=v,k2=v2` in grid order (`default` for an empty grid).
    pub key: String,
    pub values: IndexMap<String, ParamValue>,
}

/// One trial: a configuration and a seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialPlan {
    pub trial_id: String,
    pub config: Configuration,
    pub seed: u64,
    /// The model this trial trains (the configuration's `model`, or the
    /// sweep's `[model] name`).
    #[serde(default)]
    pub model: String,
    /// Every resolved hyperparameter (fixed model and training parameters with
    /// the grid point applied), in a stable order.
    pub params: IndexMap<String, ParamValue>,
    /// The held-out cross-validation fold (`[dataset] folds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<u32>,
}

/// A model's own reading of a configuration's parameters (`model`,
/// resolved parameters): the offending key and why, when it refuses them.
/// The models live with the workers; the binary that links both hands
/// their check to the CLI's checks and to the coordinator
/// ([`crate::service::CoordinatorConfig::check_settings`]).
pub type SettingsCheck = fn(&str, &IndexMap<String, ParamValue>) -> Result<(), (String, String)>;

impl SweepSpec {
    /// Parses and validates a sweep file. `source_name` is the file name used
    /// in error messages.
    pub fn parse(source: &str, source_name: &str) -> Result<Self, SweepError> {
        let locator = SpanLocator::new(source, source_name);
        let raw: RawSweep = toml::from_str(source).map_err(|e| locator.toml_error(&e))?;
        raw.validate(&locator, source, source_name)
    }

    /// Checks model parameter names (fixed and swept) against the parameters
    /// the model accepts; an unknown one is an error naming its line.
    /// Checks that `gpus_per_trial > 1` (data parallelism) is only asked of
    /// a model whose trainer supports it.
    pub fn check_data_parallel(&self, supported: impl Fn(&str) -> bool) -> Result<(), SweepError> {
        let unsupported = self.models().into_iter().find(|m| !supported(m));
        if let (true, Some(model)) = (self.resources.gpus_per_trial > 1, unsupported) {
            let locator = SpanLocator::new(&self.source, &self.source_name);
            return Err(locator.key_error(
                "resources",
                "gpus_per_trial",
                format!(
                    "data parallelism (gpus_per_trial = {}) is not implemented for `{model}`; use gpus_per_trial = 1 (and trials_per_gpu to pack small trials)",
                    self.resources.gpus_per_trial
                ),
            ));
        }
        Ok(())
    }

    /// Checks every configuration's resolved parameters with `check` (a
    /// [`SettingsCheck`]), the
    /// model's own reading of them (what declarations cannot say: `hidden`
    /// even, `width` divisible by `heads`, the format of a text setting).
    /// `check(model, params)` answers the offending key and why; the error
    /// names the line of that key in the grid, the model's own section,
    /// `[training]` or `[model]`, wherever the configuration took it from.
    pub fn check_settings(
        &self,
        check: impl Fn(&str, &IndexMap<String, ParamValue>) -> Result<(), (String, String)>,
    ) -> Result<(), SweepError> {
        let locator = SpanLocator::new(&self.source, &self.source_name);
        let mut seen = std::collections::HashSet::new();
        for plan in self.trials() {
            if !seen.insert(plan.config.key.clone()) {
                continue;
            }
            let Err((key, message)) = check(&plan.model, &plan.params) else {
                continue;
            };
            let per_model = self
                .model
                .per_model
                .get(&plan.model)
                .is_some_and(|t| t.contains_key(&key));
            let (table, message) = if self.grid.contains_key(&key) {
                let m = format!("{message} (configuration `{}`)", plan.config.key);
                ("grid".to_string(), m)
            } else if per_model {
                (format!("model.{}", plan.model), message)
            } else if is_training_key(&key) && !self.model.params.contains_key(&key) {
                ("training".to_string(), message)
            } else {
                ("model".to_string(), message)
            };
            let message = if self.grid.contains_key(MODEL_KEY) && table != "grid" {
                format!("{message} (model `{}`)", plan.model)
            } else {
                message
            };
            return Err(locator.key_error(&table, &key, message));
        }
        Ok(())
    }

    /// Checks the sweep against the declarations of its model and of the
    /// training settings (`sigsweep_types::params`): the model is a built-in
    /// one or one of `registered` (declared by workers), and every fixed and
    /// swept parameter is declared by it, with a value of the declared type
    /// inside the declared range. Errors name the file, line and key. The
    /// coordinator runs this at submit time, the CLI before it starts
    /// anything.
    pub fn check_declared(&self, registered: &[ModelDecl]) -> Result<(), SweepError> {
        use sigsweep_types::params;
        let locator = SpanLocator::new(&self.source, &self.source_name);
        if self.model.command.is_some() {
            // A training program declares no parameters: only the training
            // settings it is given have declared types and ranges.
            let values = self
                .model
                .params
                .iter()
                .map(|(k, v)| ("model", k, v))
                .chain(
                    self.grid
                        .iter()
                        .flat_map(|(k, vs)| vs.iter().map(move |v| ("grid", k, v))),
                );
            for (table, k, v) in values {
                if let Some(d) = params::training(k) {
                    d.check(v.as_scalar())
                        .map_err(|m| locator.key_error(table, k, m))?;
                }
            }
            return Ok(());
        }
        let swept = self.grid.contains_key(MODEL_KEY);
        let mut models: Vec<&ModelDecl> = Vec::new();
        for name in self.models() {
            let found = params::model(name).or_else(|| registered.iter().find(|m| m.name == name));
            let Some(model) = found else {
                let mut known: Vec<&str> = params::MODELS.iter().map(|m| m.name.as_ref()).collect();
                known.extend(registered.iter().map(|m| m.name.as_ref()));
                let message = format!(
                    "unknown model `{name}`; known models: {} (a worker that trains another model declares it when it registers)",
                    known.join(", ")
                );
                return Err(if swept {
                    locator.key_error("grid", MODEL_KEY, message)
                } else {
                    locator.key_error("model", "name", message)
                });
            };
            models.push(model);
        }
        let names: Vec<&str> = models
            .iter()
            .flat_map(|m| m.params.iter())
            .chain(params::TRAINING.iter())
            .map(|p| p.name.as_ref())
            .collect();
        self.check_model_params(&names)?;
        // A value is checked against every model that declares its key.
        let check = |table: &str, key: &str, value: &ParamValue| {
            if let Some(d) = params::training(key) {
                return d
                    .check(value.as_scalar())
                    .map_err(|m| locator.key_error(table, key, m));
            }
            for model in &models {
                if let Some(Err(message)) = model.param(key).map(|d| d.check(value.as_scalar())) {
                    return Err(locator.key_error(
                        table,
                        key,
                        if swept {
                            format!("{message} (for model `{}`)", model.name)
                        } else {
                            message
                        },
                    ));
                }
            }
            Ok(())
        };
        for (k, v) in &self.model.params {
            check("model", k, v)?;
        }
        for (name, table) in &self.model.per_model {
            let decl = models.iter().find(|m| m.name == name.as_str());
            let section = format!("model.{name}");
            for (k, v) in table {
                let found = params::training(k).or_else(|| decl.and_then(|m| m.param(k)));
                match found {
                    None if decl.is_some_and(|m| params::model(&m.name).is_some()) => {
                        return Err(locator.key_error(
                            &section,
                            k,
                            format!("unknown parameter `{k}` for model `{name}`"),
                        ));
                    }
                    Some(d) => {
                        d.check(v.as_scalar())
                            .map_err(|m| locator.key_error(&section, k, m))?;
                    }
                    None => {}
                }
            }
        }
        for (k, values) in &self.grid {
            if k == MODEL_KEY {
                continue;
            }
            for v in values {
                check("grid", k, v)?;
            }
        }
        if models.iter().all(|m| params::model(&m.name).is_some()) {
            self.check_metrics()?;
        }
        Ok(())
    }

    /// For sigsweep's own models: checks that `[metrics] select` and every
    /// `report` metric is one they report on the sweep's dataset
    /// ([`sigsweep_data::metrics::Labels`]: the classification metrics of
    /// its classes, or the regression metrics of sentiment scores), so that
    /// a misspelt or foreign metric (`f1_weigthed`, `mae` on emotion
    /// classes, `f1_class_6` of six classes) is an error naming its line
    /// before anything runs, not a failure of every trial after its first
    /// epoch. A training program's or a worker-declared model's metrics are
    /// its own and are not checked.
    fn check_metrics(&self) -> Result<(), SweepError> {
        let Some(d) = &self.dataset else {
            return Ok(());
        };
        let params = serde_json::Value::Object(
            d.params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        // The dataset's own errors were reported when the file was parsed.
        let Ok(labels) = sigsweep_data::synthetic::labels(&d.kind, d.generator.as_deref(), &params)
        else {
            return Ok(());
        };
        let m = &self.metrics;
        let unknown = std::iter::once((&m.select, "select"))
            .chain(m.report.keys().map(|k| (k, "report")))
            .find(|(name, _)| !labels.reports(name));
        match unknown {
            None => Ok(()),
            Some((name, key)) => {
                let dataset = match (d.kind.as_str(), d.generator.as_deref()) {
                    ("synthetic", Some(g)) => format!("the `{g}` generator"),
                    (kind, _) => format!("`{kind}` files"),
                };
                Err(self.key_error(
                    "metrics",
                    key,
                    format!(
                        "`{name}` is not a metric sigsweep's models report on {dataset}; they report, for {}",
                        labels.describe()
                    ),
                ))
            }
        }
    }

    /// Whether the sweep runs a training program (`[model] name = "command"`),
    /// which only coordinators and workers started with `--allow-command`
    /// accept.
    pub fn runs_program(&self) -> bool {
        self.model.command.is_some()
    }

    /// The error of a coordinator or worker that does not run programs.
    pub fn program_refused(&self) -> SweepError {
        self.key_error(
            "model",
            "name",
            "this sweep runs a training program on the workers, and this coordinator does not \
             accept programs: start it with --allow-command (and its workers too) if every \
             client that can submit may run code there (README: \"Use your own training code\")"
                .into(),
        )
    }

    /// Remarks about a valid sweep, for `run`, `submit` and `--dry-run` to
    /// print: parameters that no template of a training program uses.
    pub fn warnings(&self) -> Vec<String> {
        let Some(c) = &self.model.command else {
            return Vec::new();
        };
        command::unused(self, c)
            .into_iter()
            .map(|k| {
                format!(
                    "{}: parameter `{k}` is in no placeholder of [model] argv/env/workdir; the program sees it only in SIGSWEEP_PARAMS",
                    self.source_name
                )
            })
            .collect()
    }

    /// For a run on this machine, which reads the dataset file itself and
    /// starts the training program itself: refuses a missing or unreadable
    /// dataset file, or a program that is not there, before any worker
    /// starts.
    pub fn check_local_files(&self) -> Result<(), SweepError> {
        if let Some(path) = self.dataset.as_ref().and_then(|d| d.path.as_ref()) {
            let problem = match std::fs::metadata(path) {
                Err(e) => Some(format!("cannot read `{path}`: {e}")),
                Ok(m) if !m.is_file() => Some(format!("`{path}` is not a file")),
                Ok(_) => std::fs::File::open(path)
                    .err()
                    .map(|e| format!("cannot open `{path}`: {e}")),
            };
            if let Some(message) = problem {
                return Err(self.key_error("dataset", "path", message));
            }
        }
        if let Some(c) = &self.model.command
            && let Some(message) = command::missing_program(c)
        {
            return Err(self.key_error("model", "argv", message));
        }
        Ok(())
    }

    /// An error about `key` of `[table]` in this sweep's file, at the line
    /// where the key is written.
    pub fn key_error(&self, table: &str, key: &str, message: String) -> SweepError {
        SpanLocator::new(&self.source, &self.source_name).key_error(table, key, message)
    }

    pub fn check_model_params(&self, known: &[&str]) -> Result<(), SweepError> {
        let locator = SpanLocator::new(&self.source, &self.source_name);
        let mut names: Vec<(&str, &str)> = self
            .model
            .params
            .keys()
            .map(|k| (k.as_str(), "model"))
            .collect();
        names.extend(
            self.grid
                .keys()
                .filter(|k| !is_training_key(k) && k.as_str() != MODEL_KEY)
                .map(|k| (k.as_str(), "grid")),
        );
        for (name, table) in names {
            if !known.contains(&name) {
                let mut expected: Vec<&str> = known.to_vec();
                expected.sort_unstable();
                return Err(locator.key_error(
                    table,
                    name,
                    format!(
                        "unknown parameter `{name}` for model `{}`; it accepts: {}",
                        self.models().join("`, `"),
                        expected.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A digest of everything that determines a trial's result besides its
    /// configuration and seed (model, fixed parameters, dataset, training,
    /// epoch selection).
    pub fn fingerprint(&self) -> String {
        let fixed = serde_json::json!({
            "model": self.model,
            "dataset": self.dataset,
            "training": self.training,
            "select": [self.metrics.select, self.metrics.select_split],
        });
        digest(&fixed.to_string())
    }

    /// The sweep's id: its name and a digest of the whole spec, so the same
    /// file submitted twice is the same sweep.
    pub fn sweep_id(&self) -> String {
        let whole = serde_json::json!({
            "fingerprint": self.fingerprint(),
            "grid": self.grid,
            "baseline": self.baseline,
            "seeds": self.seeds,
            "metrics": self.metrics,
            "resources": self.resources,
        });
        format!(
            "{}-{}",
            sanitize(&self.name),
            &digest(&whole.to_string())[..8]
        )
    }

    /// Every point of the grid, first key varying slowest.
    pub fn configurations(&self) -> Vec<Configuration> {
        let mut out = vec![IndexMap::new()];
        for (key, values) in &self.grid {
            let mut next = Vec::with_capacity(out.len() * values.len());
            for partial in &out {
                for v in values {
                    let mut c: IndexMap<String, ParamValue> = partial.clone();
                    c.insert(key.clone(), v.clone());
                    next.push(c);
                }
            }
            out = next;
        }
        // A configuration holds only what applies to its model: with
        // `model = ["mmic", "mmdfn"]` and `alpha = [0, 1]`, `mmdfn` (which
        // has no `alpha`) is one configuration, not two.
        let mut seen = std::collections::HashSet::new();
        out.into_iter()
            .filter_map(|mut values| {
                let model = self.model_of(&values).to_string();
                values.retain(|k, _| self.applies(&model, k));
                let key = config_key(&values);
                seen.insert(key.clone())
                    .then_some(Configuration { key, values })
            })
            .collect()
    }

    /// Whether parameter `key` applies to a trial of `model` in this sweep:
    /// always with one model (the declarations are checked separately);
    /// with a swept model, when the model declares it ([`applies`]).
    pub fn applies(&self, model: &str, key: &str) -> bool {
        !self.grid.contains_key(MODEL_KEY) || applies(model, key)
    }

    /// The model of a configuration: its `model` value, else `[model] name`.
    pub fn model_of<'a>(&'a self, values: &'a IndexMap<String, ParamValue>) -> &'a str {
        match values.get(MODEL_KEY) {
            Some(ParamValue::Text(m)) => m,
            _ => &self.model.name,
        }
    }

    /// Every model the sweep trains, in grid order.
    pub fn models(&self) -> Vec<&str> {
        match self.grid.get(MODEL_KEY) {
            Some(values) => values
                .iter()
                .filter_map(|v| match v {
                    ParamValue::Text(m) => Some(m.as_str()),
                    _ => None,
                })
                .collect(),
            None => vec![self.model.name.as_str()],
        }
    }

    /// The baseline configuration's canonical key.
    pub fn baseline_key(&self) -> String {
        config_key(&self.baseline)
    }

    /// Expands the sweep into trials: configurations in grid order, seeds in
    /// file order within each configuration.
    pub fn trials(&self) -> Vec<TrialPlan> {
        let fingerprint = self.fingerprint();
        let mut trials = Vec::new();
        for config in self.configurations() {
            let params = self.resolve(&config);
            let folds: Vec<Option<u32>> = match self.dataset.as_ref().and_then(|d| d.folds.as_ref())
            {
                Some(f) => (0..f.folds).map(Some).collect(),
                None => vec![None],
            };
            for &seed in &self.seeds {
                for &fold in &folds {
                    trials.push(TrialPlan {
                        trial_id: trial_id(&fingerprint, &config, seed, fold),
                        model: self.model_of(&config.values).to_string(),
                        config: config.clone(),
                        seed,
                        params: params.clone(),
                        fold,
                    });
                }
            }
        }
        trials
    }

    /// The spec with other seeds (for confirmation runs): same fixed settings,
    /// grid restricted to the given configurations.
    pub fn with_seeds_and_configs(&self, seeds: Vec<u64>, configs: &[Configuration]) -> SweepSpec {
        let mut spec = self.clone();
        spec.seeds = seeds;
        let mut grid: IndexMap<String, Vec<ParamValue>> = IndexMap::new();
        for key in self.grid.keys() {
            let mut values: Vec<ParamValue> = Vec::new();
            for c in configs {
                if let Some(v) = c.values.get(key)
                    && !values.contains(v)
                {
                    values.push(v.clone());
                }
            }
            grid.insert(key.clone(), values);
        }
        spec.grid = grid;
        spec
    }

    /// Every parameter of a configuration's trials: the training settings,
    /// then the fixed model parameters, the model's own `[model.<name>]`
    /// table and the grid point, each over the one before, that apply to
    /// its model (a parameter applies to the models that declare it).
    fn resolve(&self, config: &Configuration) -> IndexMap<String, ParamValue> {
        let model = self.model_of(&config.values);
        let mut params = self
            .training
            .as_ref()
            .map(TrainingSection::as_params)
            .unwrap_or_default();
        let own = self.model.per_model.get(model).into_iter().flatten();
        for (k, v) in self.model.params.iter().chain(own).chain(&config.values) {
            if k != MODEL_KEY && self.applies(model, k) {
                params.insert(k.clone(), v.clone());
            }
        }
        params
    }
}

/// Canonical configuration key: `k=v` pairs joined by commas.
pub fn config_key(values: &IndexMap<String, ParamValue>) -> String {
    if values.is_empty() {
        return "default".to_string();
    }
    values
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn trial_id(fingerprint: &str, config: &Configuration, seed: u64, fold: Option<u32>) -> String {
    let mut canonical = serde_json::json!({
        "sweep": fingerprint,
        "config": config.values,
        "seed": seed,
    });
    // Without folds the id is what it always was (stored results stay theirs).
    if let (Some(fold), Some(obj)) = (fold, canonical.as_object_mut()) {
        obj.insert("fold".to_string(), serde_json::json!(fold));
    }
    digest(&canonical.to_string())[..16].to_string()
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
