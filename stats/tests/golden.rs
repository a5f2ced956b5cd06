//! Every vector of `shared/golden/stats.json` (scipy 1.17, statsmodels 0.15, deepsig 1.2).
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use sigsweep_stats::*;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/golden/stats.json"
);

fn golden() -> Value {
    let text = std::fs::read_to_string(GOLDEN).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => panic!("unexpected string {other}"),
        },
        other => panic!("unexpected value {other}"),
    }
}

fn vec(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

#[track_caller]
fn close(got: f64, want: f64, rel: f64, what: &str) {
    if want.is_infinite() || want == 0.0 {
        let ok = got == want || (want == 0.0 && got.abs() < 1e-300);
        assert!(ok, "{what}: got {got}, want {want}");
        return;
    }
    let err = (got - want).abs() / want.abs();
    assert!(
        err <= rel,
        "{what}: got {got}, want {want}, rel err {err:e}"
    );
}

const REL: f64 = 1e-9;

#[test]
fn paired_vectors() {
    let g = golden();
    for case in g["paired"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let a = vec(&case["a"]);
        let b = vec(&case["b"]);
        let d = differences(&a, &b);
        assert_eq!(a.len() as u64, case["n"].as_u64().unwrap());
        close(
            mean(&a),
            num(&case["mean_a"]),
            REL,
            &format!("{name} mean_a"),
        );
        close(
            mean(&b),
            num(&case["mean_b"]),
            REL,
            &format!("{name} mean_b"),
        );
        close(
            std(&a),
            num(&case["std_a_ddof1"]),
            REL,
            &format!("{name} std_a"),
        );
        close(
            std(&b),
            num(&case["std_b_ddof1"]),
            REL,
            &format!("{name} std_b"),
        );
        let md = num(&case["mean_diff"]);
        if md == 0.0 {
            assert!(mean(&d).abs() < 1e-12);
        } else {
            close(mean(&d), md, 1e-9, &format!("{name} mean_diff"));
        }
        let sd = num(&case["std_diff_ddof1"]);
        if sd == 0.0 {
            assert!(std(&d) < 1e-12, "{name} std_diff");
        } else {
            close(std(&d), sd, REL, &format!("{name} std_diff"));
        }
        for (key, alt) in [
            ("ttest_rel_two-sided", Alternative::TwoSided),
            ("ttest_rel_greater", Alternative::Greater),
            ("ttest_rel_less", Alternative::Less),
        ] {
            let want = &case[key];
            let r = paired_t(&a, &b, alt).unwrap();
            assert_eq!(r.df, num(&want["df"]), "{name} {key} df");
            let (wt, wp) = (num(&want["t"]), num(&want["p"]));
            if wt.is_nan() {
                // scipy: undefined. We: explicit "no difference", t = 0, p = 1.
                assert_eq!(r.outcome, Outcome::NoDifference, "{name} {key}");
                assert_eq!((r.t, r.p), (0.0, 1.0));
                continue;
            }
            if wt.is_infinite() {
                assert_eq!(r.outcome, Outcome::ZeroVariance, "{name} {key}");
            }
            close(r.t, wt, REL, &format!("{name} {key} t"));
            close(r.p, wp, REL, &format!("{name} {key} p"));
        }
        if let Some(ci) = case.get("ci95_mean_diff") {
            let (lo, hi) = ci_mean_diff(&a, &b, 0.95).unwrap();
            let ci = vec(ci);
            close(lo, ci[0], REL, &format!("{name} ci lo"));
            close(hi, ci[1], REL, &format!("{name} ci hi"));
        }
        if let Some(dz) = case.get("cohens_dz") {
            close(
                cohens_dz(&a, &b).unwrap(),
                num(dz),
                REL,
                &format!("{name} dz"),
            );
        }
        if let Some(w) = case.get("wilcoxon_two-sided") {
            let r = wilcoxon(&a, &b, Alternative::TwoSided).unwrap();
            close(
                r.statistic,
                num(&w["statistic"]),
                REL,
                &format!("{name} wilcoxon W"),
            );
            close(r.p, num(&w["p"]), REL, &format!("{name} wilcoxon p"));
        } else {
            let r = wilcoxon(&a, &b, Alternative::TwoSided).unwrap();
            assert_eq!(r.outcome, Outcome::NoDifference, "{name}");
            assert_eq!(r.p, 1.0);
        }
        let w = &case["ttest_welch_two-sided"];
        let r = welch_t(&a, &b, Alternative::TwoSided).unwrap();
        close(r.t, num(&w["t"]), REL, &format!("{name} welch t"));
        close(r.p, num(&w["p"]), REL, &format!("{name} welch p"));
    }
}

#[test]
fn multiple_comparisons() {
    let g = golden();
    for case in g["multiple_comparisons"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let p = vec(&case["p"]);
        for (key, method) in [
            ("holm", Correction::Holm),
            ("fdr_bh", Correction::BenjaminiHochberg),
            ("bonferroni", Correction::Bonferroni),
        ] {
            let got = adjust(&p, method);
            let want = vec(&case[key]["p_adjusted"]);
            let reject: Vec<bool> = case[key]["reject_at_0.05"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_bool().unwrap())
                .collect();
            for i in 0..p.len() {
                close(got[i], want[i], REL, &format!("{name} {key}[{i}]"));
                // statsmodels rejects on the raw comparison (`p_adj <= alpha` for these methods).
                assert_eq!(
                    got[i] <= 0.05 + 1e-12,
                    reject[i],
                    "{name} {key} reject[{i}]"
                );
            }
        }
    }
}

#[test]
fn t_quantiles_and_tails() {
    let g = golden();
    for case in g["t_ppf"].as_array().unwrap() {
        let (df, q) = (num(&case["df"]), num(&case["q"]));
        close(
            t_ppf(q, df),
            num(&case["ppf"]),
            REL,
            &format!("t_ppf({q}, {df})"),
        );
    }
    for case in g["t_sf"].as_array().unwrap() {
        let (df, t) = (num(&case["df"]), num(&case["t"]));
        close(
            t_sf(t, df),
            num(&case["sf"]),
            REL,
            &format!("t_sf({t}, {df})"),
        );
    }
}

#[test]
fn aso_within_tolerance() {
    let g = golden();
    for case in g["aso"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let a = vec(&case["a"]);
        let b = vec(&case["b"]);
        let want = num(&case["eps_min"]);
        let tol = num(&case["tolerance"]);
        for seed in [0, 1, 42] {
            let opts = AsoOptions {
                seed,
                ..AsoOptions::default()
            };
            let got = aso(&a, &b, &opts).unwrap();
            assert!(
                (got - want).abs() <= tol,
                "{name} seed {seed}: eps_min {got}, want {want} ± {tol}"
            );
        }
    }
}

/// McNemar against statsmodels (`tests/golden/report_stats.json`).
#[test]
fn mcnemar_matches_statsmodels() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/golden/report_stats.json"
    );
    let g: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in g["mcnemar"].as_array().unwrap() {
        let b = case["b"].as_u64().unwrap();
        let c = case["c"].as_u64().unwrap();
        let exact = mcnemar(b, c, true).unwrap();
        close(
            exact.statistic,
            num(&case["exact_statistic"]),
            1e-12,
            "exact statistic",
        );
        close(exact.p, num(&case["exact_p"]), 1e-10, "exact p");
        // statsmodels divides by b + c = 0; sigsweep reports no evidence.
        if b + c > 0 {
            let chi = mcnemar(b, c, false).unwrap();
            close(
                chi.statistic,
                num(&case["chi2_statistic"]),
                1e-12,
                "chi2 statistic",
            );
            close(chi.p, num(&case["chi2_p"]), 1e-10, "chi2 p");
        }
    }
}

