//! `build` never panics and says what it did on awkward inputs.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use sigsweep_report::*;

fn all_formats(r: &Report) {
    for f in [
        Format::Term { color: true },
        Format::Term { color: false },
        Format::Markdown,
        Format::Latex,
        Format::Csv,
        Format::Json,
        Format::Html,
    ] {
        let out = render(r, f);
        assert!(!out.is_empty());
        if f != Format::Json && f != Format::Csv {
            assert!(!out.contains("NaN"), "{f:?} leaks NaN");
        }
    }
}

#[test]
fn empty_input() {
    let r = build(&spec(), &[]);
    assert!(r.notes.iter().any(|n| n.contains("no trial records")));
    all_formats(&r);
}

#[test]
fn missing_baseline() {
    let mut s = spec();
    s.baseline_key = "nope".into();
    let r = build(&s, &realistic());
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("baseline configuration nope"))
    );
    all_formats(&r);
}

#[test]
fn pairing_excludes_unshared_seeds_and_says_so() {
    let r = build(&spec(), &small());
    let t = &r.tables[0];
    let row = t
        .rows
        .iter()
        .find(|r| r.config_key == "lr=0.001,dropout=0.3")
        .unwrap();
    let c = row.comparison.as_ref().unwrap();
    assert_eq!(c.used, UsedTest::Paired);
    assert_eq!(c.n_pairs, 3);
    assert_eq!(c.excluded_seeds, vec![2]);
    assert!(r.notes.iter().any(|n| n.contains("seed(s) 2 excluded")));
    assert_eq!(r.failures.len(), 1);
    assert!(r.failures[0].reason.contains("out of memory"));
    // 4 seeds: exact tests cannot reach 0.05.
    assert!(!t.power.warnings.is_empty());
}

#[test]
fn welch_fallback_when_pairs_are_missing() {
    let mut recs = Vec::new();
    for s in 0..4u64 {
        recs.push(record(0.001, 0.1, s, 70.0 + s as f64 * 0.3, 0.7, 69.0));
    }
    for s in 10..14u64 {
        recs.push(record(0.0005, 0.1, s, 72.0 + s as f64 * 0.2, 0.6, 71.0));
    }
    let r = build(&spec(), &recs);
    let c = r.tables[0].rows[1].comparison.as_ref().unwrap();
    assert_eq!(c.used, UsedTest::WelchFallback);
    assert!(c.p.is_finite() && c.p_adj.is_finite());
    assert!(r.notes.iter().any(|n| n.contains("Welch")));
    assert!(render(&r, Format::Markdown).contains("Welch"));
    all_formats(&r);
}

#[test]
fn identical_configs_say_no_difference() {
    let mut recs = Vec::new();
    for s in 0..5u64 {
        recs.push(record(0.001, 0.1, s, 70.0 + s as f64, 0.7, 69.0));
        recs.push(record(0.0005, 0.1, s, 70.0 + s as f64, 0.7, 69.0));
    }
    let r = build(&spec(), &recs);
    let c = r.tables[0].rows[1].comparison.as_ref().unwrap();
    assert!(c.no_difference);
    assert!(!c.significant);
    assert_eq!(c.p, 1.0);
    assert!(render(&r, Format::Markdown).contains("no difference"));
    all_formats(&r);
}

#[test]
fn non_finite_and_duplicate_and_single_seed() {
    let mut recs = realistic();
    recs[0].metrics.insert("acc_2".into(), f64::NAN);
    let dup = recs[1].clone();
    recs.push(dup);
    recs.push(record(0.1, 0.9, 0, 1.0, 1.0, 1.0));
    let r = build(&spec(), &recs);
    assert!(r.notes.iter().any(|n| n.contains("duplicate")));
    assert!(r.notes.iter().any(|n| n.contains("lack a finite acc_2")));
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("not enough completed seeds"))
    );
    all_formats(&r);
}

#[test]
fn aso_mode() {
    let mut s = spec();
    s.test = TestKind::Aso;
    let r = build(&s, &realistic());
    let rows = &r.tables[0].rows;
    let better = rows[1].comparison.as_ref().unwrap();
    let same = rows[2].comparison.as_ref().unwrap();
    assert!(better.significant && better.p < 0.5, "{better:?}");
    assert!(!same.significant, "{same:?}");
    // MAE is lower-is-better: the better config still dominates.
    assert!(r.tables[1].rows[1].comparison.as_ref().unwrap().significant);
    assert!(render(&r, Format::Markdown).contains("ε_min"));
    all_formats(&r);
}

