//! Behaviour not covered by the golden file.
#![allow(clippy::unwrap_used)]

use sigsweep_stats::*;

const A: [f64; 10] = [
    68.63, 70.01, 68.89, 68.27, 69.08, 68.61, 68.16, 69.47, 69.17, 68.66,
];
const B: [f64; 10] = [
    67.79, 69.1, 68.08, 67.87, 68.39, 68.17, 67.81, 68.64, 68.4, 67.86,
];

#[test]
fn exact_permutation_floor_and_small_cases() {
    let r = permutation_test(&A, &B, Alternative::TwoSided, 0, 0).unwrap();
    assert!(r.exact);
    assert_eq!(r.permutations, 1024);
    assert_eq!(r.p, 2.0 / 1024.0);
    let g = permutation_test(&A, &B, Alternative::Greater, 0, 0).unwrap();
    assert_eq!(g.p, 1.0 / 1024.0);
    let l = permutation_test(&A, &B, Alternative::Less, 0, 0).unwrap();
    assert_eq!(l.p, 1.0);
    let r = permutation_test(&[1.0, 2.0], &[0.5, 1.0], Alternative::TwoSided, 0, 0).unwrap();
    assert_eq!(r.p, 0.5);
    let z = permutation_test(&[1.0, 2.0], &[1.0, 2.0], Alternative::TwoSided, 0, 0).unwrap();
    assert_eq!(z.p, 1.0);
}

#[test]
fn monte_carlo_permutation_is_seeded() {
    let a: Vec<f64> = (0..30).map(|i| (i as f64 * 0.37).sin() + 0.3).collect();
    let b: Vec<f64> = (0..30).map(|i| (i as f64 * 0.91).cos()).collect();
    let x = permutation_test(&a, &b, Alternative::TwoSided, 2000, 7).unwrap();
    let y = permutation_test(&a, &b, Alternative::TwoSided, 2000, 7).unwrap();
    assert!(!x.exact);
    assert_eq!(x.p, y.p);
    assert!(x.p >= 1.0 / 2001.0);
    // Agrees roughly with the paired t-test on well-behaved data.
    let t = paired_t(&a, &b, Alternative::TwoSided).unwrap();
    assert!((x.p - t.p).abs() < 0.1, "{} vs {}", x.p, t.p);
    assert!(permutation_test(&a, &b, Alternative::TwoSided, 0, 7).is_err());
}

#[test]
fn wilcoxon_normal_approximation_above_50() {
    // 60 differences 1..=60 alternating in sign, two tied pairs via duplicates.
    let d: Vec<f64> = (1..=60)
        .map(|i| {
            let m = if i % 7 == 0 { (i - 1) as f64 } else { i as f64 };
            if i % 3 == 0 { -m } else { m }
        })
        .collect();
    let zeros = vec![0.0; d.len()];
    let r = wilcoxon(&d, &zeros, Alternative::TwoSided).unwrap();
    assert_eq!(r.method, WilcoxonMethod::Normal);
    assert_eq!(r.n_nonzero, 60);
    // Reference computed with the scipy formula (tie-corrected variance, no continuity
    // correction) in numpy: r_plus = 1240.0, z = 1.9024..., p = 0.057112...
    let ranks = wilcoxon::rank_average(&d.iter().map(|x| x.abs()).collect::<Vec<_>>());
    let r_plus: f64 = d
        .iter()
        .zip(&ranks)
        .filter(|(x, _)| **x > 0.0)
        .map(|(_, r)| r)
        .sum();
    let n = 60.0_f64;
    let mut var = n * (n + 1.0) * (2.0 * n + 1.0) / 24.0;
    let tied_groups = 8.0; // |d| = 6, 13, 20, 27, 34, 41, 48, 55 appear twice
    var -= tied_groups * (8.0 - 2.0) / 48.0;
    let z = (r_plus - n * (n + 1.0) / 4.0) / var.sqrt();
    let p = 2.0 * norm_sf(z.abs());
    assert!((r.p - p).abs() < 1e-12, "{} vs {}", r.p, p);
    assert_eq!(r.statistic, r_plus.min(n * (n + 1.0) / 2.0 - r_plus));
}