/// Nadeau & Bengio's corrected resampled t against numpy + scipy
/// (`tests/golden/report_stats.json`).
#[test]
fn corrected_resampled_t_matches_scipy() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/golden/report_stats.json"
    );
    let g: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in g["corrected_t"].as_array().unwrap() {
        let (a, b) = (vec(&case["a"]), vec(&case["b"]));
        let ratio = num(&case["ratio"]);
        let r = corrected_resampled_t(&a, &b, ratio, Alternative::TwoSided).unwrap();
        close(r.t, num(&case["t"]), 1e-10, "corrected t");
        close(r.df, num(&case["df"]), 1e-12, "df");
        close(r.p, num(&case["p"]), 1e-9, "corrected p");
        let (lo, hi) = corrected_ci_mean_diff(&a, &b, ratio, 0.95).unwrap();
        close(lo, num(&case["ci"][0]), 1e-9, "ci low");
        close(hi, num(&case["ci"][1]), 1e-9, "ci high");
        // Without the correction it is the paired t-test.
        let plain = corrected_resampled_t(&a, &b, 0.0, Alternative::TwoSided).unwrap();
        close(
            plain.p,
            paired_t(&a, &b, Alternative::TwoSided).unwrap().p,
            1e-12,
            "ratio 0",
        );
    }
}
