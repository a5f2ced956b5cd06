//! Aggregation: from trial records to a [`Report`]. Pure and total (never panics).

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use sigsweep_stats::{
    Alternative, AsoOptions, Outcome, adjust, aso, ci_mean_diff, cohens_dz, corrected_ci_mean_diff,
    corrected_resampled_t, mean, paired_t, permutation_test, power_analysis, std, t_ppf, welch_t,
    wilcoxon,
};

/// What comparisons pair on: the seed, and the fold with cross-validation.
type Unit = (u64, Option<u32>);

use crate::model::{Correction, Goal, ReportSpec, TestKind, TrialRecord, TrialStatus};
use crate::report::{
    ALPHA, Compute, ConfigSummary, Curve, FailedTrial, MetricTable, Report, Row, RowComparison,
    SeedCounts, UsedTest,
};

pub use crate::model::REPORT_SEED;
/// Monte Carlo iterations of the permutation test when n > 20.
pub const PERMUTATION_ITERATIONS: u64 = 10_000;
/// Target power of the power line.
pub const POWER: f64 = 0.8;

/// Display form of a hyperparameter value.
pub fn display_value(v: Option<&serde_json::Value>) -> String {
    match v {
        None => "-".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

struct Group<'a> {
    key: String,
    config: IndexMap<String, serde_json::Value>,
    completed: Vec<&'a TrialRecord>,
    failed: usize,
}

/// Build a report. Never panics: missing baselines, empty inputs, non-finite values,
/// duplicate seeds and unknown metrics end up in [`Report::notes`].
pub fn build(spec: &ReportSpec, records: &[TrialRecord]) -> Report {
    let mut notes: Vec<String> = Vec::new();
    let mut note = |s: String| {
        if !notes.contains(&s) {
            notes.push(s);
        }
    };

    // Group by configuration in first-seen order; one completed record per seed.
    let mut groups: Vec<Group> = Vec::new();
    let mut failures = Vec::new();
    for r in records {
        let idx = match groups.iter().position(|g| g.key == r.config_key) {
            Some(i) => i,
            None => {
                groups.push(Group {
                    key: r.config_key.clone(),
                    config: r.config.clone(),
                    completed: Vec::new(),
                    failed: 0,
                });
                groups.len() - 1
            }
        };
        let Some(g) = groups.get_mut(idx) else {
            continue;
        };
        match r.status {
            TrialStatus::Failed => {
                g.failed += 1;
                failures.push(FailedTrial {
                    trial_id: r.trial_id.to_string(),
                    config_key: r.config_key.clone(),
                    seed: r.seed,
                    attempts: r.attempts,
                    reason: r.failure.clone().unwrap_or_else(|| "unknown".to_string()),
                });
            }
            TrialStatus::Completed => {
                if g.completed
                    .iter()
                    .any(|c| c.seed == r.seed && c.fold == r.fold)
                {
                    note(format!(
                        "{}: duplicate completed trial for seed {}{} ({}) ignored; the first one is used",
                        r.config_key,
                        r.seed,
                        r.fold.map_or(String::new(), |f| format!(", fold {f}")),
                        r.trial_id
                    ));
                } else {
                    g.completed.push(r);
                }
            }
        }
    }
    if !groups.iter().any(|g| g.key == spec.baseline_key) {
        note(format!(
            "baseline configuration {} has no trials: no comparisons are possible",
            spec.baseline_key
        ));
    }
    if records.is_empty() {
        note("no trial records".to_string());
    }
    let own = records
        .iter()
        .filter(|r| r.program_selected && r.status == TrialStatus::Completed)
        .count();
    if own > 0 {
        note(format!(
            "{own} trial(s): the training program selected its epoch itself (its `final` line); \
             sigsweep's selection rule ({} on {}) did not choose it",
            spec.select_metric,
            if spec.selection_on_test {
                "test"
            } else {
                "validation"
            }
        ));
    }

    // Winner on validation means of the selection metric.
    let mut configs = Vec::new();
    for g in &groups {
        let vals: Vec<f64> = g
            .completed
            .iter()
            .filter_map(|r| r.valid_metrics.get(&spec.select_metric).copied())
            .filter(|x| x.is_finite())
            .collect();
        let mut seeds: Vec<u64> = g.completed.iter().map(|r| r.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        configs.push(ConfigSummary {
            config_key: g.key.clone(),
            config: g.config.clone(),
            completed_seeds: seeds,
            failed: g.failed,
            valid_mean: (!vals.is_empty()).then(|| mean(&vals)),
            valid_std: (vals.len() > 1).then(|| std(&vals)),
        });
    }
    let mut winner: Option<(&str, f64)> = None;
    for c in &configs {
        if let Some(v) = c.valid_mean
            && winner.is_none_or(|(_, best)| spec.select_goal.better(v, best))
        {
            winner = Some((&c.config_key, v));
        }
    }
    let winner = winner.map(|(k, _)| k.to_string());
    if winner.is_none() && !configs.is_empty() {
        note(format!(
            "no completed trial has validation metric {}: no winner selected",
            spec.select_metric
        ));
    }

    // Cross-validation: as many folds as the highest fold seen.
    let folds = records.iter().filter_map(|r| r.fold).max().map(|f| f + 1);
    if let Some(k) = folds
        && spec.test != TestKind::PairedT
    {
        note(format!(
            "{} folds: comparisons pair on (seed, fold), and the folds share training data; the {} treats those pairs as independent (the default paired t-test is corrected for it: Nadeau & Bengio's corrected resampled t)",
            k,
            spec.test.label()
        ));
    }
    let mut tables = Vec::new();
    for (metric, goal) in &spec.metrics {
        tables.push(build_table(
            spec,
            &groups,
            metric,
            *goal,
            winner.as_deref(),
            folds,
            &mut note,
        ));
    }

    let curves = curves(spec, &groups);
    let mut report = Report {
        curves,
        examples: None,
        folds,
        run: spec.run.clone(),
        compute: compute(records),
        sweep_name: spec.sweep_name.clone(),
        dataset: spec.dataset.clone(),
        grid_keys: spec.grid_keys.clone(),
        baseline_key: spec.baseline_key.clone(),
        select_metric: spec.select_metric.clone(),
        select_goal: spec.select_goal,
        test: spec.test,
        correction: spec.correction,
        selection_on_test: spec.selection_on_test,
        confirmatory: spec.confirmatory,
        configs,
        winner,
        tables,
        failures,
        notes,
    };
    mark_exploratory(&mut report);
    report
}

/// Wall time and workers of the completed trials.
fn compute(records: &[TrialRecord]) -> Compute {
    let mut secs: Vec<f64> = records
        .iter()
        .filter(|r| r.is_completed())
        .map(|r| r.seconds)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .collect();
    secs.sort_by(f64::total_cmp);
    let median = if secs.is_empty() {
        0.0
    } else {
        sigsweep_stats::bootstrap::quantile(&secs, 0.5)
    };
    let total: f64 = secs.iter().sum();
    let workers: BTreeSet<String> = records
        .iter()
        .filter(|r| r.is_completed())
        .map(|r| r.worker.to_string())
        .filter(|w| !w.is_empty())
        .collect();
    let mut hardware: Vec<(String, usize)> = Vec::new();
    for h in records
        .iter()
        .filter(|r| r.is_completed())
        .filter_map(|r| r.hardware.as_deref())
    {
        match hardware.iter_mut().find(|(k, _)| k == h) {
            Some((_, n)) => *n += 1,
            None => hardware.push((h.to_string(), 1)),
        }
    }
    Compute {
        hardware,
        trials: secs.len(),
        total_seconds: total,
        mean_seconds: if secs.is_empty() {
            0.0
        } else {
            total / secs.len() as f64
        },
        median_seconds: median,
        max_seconds: secs.last().copied().unwrap_or(0.0),
        workers: workers.into_iter().collect(),
    }
}

/// [`build()`], plus the per-example analysis of the trials' `predictions`
/// (by trial id; see [`crate::per_example`]).
pub fn build_with_predictions(
    spec: &ReportSpec,
    records: &[TrialRecord],
    predictions: &BTreeMap<String, crate::per_example::Predictions>,
) -> Report {
    let mut report = build(spec, records);
    let mut notes = std::mem::take(&mut report.notes);
    report.examples = crate::per_example::analyze(
        spec,
        report.winner.as_deref(),
        records,
        predictions,
        &mut |s: String| {
            if !notes.contains(&s) {
                notes.push(s);
            }
        },
    );
    report.notes = notes;
    report
}

/// The learning curve of every configuration whose results carry a
/// history: the selection metric on its split, mean ± std over seeds per
/// epoch (non-finite values left out), and the epochs the seeds selected.
fn curves(spec: &ReportSpec, groups: &[Group]) -> Vec<Curve> {
    groups
        .iter()
        .filter_map(|g| {
            let mut by_epoch: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
            let mut selected = Vec::new();
            for r in g.completed.iter().filter(|r| !r.history.is_empty()) {
                for e in &r.history {
                    let split = if spec.selection_on_test {
                        &e.test
                    } else {
                        &e.valid
                    };
                    if let Some(v) = split.get(&spec.select_metric).filter(|v| v.is_finite()) {
                        by_epoch.entry(e.epoch).or_default().push(*v);
                    }
                }
                selected.extend(r.selected_epoch);
            }
            if by_epoch.is_empty() {
                return None;
            }
            let points = by_epoch
                .into_iter()
                .map(|(epoch, v)| {
                    let m = mean(&v);
                    let s = if v.len() > 1 { std(&v) } else { 0.0 };
                    (epoch, m, s, v.len())
                })
                .collect();
            Some(Curve {
                config_key: g.key.clone(),
                is_baseline: g.key == spec.baseline_key,
                points,
                selected,
            })
        })
        .collect()
}

fn values_by_unit(g: &Group, metric: &str) -> BTreeMap<Unit, f64> {
    g.completed
        .iter()
        .filter_map(|r| r.metrics.get(metric).map(|v| ((r.seed, r.fold), *v)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

fn build_table(
    spec: &ReportSpec,
    groups: &[Group],
    metric: &str,
    goal: Goal,
    winner: Option<&str>,
    folds: Option<u32>,
    note: &mut impl FnMut(String),
) -> MetricTable {
    let baseline = groups
        .iter()
        .find(|g| g.key == spec.baseline_key)
        .map(|g| values_by_unit(g, metric))
        .unwrap_or_default();
    for g in groups {
        let missing = g
            .completed
            .iter()
            .filter(|r| !r.metrics.get(metric).is_some_and(|v| v.is_finite()))
            .count();
        if missing > 0 {
            note(format!(
                "{}: {missing} completed trial(s) lack a finite {metric}; excluded",
                g.key
            ));
        }
    }

    let mut rows: Vec<Row> = Vec::new();
    for g in groups {
        let vals = values_by_unit(g, metric);
        let seeds: Vec<u64> = vals.keys().map(|(s, _)| *s).collect();
        let row_folds: Vec<u32> = vals.keys().filter_map(|(_, f)| *f).collect();
        let values: Vec<f64> = vals.values().copied().collect();
        let is_baseline = g.key == spec.baseline_key;
        let comparison = if is_baseline {
            None
        } else {
            Some(compare_row(
                spec, &g.key, &vals, &baseline, goal, folds, note,
            ))
        };
        rows.push(Row {
            config_key: g.key.clone(),
            hyper: spec
                .grid_keys
                .iter()
                .map(|k| display_value(g.config.get(k)))
                .collect(),
            is_baseline,
            is_best: false,
            is_winner: winner == Some(g.key.as_str()),
            seeds,
            folds: row_folds,
            mean: if values.is_empty() {
                f64::NAN
            } else {
                mean(&values)
            },
            std: std(&values),
            values,
            comparison,
        });
    }

    // Best mean (direction-aware); ties all bold.
    let best =
        rows.iter()
            .map(|r| r.mean)
            .filter(|m| m.is_finite())
            .fold(None, |acc: Option<f64>, m| match acc {
                Some(b) if !goal.better(m, b) => Some(b),
                _ => Some(m),
            });
    if let Some(best) = best {
        for r in &mut rows {
            r.is_best = r.mean == best;
        }
    }

    // Correction across all non-baseline configurations with a test.
    let tested: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.comparison
                .as_ref()
                .is_some_and(|c| c.used != UsedTest::None)
        })
        .map(|(i, _)| i)
        .collect();
    let m = tested.len();
    if spec.test == TestKind::Aso {
        // ASO: the Bonferroni-style correction lives in the confidence level (deepsig's
        // `num_comparisons`); it is applied for every correction except `none`.
        let base: Vec<(Unit, f64)> = baseline.iter().map(|(k, v)| (*k, *v)).collect();
        for &i in &tested {
            let Some(row) = rows.get_mut(i) else { continue };
            let units: Vec<Unit> = units_of(row);
            let values = row.values.clone();
            let Some(c) = row.comparison.as_mut() else {
                continue;
            };
            if c.used == UsedTest::Paired {
                if spec.correction != Correction::None && m > 1 {
                    let (a, b) = aso_inputs(&units, &values, &base, goal, true);
                    let opts = AsoOptions {
                        num_comparisons: m,
                        seed: REPORT_SEED,
                        ..AsoOptions::default()
                    };
                    c.p_adj = aso(&a, &b, &opts).unwrap_or(f64::NAN);
                } else {
                    c.p_adj = c.p;
                }
                c.significant = c.p_adj < 0.5;
            }
        }
        // Unpaired fallback rows in ASO mode use Welch p with the requested correction.
        let fallback: Vec<usize> = tested
            .iter()
            .copied()
            .filter(|&i| {
                rows.get(i)
                    .and_then(|r| r.comparison.as_ref())
                    .is_some_and(|c| c.used == UsedTest::WelchFallback)
            })
            .collect();
        apply_correction(&mut rows, &fallback, spec.correction, m);
    } else {
        apply_correction(&mut rows, &tested, spec.correction, m);
    }

    let n_min = rows
        .iter()
        .filter_map(|r| r.comparison.as_ref())
        .filter(|c| c.used != UsedTest::None)
        .map(|c| c.n_pairs)
        .min()
        .unwrap_or(baseline.len());
    MetricTable {
        metric: metric.to_string(),
        goal,
        rows,
        comparisons: m,
        power: fold_power(power_analysis(n_min, m.max(1), ALPHA, POWER), folds),
    }
}

/// With k folds the corrected resampled t divides the paired t statistic by
/// `sqrt(1 + n/(k − 1))` at the same degrees of freedom, so the smallest
/// detectable `|d_z|` grows by that factor.
fn fold_power(
    mut power: sigsweep_stats::PowerAnalysis,
    folds: Option<u32>,
) -> sigsweep_stats::PowerAnalysis {
    if let Some(k) = folds {
        let ratio = 1.0 / f64::from(k.max(2) - 1);
        power.min_detectable_dz *= (1.0 + power.n as f64 * ratio).sqrt();
    }
    power
}

fn apply_correction(rows: &mut [Row], idx: &[usize], correction: Correction, m: usize) {
    let raw: Vec<f64> = idx
        .iter()
        .map(|&i| {
            rows.get(i)
                .and_then(|r| r.comparison.as_ref())
                .map_or(f64::NAN, |c| c.p)
        })
        .collect();
    // Pad to the full family size so that a subset (ASO fallback rows) is still corrected for m.
    let mut padded = raw.clone();
    padded.resize(m.max(raw.len()), 1.0);
    let adj = adjust(&padded, correction);
    for (k, &i) in idx.iter().enumerate() {
        if let (Some(c), Some(p)) = (
            rows.get_mut(i).and_then(|r| r.comparison.as_mut()),
            adj.get(k),
        ) {
            c.p_adj = *p;
            c.significant = !c.no_difference && *p < ALPHA;
        }
    }
}

/// Paired inputs for ASO, oriented so that higher is better.
fn aso_inputs(
    seeds: &[Unit],
    values: &[f64],
    base: &[(Unit, f64)],
    goal: Goal,
    paired: bool,
) -> (Vec<f64>, Vec<f64>) {
    let s = goal.sign();
    if paired {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for (seed, v) in seeds.iter().zip(values) {
            if let Some((_, bv)) = base.iter().find(|(k, _)| k == seed) {
                a.push(s * v);
                b.push(s * bv);
            }
        }
        (a, b)
    } else {
        (
            values.iter().map(|v| s * v).collect(),
            base.iter().map(|(_, v)| s * v).collect(),
        )
    }
}

/// A row's pairing units: `(seed, fold)`.
fn units_of(row: &Row) -> Vec<Unit> {
    if row.folds.len() == row.seeds.len() {
        row.seeds
            .iter()
            .zip(&row.folds)
            .map(|(s, f)| (*s, Some(*f)))
            .collect()
    } else {
        row.seeds.iter().map(|s| (*s, None)).collect()
    }
}

fn compare_row(
    spec: &ReportSpec,
    key: &str,
    vals: &BTreeMap<Unit, f64>,
    baseline: &BTreeMap<Unit, f64>,
    goal: Goal,
    folds: Option<u32>,
    note: &mut impl FnMut(String),
) -> RowComparison {
    let mine: BTreeSet<Unit> = vals.keys().copied().collect();
    let theirs: BTreeSet<Unit> = baseline.keys().copied().collect();
    let common: Vec<Unit> = mine.intersection(&theirs).copied().collect();
    let excluded_units: Vec<Unit> = mine.symmetric_difference(&theirs).copied().collect();
    let mut excluded: Vec<u64> = excluded_units.iter().map(|(s, _)| *s).collect();
    excluded.dedup();
    let a: Vec<f64> = common.iter().filter_map(|s| vals.get(s).copied()).collect();
    let b: Vec<f64> = common
        .iter()
        .filter_map(|s| baseline.get(s).copied())
        .collect();
    let nan = f64::NAN;
    let mut out = RowComparison {
        seeds: SeedCounts::of(a.iter().copied().zip(b.iter().copied()), goal),
        used: UsedTest::None,
        n_pairs: common.len(),
        excluded_seeds: excluded.clone(),
        delta: nan,
        ci95: [nan, nan],
        dz: nan,
        p: nan,
        p_adj: nan,
        significant: false,
        no_difference: false,
        exploratory: false,
    };
    if common.len() >= 2 {
        if !excluded.is_empty() {
            note(format!(
                "{key}: paired on {} {}; seed(s) {} excluded (missing or failed on one side)",
                common.len(),
                if folds.is_some() {
                    "(seed, fold) pair(s)"
                } else {
                    "seed(s)"
                },
                join(&excluded)
            ));
        }
        out.used = UsedTest::Paired;
        let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
        out.delta = mean(&d);
        // k-fold: the test fold is 1/(k − 1) of the training folds.
        let ratio = folds.map(|k| 1.0 / f64::from(k.max(2) - 1));
        out.ci95 = match ratio {
            Some(r) => corrected_ci_mean_diff(&a, &b, r, 0.95),
            None => ci_mean_diff(&a, &b, 0.95),
        }
        .map_or([nan, nan], |(l, h)| [l, h]);
        out.dz = cohens_dz(&a, &b).unwrap_or(nan);
        out.no_difference = d.iter().all(|x| *x == 0.0);
        if let (Some(r), TestKind::PairedT) = (ratio, spec.test) {
            out.used = UsedTest::CorrectedResampled;
            out.p = corrected_resampled_t(&a, &b, r, Alternative::TwoSided).map_or(nan, |t| {
                if t.outcome == Outcome::NoDifference {
                    1.0
                } else {
                    t.p
                }
            });
            return out;
        }
        out.p = match spec.test {
            TestKind::PairedT => paired_t(&a, &b, Alternative::TwoSided).map_or(nan, |r| {
                if r.outcome == Outcome::NoDifference {
                    1.0
                } else {
                    r.p
                }
            }),
            TestKind::Wilcoxon => wilcoxon(&a, &b, Alternative::TwoSided).map_or(nan, |r| r.p),
            TestKind::Permutation => permutation_test(
                &a,
                &b,
                Alternative::TwoSided,
                PERMUTATION_ITERATIONS,
                REPORT_SEED,
            )
            .map_or(nan, |r| r.p),
            TestKind::Aso => {
                let s = goal.sign();
                let sa: Vec<f64> = a.iter().map(|x| s * x).collect();
                let sb: Vec<f64> = b.iter().map(|x| s * x).collect();
                let opts = AsoOptions {
                    seed: REPORT_SEED,
                    ..AsoOptions::default()
                };
                aso(&sa, &sb, &opts).unwrap_or(nan)
            }
        };
    } else if vals.len() >= 2 && baseline.len() >= 2 {
        let av: Vec<f64> = vals.values().copied().collect();
        let bv: Vec<f64> = baseline.values().copied().collect();
        note(format!(
            "{key}: only {} seed(s) shared with the baseline; fell back to Welch's unpaired t-test on {} vs {} seeds",
            common.len(),
            av.len(),
            bv.len()
        ));
        out.used = UsedTest::WelchFallback;
        out.n_pairs = av.len().min(bv.len());
        out.delta = mean(&av) - mean(&bv);
        if let Ok(w) = welch_t(&av, &bv, Alternative::TwoSided) {
            out.p = w.p;
            out.no_difference = w.outcome == Outcome::NoDifference;
            let se =
                (std(&av).powi(2) / av.len() as f64 + std(&bv).powi(2) / bv.len() as f64).sqrt();
            let half = t_ppf(0.975, w.df) * se;
            out.ci95 = if se > 0.0 {
                [out.delta - half, out.delta + half]
            } else {
                [out.delta, out.delta]
            };
        }
    } else {
        note(format!(
            "{key}: not enough completed seeds to compare with the baseline ({} vs {})",
            vals.len(),
            baseline.len()
        ));
    }
    out
}

fn join(xs: &[u64]) -> String {
    xs.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Mark the winner's comparisons exploratory unless the report is confirmatory.
fn mark_exploratory(report: &mut Report) {
    if report.confirmatory {
        return;
    }
    let Some(w) = report.winner.clone() else {
        return;
    };
    for t in &mut report.tables {
        for r in &mut t.rows {
            if r.config_key == w
                && let Some(c) = r.comparison.as_mut()
            {
                c.exploratory = true;
            }
        }
    }
}