#[test]
fn all_tests_and_corrections_star_the_clear_winner() {
    for test in [TestKind::PairedT, TestKind::Wilcoxon, TestKind::Permutation] {
        for correction in [
            Correction::Holm,
            Correction::BenjaminiHochberg,
            Correction::Bonferroni,
            Correction::None,
        ] {
            let mut s = spec();
            s.test = test;
            s.correction = correction;
            let r = build(&s, &realistic());
            let rows = &r.tables[0].rows;
            assert!(
                rows[1].comparison.as_ref().unwrap().significant,
                "{test:?} {correction:?}"
            );
            assert!(
                !rows[2].comparison.as_ref().unwrap().significant,
                "{test:?} {correction:?}"
            );
        }
    }
}

#[test]
fn confirmatory_is_not_exploratory() {
    let mut s = spec();
    s.confirmatory = true;
    let r = build(&s, &realistic());
    assert!(
        r.tables
            .iter()
            .flat_map(|t| &t.rows)
            .filter_map(|r| r.comparison.as_ref())
            .all(|c| !c.exploratory)
    );
}

#[test]
fn records_round_trip_as_jsonl() {
    let recs = small();
    let line = serde_json::to_string(&recs[0]).unwrap();
    assert!(line.contains("\"status\":\"completed\""));
    let back: TrialRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(back, recs[0]);
    let minimal = r#"{"trial_id":"t","config_key":"k=1","config":{"k":1},"seed":3,"status":"failed","metrics":{},"valid_metrics":{}}"#;
    let r: TrialRecord = serde_json::from_str(minimal).unwrap();
    assert_eq!((r.attempts, r.failure, r.selected_epoch), (0, None, None));
    assert_eq!(serde_json::to_string(&Goal::Min).unwrap(), "\"min\"");
    assert_eq!(TestKind::from_cli("wilcoxon"), Some(TestKind::Wilcoxon));
    assert_eq!(
        Correction::from_cli("bh"),
        Some(Correction::BenjaminiHochberg)
    );
}

