//! Per-example analysis: the tests whose unit of replication is the test
//! example rather than the seed.
//!
//! Seeds answer "does the method help across training randomness"; the
//! examples of one test set answer "does it help on this test set". Both
//! are reported, each labelled with its unit. This module needs the trials'
//! per-example predictions (`[training] save = ["predictions"]`); without
//! them the report has no per-example section.
//!
//! * **Paired bootstrap** ([`sigsweep_stats::bootstrap`]) for every
//!   comparison and every reported metric that can be recomputed from
//!   predictions. **Pooling over seeds**: one resample of test examples is
//!   drawn and applied to every seed; the statistic is the mean over the
//!   seeds shared with the baseline of `metric(config, seed) −
//!   metric(baseline, seed)` on that resample. Its observed value is the
//!   seed table's Δ (when the predictions reproduce the stored metrics);
//!   its spread is the test set's sampling error only, with the seeds held
//!   fixed. p-values are corrected across the metric's comparisons with the
//!   report's correction.
//! * **McNemar's test** (exact binomial) for accuracy on each single pair
//!   of seeds (configuration seed s vs baseline seed s).
//! * **Per-class F1** of every configuration: the mean over its seeds, with
//!   a bootstrap percentile 95% interval over test examples.
//! * **Confusion matrices** of the winner and the baseline, summed over
//!   their seeds.
//!
//! Trials are aligned by example id: every predictions file must hold the
//! same ids with the same gold labels as the baseline's first one; a file
//! that does not is left out with a note.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sigsweep_data::metrics::{ConfusionMatrix, MAX_CLASSES, REGRESSION_METRICS, regression_metric};
use sigsweep_stats::{Bootstrap, McNemar, adjust, bootstrap, discordant, mcnemar};

use crate::model::{ALPHA, Goal, REPORT_SEED, ReportSpec, TrialRecord};

/// Bootstrap resamples per comparison.
pub const RESAMPLES: usize = 2000;
/// Largest predictions file the report reads.
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Most classes the per-class F1 and confusion tables show: past this they
/// would be pages of cells; the bootstrap and McNemar tables still come.
pub const MAX_TABLE_CLASSES: usize = 50;

/// One trial's test predictions, as its predictions file holds them.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub ids: Vec<String>,
    pub gold: Vec<f64>,
    pub pred: Vec<f64>,
    /// Number of log-probabilities per example, when the file has them.
    pub n_classes: Option<usize>,
}

#[derive(Deserialize)]
struct Line {
    id: String,
    gold: f64,
    pred: f64,
    #[serde(default)]
    log_probs: Option<Vec<f64>>,
}

