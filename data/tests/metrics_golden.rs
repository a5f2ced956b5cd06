//! Checks `sigsweep_data::metrics` against reference values computed with
//! scikit-learn/numpy (`shared/golden/metrics.json`).
//!
//! The file states no tolerance; its values are float64 results of the same
//! formulas, so anything beyond summation-order noise is a bug: we allow
//! 1e-9 absolute.

use serde_json::Value;
use sigsweep_data::metrics::{classification_metrics, regression_metrics};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/golden/metrics.json"
);
const TOL: f64 = 1e-9;

fn golden() -> Value {
    let text = std::fs::read_to_string(GOLDEN)
        .unwrap_or_else(|e| panic!("cannot read golden file {GOLDEN}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad json in {GOLDEN}: {e}"))
}

fn num(case: &Value, key: &str) -> f64 {
    case[key]
        .as_f64()
        .unwrap_or_else(|| panic!("case {} has no number `{key}`", case["name"]))
}

fn close(name: &str, key: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= TOL,
        "case {name}: {key} = {got}, expected {want}"
    );
}

#[test]
fn classification_matches_sklearn() {
    let g = golden();
    let cases = g["classification"]
        .as_array()
        .expect("classification cases");
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let ints = |key: &str| -> Vec<usize> {
            case[key]
                .as_array()
                .expect("array")
                .iter()
                .map(|v| v.as_u64().expect("int label") as usize)
                .collect()
        };
        let (truth, pred) = (ints("truth"), ints("pred"));
        let n = case["num_classes"].as_u64().expect("num_classes") as usize;
        let m = classification_metrics(&truth, &pred, n);
        close(name, "accuracy", m["accuracy"], num(case, "accuracy"));
        close(
            name,
            "f1_weighted",
            m["f1_weighted"],
            num(case, "f1_weighted"),
        );
        close(name, "f1_macro", m["f1_macro"], num(case, "f1_macro"));
        let per_class = case["f1_per_class"].as_array().expect("f1_per_class");
        assert_eq!(per_class.len(), n, "case {name}");
        for (k, want) in per_class.iter().enumerate() {
            let key = format!("f1_class_{k}");
            close(name, &key, m[&key], want.as_f64().expect("number"));
        }
    }
}

#[test]
fn regression_matches_mmsa() {
    let g = golden();
    let cases = g["regression"].as_array().expect("regression cases");
    assert!(cases.len() >= 2);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let floats = |key: &str| -> Vec<f64> {
            case[key]
                .as_array()
                .expect("array")
                .iter()
                .map(|v| v.as_f64().expect("number"))
                .collect()
        };
        let (truth, pred) = (floats("truth"), floats("pred"));
        let m = regression_metrics(&truth, &pred);
        for (ours, theirs) in [
            ("mae", "MAE"),
            ("corr", "Corr"),
            ("acc7", "Mult_acc_7"),
            ("acc5", "Mult_acc_5"),
            ("acc3", "Mult_acc_3"),
            ("has0_acc2", "Has0_acc_2"),
            ("has0_f1", "Has0_F1_score"),
            ("non0_acc2", "Non0_acc_2"),
            ("non0_f1", "Non0_F1_score"),
        ] {
            close(name, ours, m[ours], num(case, theirs));
        }
    }
}

#[test]
fn regression_accepts_f32() {
    // Models produce f32; the f32 path must agree with the f64 one up to
    // the f32 rounding of the inputs.
    let g = golden();
    let case = &g["regression"][0];
    let floats = |key: &str| -> Vec<f32> {
        case[key]
            .as_array()
            .expect("array")
            .iter()
            .map(|v| v.as_f64().expect("number") as f32)
            .collect()
    };
    let m = regression_metrics(&floats("truth"), &floats("pred"));
    assert!((m["mae"] - num(case, "MAE")).abs() < 1e-6);
    assert!((m["corr"] - num(case, "Corr")).abs() < 1e-6);
}