#[test]
fn wilcoxon_one_sided() {
    let g = wilcoxon(&A, &B, Alternative::Greater).unwrap();
    let l = wilcoxon(&A, &B, Alternative::Less).unwrap();
    assert_eq!(g.p, 1.0 / 1024.0);
    assert_eq!(l.p, 1.0);
    assert_eq!(g.statistic, 55.0);
}

#[test]
fn degenerate_inputs_are_errors_or_explicit() {
    assert!(matches!(
        paired_t(&[1.0], &[2.0], Alternative::TwoSided),
        Err(StatsError::TooFewSamples { .. })
    ));
    assert!(matches!(
        paired_t(&[1.0, 2.0], &[2.0], Alternative::TwoSided),
        Err(StatsError::LengthMismatch { .. })
    ));
    assert_eq!(
        paired_t(&[1.0, f64::NAN], &[2.0, 1.0], Alternative::TwoSided),
        Err(StatsError::NonFinite)
    );
    let r = paired_t(&[1.0, 2.0, 3.0], &[2.0, 3.0, 4.0], Alternative::TwoSided).unwrap();
    assert_eq!(
        (r.t, r.p, r.outcome),
        (f64::NEG_INFINITY, 0.0, Outcome::ZeroVariance)
    );
    // Decimal noise in constant differences is still zero variance.
    let r = paired_t(&[3.1, 4.1, 5.1], &[2.0, 3.0, 4.0], Alternative::Greater).unwrap();
    assert_eq!(r.outcome, Outcome::ZeroVariance);
    assert_eq!(r.p, 0.0);
    assert!(t_ppf(1.5, 3.0).is_nan());
    assert!(t_sf(1.0, -1.0).is_nan());
}

#[test]
fn corrections_handle_nan_and_empty() {
    assert!(holm(&[]).is_empty());
    assert_eq!(holm(&[f64::NAN, 0.01]), vec![1.0, 0.02]);
    assert_eq!(adjust(&[0.2, 0.01], Correction::None), vec![0.2, 0.01]);
}

#[test]
fn power_and_warnings() {
    let p = power_analysis(10, 1, 0.05, 0.8);
    // G*Power (noncentral t) gives 0.996 for n = 10, alpha = .05, power = .8.
    assert!(
        (p.min_detectable_dz - 0.996).abs() < 0.01,
        "{}",
        p.min_detectable_dz
    );
    assert!(p.warnings.is_empty());
    let p = power_analysis(5, 1, 0.05, 0.8);
    assert!(p.warnings.contains(&PowerWarning::FewSeeds { n: 5 }));
    assert!(
        p.warnings
            .iter()
            .any(|w| matches!(w, PowerWarning::ExactFloor { .. }))
    );
    let p = power_analysis(6, 2, 0.05, 0.8);
    assert!(
        p.warnings
            .iter()
            .any(|w| matches!(w, PowerWarning::TooManyComparisons { max_m: 1, .. }))
    );
    let p = power_analysis(1, 1, 0.05, 0.8);
    assert!(p.min_detectable_dz.is_infinite());
    assert!(p.warnings.contains(&PowerWarning::Untestable { n: 1 }));
    assert!(
        power_analysis(10, 4, 0.05, 0.8).min_detectable_dz
            > power_analysis(10, 1, 0.05, 0.8).min_detectable_dz
    );
    assert_eq!(min_exact_p(10), 2.0 / 1024.0);
}

#[test]
fn compare_json_keys_and_non_finite() {
    let c = compare(&A, &B);
    let v: serde_json::Value = serde_json::to_value(&c).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
    let mut want = vec![
        "n",
        "mean_a",
        "mean_b",
        "mean_diff",
        "std_diff",
        "t",
        "df",
        "p_two_sided",
        "p_greater",
        "p_less",
        "ci95",
        "cohens_dz",
        "wilcoxon_p",
        "permutation_p",
        "welch_p",
        "aso_eps_min",
    ];
    let mut got = keys.clone();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want);
    assert!(c.aso_eps_min < 0.5);
    assert_eq!(c.permutation_p, 2.0 / 1024.0);

    let c = compare(&[3.0, 3.0, 4.0], &[2.0, 2.0, 3.0]);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["t"], "inf");
    assert_eq!(v["p_two_sided"], 0.0);
    assert_eq!(v["cohens_dz"], "inf");
    let back: Comparison = serde_json::from_value(v).unwrap();
    assert_eq!(back.t, f64::INFINITY);

    let c = compare(&[1.0], &[2.0, 3.0]);
    assert_eq!(c.n, 1);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["t"], "nan");
    assert!(try_compare(&[1.0], &[2.0, 3.0], &CompareOptions::default()).is_err());

    let c = compare(&[0.5, 0.6, 0.7], &[0.5, 0.6, 0.7]);
    assert_eq!(
        (c.t, c.p_two_sided, c.wilcoxon_p, c.welch_p),
        (0.0, 1.0, 1.0, 1.0)
    );
}

