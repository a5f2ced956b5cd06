//! The per-example analysis against reference values from numpy, scipy,
//! statsmodels and scikit-learn (`tests/golden/report_stats.json`, written
//! by `tests/python/make_report_golden.py`). Bootstrap references are
//! distributions from 20,000 numpy resamples; ours uses its own generator,
//! so the checks compare spread, quantiles and p within Monte Carlo error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use serde_json::Value;
use sigsweep_report::per_example::{Predictions, RESAMPLES, Task};
use sigsweep_report::*;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/golden/report_stats.json"
);

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string(GOLDEN).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn record(config: &str, seed: u64, metrics: BTreeMap<String, f64>) -> TrialRecord {
    let mut r = common::record(0.001, 0.1, seed, 0.0, 0.0, 0.0);
    r.config_key = config.to_string();
    r.config = indexmap::IndexMap::from([("k".to_string(), serde_json::json!(config))]);
    r.trial_id = format!("{config}-s{seed}").into();
    r.valid_metrics = metrics.clone();
    r.metrics = metrics;
    r.predictions = Some(format!("predictions/{}.jsonl", r.trial_id));
    r
}

fn spec(metrics: &[(&str, Goal)]) -> ReportSpec {
    ReportSpec {
        grid_keys: vec!["k".to_string()],
        baseline_key: "base".to_string(),
        select_metric: metrics[0].0.to_string(),
        select_goal: metrics[0].1,
        metrics: metrics.iter().map(|(m, g)| (m.to_string(), *g)).collect(),
        ..common::spec()
    }
}

/// Records and predictions of the golden case: configuration `cfg` and
/// baseline `base`, one trial per seed.
fn case(
    g: &Value,
    classification: Option<usize>,
) -> (Vec<TrialRecord>, BTreeMap<String, Predictions>) {
    let gold = floats(&g["gold"]);
    let mut records = Vec::new();
    let mut preds = BTreeMap::new();
    for seed in g["seeds"].as_array().unwrap() {
        let seed = seed.as_u64().unwrap();
        for (config, side) in [("cfg", "config"), ("base", "baseline")] {
            let pred = floats(&g[side][seed.to_string()]);
            let metrics = match classification {
                Some(k) => {
                    let as_usize = |v: &[f64]| v.iter().map(|x| *x as usize).collect::<Vec<_>>();
                    sigsweep_data::metrics::classification_metrics(
                        &as_usize(&gold),
                        &as_usize(&pred),
                        k,
                    )
                }
                None => sigsweep_data::metrics::regression_metrics(&gold, &pred),
            };
            let r = record(config, seed, metrics);
            preds.insert(
                r.trial_id.to_string(),
                Predictions {
                    ids: (0..gold.len()).map(|i| format!("d/{i}")).collect(),
                    gold: gold.clone(),
                    pred,
                    n_classes: classification,
                },
            );
            records.push(r);
        }
    }
    (records, preds)
}

#[track_caller]
fn check_bootstrap(got: &sigsweep_stats::Bootstrap, want: &Value, what: &str) {
    let sd = f(&want["std"]);
    assert!(
        (got.observed - f(&want["observed"])).abs() < 1e-12,
        "{what}: observed Δ {} vs {}",
        got.observed,
        want["observed"]
    );
    assert!(
        (got.se / sd - 1.0).abs() < 0.06,
        "{what}: bootstrap se {} vs reference {sd}",
        got.se
    );
    for (mine, key) in [(got.ci95[0], "q025"), (got.ci95[1], "q975")] {
        assert!(
            (mine - f(&want[key])).abs() < 0.2 * sd,
            "{what}: {key} {mine} vs {} (reference sd {sd})",
            want[key]
        );
    }
    assert!(
        (got.p - f(&want["p"])).abs() < 0.035,
        "{what}: p {} vs {}",
        got.p,
        want["p"]
    );
    assert!(
        (got.share_positive - f(&want["share_positive"])).abs() < 0.035,
        "{what}: share {} vs {}",
        got.share_positive,
        want["share_positive"]
    );
    assert_eq!(got.resamples, RESAMPLES);
}