impl Predictions {
    /// Parses a predictions file (one JSON object per line: `id`, `gold`,
    /// `pred`, optional `log_probs`; other keys are ignored). Errors name
    /// `source` and the line.
    pub fn parse(source: &str, text: &str) -> Result<Self, String> {
        let mut p = Predictions {
            ids: Vec::new(),
            gold: Vec::new(),
            pred: Vec::new(),
            n_classes: None,
        };
        let mut seen = std::collections::HashSet::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let l: Line = serde_json::from_str(line)
                .map_err(|e| format!("{source}:{}: not a prediction: {e}", i + 1))?;
            if !l.gold.is_finite() || !l.pred.is_finite() {
                return Err(format!("{source}:{}: non-finite gold or pred", i + 1));
            }
            if !seen.insert(l.id.clone()) {
                return Err(format!(
                    "{source}:{}: duplicate example id `{}`",
                    i + 1,
                    l.id
                ));
            }
            let k = l.log_probs.as_ref().map(Vec::len);
            match (p.ids.is_empty(), p.n_classes, k) {
                (true, _, k) => p.n_classes = k,
                (false, a, b) if a != b => {
                    return Err(format!(
                        "{source}:{}: {} log-probabilities where earlier lines have {}",
                        i + 1,
                        b.unwrap_or(0),
                        a.unwrap_or(0)
                    ));
                }
                _ => {}
            }
            p.ids.push(l.id);
            p.gold.push(l.gold);
            p.pred.push(l.pred);
        }
        if p.ids.is_empty() {
            return Err(format!("{source}: no predictions"));
        }
        Ok(p)
    }

    /// Reads and parses a predictions file of at most [`MAX_FILE_BYTES`].
    pub fn read(path: &Path) -> Result<Self, String> {
        let shown = path.display().to_string();
        let len = std::fs::metadata(path)
            .map_err(|e| format!("{shown}: {e}"))?
            .len();
        if len > MAX_FILE_BYTES {
            return Err(format!(
                "{shown}: {len} bytes, more than the report reads ({MAX_FILE_BYTES})"
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        Self::parse(&shown, &text)
    }
}

/// Reads the predictions files of the completed `records` under the
/// workers' `artifacts` directory. Only the path a trial may name
/// (`predictions/<trial_id>.jsonl`) is read; anything else, and every
/// unreadable file, becomes a note.
pub fn load_predictions(
    artifacts: &Path,
    records: &[TrialRecord],
) -> (BTreeMap<String, Predictions>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut notes = Vec::new();
    for r in records.iter().filter(|r| r.is_completed()) {
        let Some(rel) = &r.predictions else { continue };
        let id = r.trial_id.to_string();
        if *rel != sigsweep_types::record::predictions_path(&id) {
            notes.push(format!(
                "trial {id}: predictions path `{rel}` is not predictions/{id}.jsonl; not read"
            ));
            continue;
        }
        match Predictions::read(&artifacts.join(rel)) {
            Ok(p) => {
                out.insert(id, p);
            }
            Err(e) => notes.push(format!("trial {id}: predictions not used: {e}")),
        }
    }
    (out, notes)
}

/// What the predictions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Task {
    Classification { n_classes: usize },
    Regression,
}

/// A comparison with the baseline by paired bootstrap over examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleComparison {
    pub config_key: String,
    /// The seeds pooled (shared with the baseline, predictions on both sides).
    pub seeds: Vec<u64>,
    /// Δ = config − baseline, mean over `seeds`, resampled over examples.
    pub bootstrap: Bootstrap,
    /// Corrected p-value.
    #[serde(with = "sigsweep_stats::num")]
    pub p_adj: f64,
    pub significant: bool,
}

/// The bootstrap comparisons of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleTable {
    pub metric: String,
    pub goal: Goal,
    pub rows: Vec<ExampleComparison>,
}

/// McNemar's test of one configuration seed against the same baseline seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McNemarRow {
    pub config_key: String,
    pub seed: u64,
    pub test: McNemar,
}

/// One class's F1: the mean over seeds with a bootstrap 95% interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassF1 {
    pub class: usize,
    #[serde(with = "sigsweep_stats::num")]
    pub f1: f64,
    #[serde(with = "sigsweep_stats::num::pair")]
    pub ci95: [f64; 2],
    /// Test examples of this class (per seed, on average, when the seeds
    /// had their own test sets).
    pub support: u64,
}

/// Per-class F1 of one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerClass {
    pub config_key: String,
    pub seeds: Vec<u64>,
    pub classes: Vec<ClassF1>,
}

/// A confusion matrix summed over a configuration's seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub config_key: String,
    /// `winner`, `baseline` or `winner, baseline`.
    pub role: String,
    pub seeds: Vec<u64>,
    /// `counts[truth][pred]`.
    pub counts: Vec<Vec<u64>>,
}

/// The per-example section of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleAnalysis {
    pub task: Task,
    /// Test examples per seed.
    pub n_examples: usize,
    /// Every seed was evaluated on the same test examples; otherwise each
    /// seed had its own test set (synthetic data is drawn from the seed)
    /// and examples are paired within a seed.
    pub shared_test_set: bool,
    pub resamples: usize,
    pub seed: u64,
    pub tables: Vec<ExampleTable>,
    pub mcnemar: Vec<McNemarRow>,
    pub per_class: Vec<PerClass>,
    pub confusion: Vec<Confusion>,
}

