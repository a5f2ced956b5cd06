//! `wilcoxon` against `scipy.stats.wilcoxon` (defaults, scipy 1.17) on vectors that reach
//! every branch of scipy's `method="auto"`: `fixtures/wilcoxon_scipy.json`, written by
//! `fixtures/wilcoxon_scipy.py`. Scores rounded to a few decimals tie and repeat, which is
//! where the exact signed-rank table and scipy part ways.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use sigsweep_stats::ttest::Alternative;
use sigsweep_stats::wilcoxon::{EXACT_MAX_N, PERMUTATION_MAX_N, WilcoxonMethod, wilcoxon};

const FIXTURE: &str = include_str!("fixtures/wilcoxon_scipy.json");

fn vector(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[track_caller]
fn close(got: f64, want: f64, what: &str) {
    let ok = (got - want).abs() <= 1e-12 + 1e-9 * want.abs();
    assert!(ok, "{what}: got {got}, scipy {want}");
}

#[test]
fn every_branch_of_scipys_auto_method_agrees() {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (a, b) = (vector(&case["a"]), vector(&case["b"]));
        for (key, alternative) in [
            ("two-sided", Alternative::TwoSided),
            ("greater", Alternative::Greater),
            ("less", Alternative::Less),
        ] {
            let r = wilcoxon(&a, &b, alternative).unwrap();
            let want = &case[key];
            close(
                r.statistic,
                want["statistic"].as_f64().unwrap(),
                &format!("{name} {key} statistic"),
            );
            close(r.p, want["p"].as_f64().unwrap(), &format!("{name} {key} p"));
            seen.insert(format!("{:?}", r.method));
        }
    }
    // The fixture reaches all three ways of computing p.
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["Exact", "Normal", "Permutation"]
    );
}

#[test]
fn the_method_follows_scipys_rule_on_pairs_counted_with_their_zeros() {
    let method = |d: &[f64]| {
        let zeros = vec![0.0; d.len()];
        wilcoxon(d, &zeros, Alternative::TwoSided).unwrap().method
    };
    let distinct = |n: usize| (1..=n).map(|i| i as f64).collect::<Vec<_>>();
    assert_eq!(method(&distinct(EXACT_MAX_N)), WilcoxonMethod::Exact);
    assert_eq!(method(&distinct(EXACT_MAX_N + 1)), WilcoxonMethod::Normal);
    // One zero among 13 pairs: permutation; among 14: normal.
    let mut d = distinct(PERMUTATION_MAX_N);
    d[0] = 0.0;
    assert_eq!(method(&d), WilcoxonMethod::Permutation);
    let mut d = distinct(PERMUTATION_MAX_N + 1);
    d[0] = 0.0;
    assert_eq!(method(&d), WilcoxonMethod::Normal);
    // A tie, no zero.
    let mut d = distinct(10);
    d[1] = -1.0;
    assert_eq!(method(&d), WilcoxonMethod::Permutation);
    // 51 pairs of which 2 differ: the normal approximation, as scipy counts the zeros.
    let mut d = vec![0.0; EXACT_MAX_N + 1];
    (d[0], d[1]) = (1.0, 2.0);
    assert_eq!(method(&d), WilcoxonMethod::Normal);
}