#[test]
fn classification_bootstrap_mcnemar_and_per_class_f1_match_the_references() {
    let g = golden();
    let c = &g["classification"];
    let k = c["num_classes"].as_u64().unwrap() as usize;
    let (records, preds) = case(c, Some(k));
    let spec = spec(&[("accuracy", Goal::Max), ("f1_weighted", Goal::Max)]);
    let report = build_with_predictions(&spec, &records, &preds);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    let e = report.examples.as_ref().expect("a per-example section");
    assert_eq!(e.task, Task::Classification { n_classes: k });
    assert_eq!(e.n_examples, c["gold"].as_array().unwrap().len());
    for t in &e.tables {
        let row = &t.rows[0];
        assert_eq!(row.config_key, "cfg");
        assert_eq!(row.seeds, vec![1, 2, 3]);
        check_bootstrap(&row.bootstrap, &c["bootstrap"][&t.metric], &t.metric);
        // The observed Δ is the seed table's Δ.
        let table = report.tables.iter().find(|x| x.metric == t.metric).unwrap();
        let delta = table.rows.iter().find(|r| r.config_key == "cfg").unwrap();
        let delta = delta.comparison.as_ref().unwrap().delta;
        assert!((delta - row.bootstrap.observed).abs() < 1e-12);
    }
    assert_eq!(e.mcnemar.len(), 3);
    for (got, want) in e.mcnemar.iter().zip(c["mcnemar"].as_array().unwrap()) {
        assert_eq!(got.seed, want["seed"].as_u64().unwrap());
        assert_eq!(got.test.b, want["b"].as_u64().unwrap());
        assert_eq!(got.test.c, want["c"].as_u64().unwrap());
        assert!(
            (got.test.p - f(&want["p"])).abs() < 1e-12,
            "{got:?} vs {want}"
        );
    }
    let pc = e.per_class.iter().find(|p| p.config_key == "cfg").unwrap();
    let want = &c["per_class_config"];
    for (i, class) in pc.classes.iter().enumerate() {
        let sd = f(&want["std"][i]);
        assert!((class.f1 - f(&want["f1"][i])).abs() < 1e-12);
        assert!((class.ci95[0] - f(&want["q025"][i])).abs() < 0.2 * sd);
        assert!((class.ci95[1] - f(&want["q975"][i])).abs() < 0.2 * sd);
    }
    // Confusion matrices of the winner and the baseline, summed over seeds.
    assert!(!e.confusion.is_empty());
    for m in &e.confusion {
        let total: u64 = m.counts.iter().flatten().sum();
        assert_eq!(total as usize, 3 * e.n_examples);
    }
    // Every format says what the unit of replication is.
    for format in [
        Format::Html,
        Format::Markdown,
        Format::Term { color: false },
    ] {
        let text = render(&report, format);
        assert!(text.contains("Unit of replication: the 400 test examples; every seed"));
        assert!(text.contains("McNemar"));
    }
}

#[test]
fn many_classes_are_analysed_in_bounded_memory_or_left_out_with_a_reason() {
    let g = golden();
    let c = &g["classification"];
    let spec = spec(&[("accuracy", Goal::Max), ("f1_weighted", Goal::Max)]);
    // One test example labelled (and predicted) `label` on every side: the
    // label space runs to `label + 1` classes.
    let with_label = |label: f64| {
        let (records, mut preds) = case(c, Some(4));
        for p in preds.values_mut() {
            p.gold[0] = label;
            p.pred[0] = label;
            p.n_classes = None;
        }
        build_with_predictions(&spec, &records, &preds)
    };

    // 60 classes: the bootstrap and McNemar tables, not 60-row per-class
    // tables or a 60 × 60 confusion matrix.
    let report = with_label(59.0);
    let e = report.examples.as_ref().expect("a per-example section");
    assert_eq!(e.task, Task::Classification { n_classes: 60 });
    assert_eq!(e.tables.len(), 2);
    assert_eq!(e.mcnemar.len(), 3);
    assert!(e.per_class.is_empty() && e.confusion.is_empty());
    assert!(
        report.notes.iter().any(|n| n
            == "60 classes: the per-class F1 and confusion tables are left out (they show at most 50)"),
        "{:?}",
        report.notes
    );

    // Labels up to 5·10⁸ (a predictions file's, or log-probabilities that
    // long): no per-example analysis, and no attempt at one (a dense
    // confusion matrix of that size aborted the report).
    let report = with_label(5e8);
    assert!(report.examples.is_none());
    assert!(
        report.notes.iter().any(|n| n.contains(
            "labels run up to 500000000: more than the 1000 classes the report analyses"
        )),
        "{:?}",
        report.notes
    );
    assert!(!report.tables.is_empty(), "the seed tables stay");
}