/// One trial's predictions in its reference's example order.
struct Aligned {
    gold: Vec<f64>,
    pred: Vec<f64>,
}

struct Data {
    task: Task,
    /// Examples per test set.
    n: usize,
    /// Every seed was evaluated on the same test examples.
    shared: bool,
    /// config → seed → predictions (completed trials with usable files).
    configs: Vec<(String, BTreeMap<u64, Aligned>)>,
}

impl Data {
    fn trials(&self, key: &str) -> Option<&BTreeMap<u64, Aligned>> {
        self.configs.iter().find(|(k, _)| k == key).map(|(_, t)| t)
    }

    /// Several metrics of one trial on a resample, from one confusion
    /// matrix (or one expansion of the weights).
    fn values(&self, metrics: &[&str], t: &Aligned, w: Option<&[u32]>) -> Vec<Option<f64>> {
        match self.task {
            Task::Classification { .. } => {
                let cm = self.confusion(t, w);
                metrics.iter().map(|m| cm.metric(m)).collect()
            }
            Task::Regression => {
                let expanded;
                let (g, p) = match w {
                    None => (&t.gold, &t.pred),
                    Some(w) => {
                        let (mut g, mut p) =
                            (Vec::with_capacity(self.n), Vec::with_capacity(self.n));
                        for ((a, b), k) in t.gold.iter().zip(&t.pred).zip(w) {
                            for _ in 0..*k {
                                g.push(*a);
                                p.push(*b);
                            }
                        }
                        expanded = (g, p);
                        (&expanded.0, &expanded.1)
                    }
                };
                metrics.iter().map(|m| regression_metric(m, g, p)).collect()
            }
        }
    }

    fn confusion(&self, t: &Aligned, w: Option<&[u32]>) -> ConfusionMatrix {
        let n = match self.task {
            Task::Classification { n_classes } => n_classes,
            Task::Regression => 0,
        };
        let mut cm = ConfusionMatrix::new(n);
        for (i, (g, p)) in t.gold.iter().zip(&t.pred).enumerate() {
            let wt = w.map_or(1, |w| w.get(i).copied().unwrap_or(0));
            cm.add(*g as usize, *p as usize, u64::from(wt));
        }
        cm
    }
}

fn is_label(x: f64) -> bool {
    x >= 0.0 && x.fract() == 0.0 && x < 1e9
}

fn max_label(xs: &[f64]) -> usize {
    xs.iter().fold(0.0f64, |m, x| m.max(*x)) as usize
}