#[test]
fn aso_is_deterministic_and_oriented() {
    let o = AsoOptions::default();
    assert_eq!(aso(&A, &B, &o).unwrap(), aso(&A, &B, &o).unwrap());
    assert!(aso(&A, &B, &o).unwrap() < 0.5);
    assert!(aso(&B, &A, &o).unwrap() > 0.5);
    assert_eq!(violation_ratio(&A, &A, 0.005).unwrap(), 0.5);
    let m = AsoOptions {
        num_comparisons: 5,
        ..o
    };
    assert!(aso(&A, &B, &m).unwrap() >= aso(&A, &B, &o).unwrap());
    assert!(aso(&[], &B, &o).is_err());
}

/// `t_ppf` is total and accurate in the tails, where statrs' own inverse is
/// not (it stalls near |t| = 9·10⁷, panics below q ≈ 10⁻¹⁷⁵ and never
/// returns for df = 1000, q = 10⁻¹⁰⁰ or df = 10¹², q = 0.1): closed forms
/// for df = 1 and 2, and the CDF at the quantile for the rest.
#[test]
fn t_quantiles_are_total_and_accurate_in_the_tails() {
    let close = |got: f64, want: f64, what: &str| {
        assert!(
            got == want || (got - want).abs() <= 1e-12 * want.abs(),
            "{what}: got {got}, want {want}"
        );
    };
    for e in [1, 3, 7, 8, 10, 12, 20, 50, 100, 200, 300] {
        let q = 10f64.powi(-e);
        // Cauchy: t = −1 / tan(π q).
        close(
            t_ppf(q, 1.0),
            -1.0 / (std::f64::consts::PI * q).tan(),
            "df 1",
        );
        close(
            t_ppf(1.0 - q, 1.0),
            1.0 / (std::f64::consts::PI * (1.0 - (1.0 - q))).tan(),
            "df 1 upper",
        );
        // df = 2: t = (2q − 1) / √(2 q (1 − q)).
        close(
            t_ppf(q, 2.0),
            (2.0 * q - 1.0) / (2.0 * q * (1.0 - q)).sqrt(),
            "df 2",
        );
    }
    assert_eq!(t_ppf(0.5, 7.0), 0.0);
    // Very large df: the normal quantile, to within (|z|³ + |z|) / 4ν.
    for e in [1, 4, 12, 100, 300] {
        let (q, z) = (10f64.powi(-e), norm_ppf(10f64.powi(-e)));
        let t = t_ppf(q, 1e12);
        assert!(t <= z && t - z >= -(z.powi(3).abs() + z.abs()) / 4e12 * 1.01 - 1e-15 * z.abs());
    }
    for df in [0.5, 3.0, 10.0, 1e3, 1e6] {
        for e in [1, 2, 4, 8, 12, 30, 100, 300] {
            let q = 10f64.powi(-e);
            let t = t_ppf(q, df);
            assert!(t < 0.0 && t_ppf(1.0 - q, df) == -t_ppf(1.0 - (1.0 - q), df));
            if t.is_finite() && t > -1e150 {
                let back = t_cdf(t, df);
                assert!(
                    (back / q - 1.0).abs() < 1e-9,
                    "df {df}, q {q:e}: t {t:e}, cdf {back:e}"
                );
            }
        }
    }
    // Past the range of f64 the quantile is infinite.
    assert_eq!(t_ppf(1e-300, 0.5), f64::NEG_INFINITY);
}

#[test]
fn mcnemar_refuses_counts_whose_sum_overflows() {
    assert!(mcnemar(u64::MAX, 1, true).is_err());
    assert!(mcnemar(u64::MAX, 0, false).is_ok());
}