#[test]
fn regression_bootstrap_matches_the_reference() {
    let g = golden();
    let c = &g["regression"];
    let (records, preds) = case(c, None);
    let report = build_with_predictions(&spec(&[("mae", Goal::Min)]), &records, &preds);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    let e = report.examples.as_ref().expect("a per-example section");
    assert_eq!(e.task, Task::Regression);
    assert!(e.mcnemar.is_empty() && e.per_class.is_empty());
    check_bootstrap(
        &e.tables[0].rows[0].bootstrap,
        &c["bootstrap"]["mae"],
        "mae",
    );
}

#[test]
fn mismatched_or_missing_predictions_become_notes() {
    let g = golden();
    let c = &g["classification"];
    let (mut records, mut preds) = case(c, Some(4));
    // One trial's file is on other examples; another's stored metric
    // disagrees with its predictions.
    let odd = preds.get_mut("cfg-s2").unwrap();
    odd.ids[0] = "elsewhere/0".to_string();
    records[0].metrics.insert("accuracy".to_string(), 0.99);
    let report = build_with_predictions(&spec(&[("accuracy", Goal::Max)]), &records, &preds);
    let notes = report.notes.join("\n");
    assert!(notes.contains("cfg-s2: its predictions are not on the baseline's test examples"));
    assert!(notes.contains("its result says 0.990000"));
    let e = report.examples.unwrap();
    assert_eq!(e.tables[0].rows[0].seeds, vec![1, 3]);

    // Without the baseline's predictions there is no section, and it says why.
    let only_cfg: BTreeMap<_, _> = preds
        .into_iter()
        .filter(|(k, _)| k.starts_with("cfg"))
        .collect();
    let report = build_with_predictions(&spec(&[("accuracy", Goal::Max)]), &records, &only_cfg);
    assert!(report.examples.is_none());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("has no predictions"))
    );
}

#[test]
fn predictions_files_are_parsed_strictly_and_only_from_their_own_path() {
    let ok = Predictions::parse(
        "p.jsonl",
        "{\"id\":\"a/0\",\"gold\":1,\"pred\":2,\"log_probs\":[-1,-2,-3],\"extra\":1}\n",
    )
    .unwrap();
    assert_eq!(ok.n_classes, Some(3));
    for (text, want) in [
        ("{\"id\":\"a\",\"gold\":1}\n", "p.jsonl:1: not a prediction"),
        (
            "{\"id\":\"a\",\"gold\":1,\"pred\":1}\n{\"id\":\"a\",\"gold\":1,\"pred\":1}\n",
            "p.jsonl:2: duplicate example id `a`",
        ),
        ("\n", "p.jsonl: no predictions"),
        (
            "{\"id\":\"a\",\"gold\":1,\"pred\":1,\"log_probs\":[0]}\n{\"id\":\"b\",\"gold\":1,\"pred\":1}\n",
            "p.jsonl:2: 0 log-probabilities where earlier lines have 1",
        ),
    ] {
        let err = Predictions::parse("p.jsonl", text).unwrap_err();
        assert!(err.contains(want), "{err}");
    }

    let dir = tempfile::tempdir().unwrap();
    let mut r = record("base", 1, BTreeMap::new());
    r.predictions = Some("../../etc/passwd".to_string());
    let (found, notes) = per_example::load_predictions(dir.path(), &[r]);
    assert!(found.is_empty());
    assert!(
        notes[0].contains("is not predictions/base-s1.jsonl; not read"),
        "{notes:?}"
    );
}

#[test]
fn seed_counts_match_numpy() {
    let g = golden();
    for case in g["seed_counts"].as_array().unwrap() {
        let goal = if case["goal"] == "max" {
            Goal::Max
        } else {
            Goal::Min
        };
        let a = floats(&case["a"]);
        let b = floats(&case["b"]);
        let c = SeedCounts::of(a.into_iter().zip(b), goal);
        assert_eq!(
            (c.wins, c.ties, c.losses),
            (
                case["wins"].as_u64().unwrap() as usize,
                case["ties"].as_u64().unwrap() as usize,
                case["losses"].as_u64().unwrap() as usize
            ),
            "{case}"
        );
    }
}