/// Groups, aligns and classifies the predictions; `None` when the baseline
/// has none. A trial's examples are paired with the baseline's trial of
/// the same seed (its test set: synthetic data is drawn per seed), or with
/// any baseline trial when every baseline seed saw the same test set.
fn gather(
    spec: &ReportSpec,
    records: &[TrialRecord],
    predictions: &BTreeMap<String, Predictions>,
    note: &mut impl FnMut(String),
) -> Option<Data> {
    let completed = |r: &&TrialRecord| r.is_completed();
    let mut refs: BTreeMap<u64, &Predictions> = records
        .iter()
        .filter(completed)
        .filter(|r| r.config_key == spec.baseline_key)
        .filter_map(|r| predictions.get(r.trial_id.as_str()).map(|p| (r.seed, p)))
        .collect();
    let n = refs.values().next()?.ids.len();
    refs.retain(|seed, p| {
        let keep = p.ids.len() == n;
        if !keep {
            note(format!(
                "baseline seed {seed}: {} test examples where another baseline seed has {n}; left out of the per-example analysis",
                p.ids.len()
            ));
        }
        keep
    });
    let first = *refs.values().next()?;
    let shared = refs
        .values()
        .all(|p| p.ids == first.ids && p.gold == first.gold);
    let indexes: BTreeMap<u64, HashMap<&str, usize>> = refs
        .iter()
        .map(|(seed, p)| {
            let index = p
                .ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i))
                .collect();
            (*seed, index)
        })
        .collect();
    let mut configs: Vec<(String, BTreeMap<u64, Aligned>)> = Vec::new();
    let mut all_labels = true;
    let mut n_classes = 0usize;
    for r in records.iter().filter(completed) {
        let Some(p) = predictions.get(r.trial_id.as_str()) else {
            continue;
        };
        let reference = match (refs.get(&r.seed), indexes.get(&r.seed)) {
            (Some(p), Some(i)) => Some((*p, i)),
            _ if shared => refs.values().next().copied().zip(indexes.values().next()),
            _ => None,
        };
        let Some((reference, index)) = reference else {
            note(format!(
                "trial {}: the baseline has no predictions for seed {} to pair its test examples with; left out of the per-example analysis",
                r.trial_id, r.seed
            ));
            continue;
        };
        let mut pred = vec![f64::NAN; n];
        let mut ok = p.ids.len() == n;
        for ((id, g), x) in p.ids.iter().zip(&p.gold).zip(&p.pred) {
            match index.get(id.as_str()) {
                Some(&i) if reference.gold.get(i) == Some(g) => {
                    if let Some(slot) = pred.get_mut(i) {
                        *slot = *x;
                    }
                }
                _ => ok = false,
            }
        }
        if !ok {
            note(format!(
                "trial {}: its predictions are not on the baseline's test examples (ids or gold labels differ); left out of the per-example analysis",
                r.trial_id
            ));
            continue;
        }
        all_labels &= pred.iter().chain(&reference.gold).all(|x| is_label(*x));
        n_classes = n_classes
            .max(p.n_classes.unwrap_or(0))
            .max(max_label(&pred) + 1)
            .max(max_label(&reference.gold) + 1);
        let slot = match configs.iter().position(|(k, _)| *k == r.config_key) {
            Some(i) => i,
            None => {
                configs.push((r.config_key.clone(), BTreeMap::new()));
                configs.len() - 1
            }
        };
        if let Some((_, trials)) = configs.get_mut(slot) {
            trials.entry(r.seed).or_insert(Aligned {
                gold: reference.gold.clone(),
                pred,
            });
        }
    }
    let classification_metrics = spec.metrics.iter().any(|(m, _)| ConfusionMatrix::knows(m));
    let task = if all_labels && classification_metrics {
        Task::Classification { n_classes }
    } else {
        Task::Regression
    };
    Some(Data {
        task,
        n,
        shared,
        configs,
    })
}