fn arb_record() -> impl Strategy<Value = TrialRecord> {
    (
        0..3usize,
        0..4u64,
        prop::bool::ANY,
        prop::num::f64::ANY,
        -1.0..1.0f64,
        prop::option::of(prop::num::f64::ANY),
    )
        .prop_map(|(cfg, seed, ok, acc, noise, valid)| {
            let lrs = [0.001, 0.0005, 0.01];
            let mut r = record(lrs[cfg], 0.1, seed, acc, 0.5 + noise, valid.unwrap_or(0.0));
            if valid.is_none() {
                r.valid_metrics.clear();
            }
            if !ok {
                r.status = TrialStatus::Failed;
                r.failure = None;
            }
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn build_and_render_never_panic(recs in prop::collection::vec(arb_record(), 0..14), test in 0..4usize, corr in 0..4usize) {
        let mut s = spec();
        s.test = [TestKind::PairedT, TestKind::Wilcoxon, TestKind::Permutation, TestKind::Aso][test];
        s.correction = [Correction::Holm, Correction::BenjaminiHochberg, Correction::Bonferroni, Correction::None][corr];
        let r = build(&s, &recs);
        for t in &r.tables {
            for row in &t.rows {
                if let Some(c) = &row.comparison {
                    prop_assert!(c.p_adj.is_nan() || (0.0..=1.0).contains(&c.p_adj));
                    if s.test != TestKind::Aso && c.p.is_finite() {
                        prop_assert!(c.p_adj >= c.p - 1e-12);
                    }
                }
            }
        }
        all_formats(&r);
    }
}

/// Learning curves: per configuration and epoch, the mean and std over
/// seeds of the selection metric on the validation split; the selected
/// epochs; the HTML draws them. Results without a history have no curve.
#[test]
fn learning_curves_average_the_seeds_histories() {
    let epoch = |e: u32, loss: f64, v: f64| EpochRecord {
        epoch: e,
        train_loss: loss,
        valid: std::collections::BTreeMap::from([("acc_2".to_string(), v)]),
        test: std::collections::BTreeMap::from([("acc_2".to_string(), v - 0.1)]),
    };
    let mut records = Vec::new();
    for (seed, vals, chosen) in [(0, [0.5, 0.7, 0.6], 2), (1, [0.7, 0.5, 0.8], 3)] {
        let mut r = record(0.001, 0.1, seed, 0.6, 1.0, 0.7);
        r.history = (1..=3)
            .map(|e| epoch(e, 1.0 / f64::from(e), vals[e as usize - 1]))
            .collect();
        r.selected_epoch = Some(chosen);
        records.push(r);
    }
    records.push(record(0.01, 0.1, 0, 0.6, 1.0, 0.7)); // no history: no curve
    let report = build(&spec(), &records);
    assert_eq!(report.curves.len(), 1);
    let c = &report.curves[0];
    assert_eq!(c.config_key, "lr=0.001,dropout=0.1");
    assert!(c.is_baseline);
    assert_eq!(c.selected, vec![2, 3]);
    let expected = [(1, 0.6), (2, 0.6), (3, 0.7)];
    for (p, (e, m)) in c.points.iter().zip(expected) {
        assert_eq!(p.0, e);
        assert!((p.1 - m).abs() < 1e-12, "{p:?}");
        assert!(
            (p.2 - 0.1f64.hypot(0.1)).abs() < 1e-12,
            "std of two values 0.1 apart: {p:?}"
        );
        assert_eq!(p.3, 2);
    }
    let html = render(&report, Format::Html);
    assert!(html.contains("<h2>Learning curves</h2>"), "{html}");
    let section = &html[html.find("<h2>Learning curves</h2>").unwrap_or(0)..];
    assert!(section.contains("<svg"), "the curves are drawn");
    // Without histories there is no section.
    let plain = build(&spec(), &records[2..]);
    assert!(plain.curves.is_empty());
    assert!(!render(&plain, Format::Html).contains("Learning curves"));
}

/// Cross-validation: pairs are (seed, fold), the p-value is Nadeau &
/// Bengio's corrected resampled t with n_test/n_train = 1/(k − 1).
#[test]
fn folds_pair_on_seed_and_fold_with_the_corrected_t_test() {
    let mut records = Vec::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for seed in 0..3u64 {
        for fold in 0..5u32 {
            let i = (seed as usize * 5 + fold as usize) % 10;
            let mut base = record(0.001, 0.1, seed, BASE[i], MAE_BASE[i], 0.70);
            let mut better = record(0.003, 0.1, seed, BETTER[i], MAE_BETTER[i], 0.72);
            base.fold = Some(fold);
            better.fold = Some(fold);
            base.trial_id = format!("base-{seed}-{fold}").into();
            better.trial_id = format!("better-{seed}-{fold}").into();
            a.push(BETTER[i]);
            b.push(BASE[i]);
            records.push(base);
            records.push(better);
        }
    }
    let r = build(&spec(), &records);
    assert_eq!(r.folds, Some(5));
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    let row = r.tables[0]
        .rows
        .iter()
        .find(|row| row.config_key == "lr=0.003,dropout=0.1")
        .unwrap();
    let c = row.comparison.as_ref().unwrap();
    assert_eq!(c.used, UsedTest::CorrectedResampled);
    assert_eq!(c.n_pairs, 15);
    assert_eq!(row.folds.len(), 15);
    let want =
        sigsweep_stats::corrected_resampled_t(&a, &b, 0.25, sigsweep_stats::Alternative::TwoSided)
            .unwrap();
    assert!((c.p - want.p).abs() < 1e-12, "{} vs {}", c.p, want.p);
    let (lo, hi) = sigsweep_stats::corrected_ci_mean_diff(&a, &b, 0.25, 0.95).unwrap();
    assert!((c.ci95[0] - lo).abs() < 1e-12 && (c.ci95[1] - hi).abs() < 1e-12);
    // The per-seed plot pairs fold with fold.
    let pairs = sigsweep_report::plots::pairs(&r.tables[0], row);
    assert_eq!(pairs.len(), 15);
    let text = writeup::statistics_paragraph(&r, writeup::Cite::Text);
    assert!(
        text.contains("on each of 5 cross-validation folds"),
        "{text}"
    );
    assert!(text.contains("Nadeau and Bengio, 2003"), "{text}");
}

/// The power line of a cross-validated report is the corrected test's:
/// the detectable |d_z| grows by sqrt(1 + n/(k − 1)).
#[test]
fn folds_widen_the_detectable_effect() {
    let mut plain = Vec::new();
    let mut folded = Vec::new();
    for seed in 0..6u64 {
        let i = seed as usize;
        plain.push(record(0.001, 0.1, seed, BASE[i], MAE_BASE[i], 0.70));
        plain.push(record(0.003, 0.1, seed, BETTER[i], MAE_BETTER[i], 0.72));
        for (k, fold) in [(0u64, 0u32), (1, 1)] {
            let s = seed / 2;
            let mut a = record(0.001, 0.1, s, BASE[i], MAE_BASE[i], 0.70);
            let mut b = record(0.003, 0.1, s, BETTER[i], MAE_BETTER[i], 0.72);
            if seed % 2 != k {
                continue;
            }
            a.fold = Some(fold);
            b.fold = Some(fold);
            a.trial_id = format!("a-{seed}").into();
            b.trial_id = format!("b-{seed}").into();
            folded.push(a);
            folded.push(b);
        }
    }
    let (p, f) = (build(&spec(), &plain), build(&spec(), &folded));
    assert_eq!(f.folds, Some(2));
    let (pp, fp) = (&p.tables[0].power, &f.tables[0].power);
    assert_eq!((pp.n, fp.n), (6, 6));
    let factor = (1.0 + 6.0 / 1.0_f64).sqrt();
    assert!((fp.min_detectable_dz / pp.min_detectable_dz - factor).abs() < 1e-12);
    assert!(render(&f, Format::Markdown).contains("two-sided corrected resampled t"));
}