/// The per-example analysis of the report built from `records` by
/// [`crate::build()`] (whose validation winner is `winner`), or `None` when
/// the baseline has no predictions. Problems become notes.
pub fn analyze(
    spec: &ReportSpec,
    winner: Option<&str>,
    records: &[TrialRecord],
    predictions: &BTreeMap<String, Predictions>,
    note: &mut impl FnMut(String),
) -> Option<ExampleAnalysis> {
    if predictions.is_empty() {
        return None;
    }
    if records.iter().any(|r| r.fold.is_some()) {
        note("cross-validation: each fold has its own test examples; no per-example analysis across folds".to_string());
        return None;
    }
    let Some(data) = gather(spec, records, predictions, note) else {
        note(format!(
            "the baseline {} has no predictions: no per-example analysis",
            spec.baseline_key
        ));
        return None;
    };
    if let Task::Classification { n_classes } = data.task
        && n_classes > MAX_CLASSES
    {
        note(format!(
            "the predictions' labels run up to {}: more than the {MAX_CLASSES} classes the report analyses; no per-example analysis",
            n_classes - 1
        ));
        return None;
    }
    let knows = |m: &str| match data.task {
        Task::Classification { .. } => ConfusionMatrix::knows(m),
        Task::Regression => REGRESSION_METRICS.contains(&m),
    };

    // The predictions must reproduce the stored metrics.
    for r in records.iter().filter(|r| r.is_completed()) {
        let Some(t) = data.trials(&r.config_key).and_then(|t| t.get(&r.seed)) else {
            continue;
        };
        for (m, _) in spec.metrics.iter().filter(|(m, _)| knows(m)) {
            let again = data.values(&[m.as_str()], t, None).pop().flatten();
            if let (Some(stored), Some(again)) = (r.metrics.get(m), again)
                && (stored - again).abs() > 1e-6
            {
                note(format!(
                    "trial {}: its predictions give {m} = {again:.6}, its result says {stored:.6}; the per-example analysis uses the predictions",
                    r.trial_id
                ));
            }
        }
    }

    let base = data.trials(&spec.baseline_key);
    let metrics: Vec<(&String, Goal)> = spec
        .metrics
        .iter()
        .filter(|(m, _)| {
            let known = knows(m);
            if !known {
                note(format!(
                    "{m} cannot be recomputed from predictions: no per-example test for it"
                ));
            }
            known
        })
        .map(|(m, g)| (m, *g))
        .collect();
    let names: Vec<&str> = metrics.iter().map(|(m, _)| m.as_str()).collect();
    let mut rows_by_metric: Vec<Vec<ExampleComparison>> = vec![Vec::new(); metrics.len()];
    for (key, trials) in data.configs.iter().filter(|(k, _)| *k != spec.baseline_key) {
        let Some(base) = base else { continue };
        let pairs: Vec<(u64, &Aligned, &Aligned)> = trials
            .iter()
            .filter_map(|(s, t)| base.get(s).map(|b| (*s, t, b)))
            .collect();
        if pairs.is_empty() {
            note(format!(
                "{key}: no seed with predictions shared with the baseline; no bootstrap"
            ));
            continue;
        }
        // Every metric's Δ on one resample: one confusion matrix (or one
        // expansion) per trial serves all metrics.
        let deltas = |w: Option<&[u32]>| {
            let mut sum = vec![0.0; names.len()];
            for (_, t, b) in &pairs {
                let (x, y) = (data.values(&names, t, w), data.values(&names, b, w));
                for ((s, x), y) in sum.iter_mut().zip(x).zip(y) {
                    *s += match (x, y) {
                        (Some(x), Some(y)) => x - y,
                        _ => f64::NAN,
                    };
                }
            }
            sum.iter()
                .map(|s| s / pairs.len() as f64)
                .collect::<Vec<_>>()
        };
        let observed = deltas(None);
        let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(RESAMPLES); names.len()];
        if let Err(e) = bootstrap::resample(data.n, RESAMPLES, REPORT_SEED, |w| {
            for (d, v) in draws.iter_mut().zip(deltas(Some(w))) {
                d.push(v);
            }
            0.0
        }) {
            note(format!("{key}: no bootstrap: {e}"));
            continue;
        }
        for (m, ((obs, d), rows)) in observed
            .iter()
            .zip(&draws)
            .zip(rows_by_metric.iter_mut())
            .enumerate()
        {
            let summary = if obs.is_finite() {
                bootstrap::summarize(*obs, d)
            } else {
                Err(sigsweep_stats::StatsError::NonFinite)
            };
            match summary {
                Ok(b) => rows.push(ExampleComparison {
                    config_key: key.clone(),
                    seeds: pairs.iter().map(|(s, _, _)| *s).collect(),
                    bootstrap: b,
                    p_adj: f64::NAN,
                    significant: false,
                }),
                Err(e) => note(format!(
                    "{key}: no bootstrap for {}: {e}",
                    names.get(m).unwrap_or(&"?")
                )),
            }
        }
    }
    let mut tables = Vec::new();
    for ((metric, goal), mut rows) in metrics.into_iter().zip(rows_by_metric) {
        let adj = adjust(
            &rows.iter().map(|r| r.bootstrap.p).collect::<Vec<_>>(),
            spec.correction,
        );
        for (r, p) in rows.iter_mut().zip(adj) {
            r.p_adj = p;
            r.significant = p < ALPHA && r.bootstrap.observed != 0.0;
        }
        tables.push(ExampleTable {
            metric: metric.clone(),
            goal,
            rows,
        });
    }

    let mut mcnemar_rows = Vec::new();
    let mut per_class = Vec::new();
    let mut confusion = Vec::new();
    if let Task::Classification { n_classes } = data.task {
        let as_labels = |v: &[f64]| v.iter().map(|x| *x as usize).collect::<Vec<_>>();
        if let Some(base) = base {
            for (key, trials) in data.configs.iter().filter(|(k, _)| *k != spec.baseline_key) {
                for (seed, t) in trials {
                    let Some(b) = base.get(seed) else { continue };
                    let test = discordant(
                        &as_labels(&t.gold),
                        &as_labels(&t.pred),
                        &as_labels(&b.pred),
                    )
                    .and_then(|(x, y)| mcnemar(x, y, true));
                    match test {
                        Ok(test) => mcnemar_rows.push(McNemarRow {
                            config_key: key.clone(),
                            seed: *seed,
                            test,
                        }),
                        Err(e) => note(format!("{key}, seed {seed}: no McNemar test: {e}")),
                    }
                }
            }
        }
        let tables = n_classes <= MAX_TABLE_CLASSES;
        if !tables {
            note(format!(
                "{n_classes} classes: the per-class F1 and confusion tables are left out (they show at most {MAX_TABLE_CLASSES})"
            ));
        }
        for (key, trials) in data.configs.iter().filter(|_| tables) {
            per_class.push(class_f1(&data, key, trials, n_classes));
        }
        for (key, trials) in data.configs.iter().filter(|_| tables) {
            let roles: Vec<&str> = [
                (winner == Some(key.as_str())).then_some("winner"),
                (*key == spec.baseline_key).then_some("baseline"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if roles.is_empty() {
                continue;
            }
            let mut sum = vec![vec![0u64; n_classes]; n_classes];
            for t in trials.values() {
                for (g, p) in t.gold.iter().zip(&t.pred) {
                    let cell = sum
                        .get_mut(*g as usize)
                        .and_then(|row| row.get_mut(*p as usize));
                    if let Some(c) = cell {
                        *c += 1;
                    }
                }
            }
            confusion.push(Confusion {
                config_key: key.clone(),
                role: roles.join(", "),
                seeds: trials.keys().copied().collect(),
                counts: sum,
            });
        }
    }
    Some(ExampleAnalysis {
        task: data.task,
        n_examples: data.n,
        shared_test_set: data.shared,
        resamples: RESAMPLES,
        seed: REPORT_SEED,
        tables,
        mcnemar: mcnemar_rows,
        per_class,
        confusion,
    })
}

/// Mean per-class F1 over a configuration's seeds with bootstrap intervals.
fn class_f1(data: &Data, key: &str, trials: &BTreeMap<u64, Aligned>, n_classes: usize) -> PerClass {
    // Support: test examples of each class, per seed on average when the
    // seeds saw different test sets.
    let mut support = vec![0u64; n_classes];
    for t in trials.values() {
        for g in &t.gold {
            if let Some(s) = support.get_mut(*g as usize) {
                *s += 1;
            }
        }
    }
    let seeds = trials.len().max(1) as u64;
    let mean_f1 = |w: Option<&[u32]>| {
        let mut sum = vec![0.0; n_classes];
        for t in trials.values() {
            for (s, f) in sum.iter_mut().zip(data.confusion(t, w).f1()) {
                *s += f;
            }
        }
        sum.iter()
            .map(|s| s / trials.len().max(1) as f64)
            .collect::<Vec<_>>()
    };
    let observed = mean_f1(None);
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(RESAMPLES); n_classes];
    let _ = bootstrap::resample(data.n, RESAMPLES, REPORT_SEED, |w| {
        for (d, f) in draws.iter_mut().zip(mean_f1(Some(w))) {
            d.push(f);
        }
        0.0
    });
    let classes = observed
        .iter()
        .zip(draws.iter_mut())
        .enumerate()
        .map(|(class, (f1, d))| {
            d.sort_by(f64::total_cmp);
            ClassF1 {
                class,
                f1: *f1,
                ci95: [bootstrap::quantile(d, 0.025), bootstrap::quantile(d, 0.975)],
                support: support.get(class).copied().unwrap_or(0) / seeds,
            }
        })
        .collect();
    PerClass {
        config_key: key.to_string(),
        seeds: trials.keys().copied().collect(),
        classes,
    }
}
