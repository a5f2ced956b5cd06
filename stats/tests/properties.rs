//! Property tests of the paired statistics and the corrections.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sigsweep_stats::*;

fn pair(max_n: usize) -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    (2..max_n).prop_flat_map(|n| {
        (
            prop::collection::vec(-100.0..100.0f64, n),
            prop::collection::vec(-100.0..100.0f64, n),
        )
    })
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn p_values_are_probabilities((a, b) in pair(30)) {
        for alt in [Alternative::TwoSided, Alternative::Greater, Alternative::Less] {
            let t = paired_t(&a, &b, alt).unwrap();
            prop_assert!((0.0..=1.0).contains(&t.p), "paired {alt:?} {}", t.p);
            let w = welch_t(&a, &b, alt).unwrap();
            prop_assert!((0.0..=1.0).contains(&w.p));
            let r = wilcoxon(&a, &b, alt).unwrap();
            prop_assert!((0.0..=1.0).contains(&r.p));
        }
        let perm = permutation_test(&a[..a.len().min(12)], &b[..b.len().min(12)], Alternative::TwoSided, 100, 0).unwrap();
        prop_assert!((0.0..=1.0).contains(&perm.p));
        let c = compare(&a, &b);
        for p in [c.p_two_sided, c.p_greater, c.p_less, c.wilcoxon_p, c.welch_p] {
            prop_assert!((0.0..=1.0).contains(&p));
        }
    }

    #[test]
    fn swapping_negates_t_and_keeps_two_sided_p((a, b) in pair(30)) {
        let ab = paired_t(&a, &b, Alternative::TwoSided).unwrap();
        let ba = paired_t(&b, &a, Alternative::TwoSided).unwrap();
        prop_assert!(close(ab.t, -ba.t, 1e-9), "{} vs {}", ab.t, ba.t);
        prop_assert!(close(ab.p, ba.p, 1e-9));
        let g = paired_t(&a, &b, Alternative::Greater).unwrap();
        let l = paired_t(&b, &a, Alternative::Less).unwrap();
        prop_assert!(close(g.p, l.p, 1e-9));
        let wab = welch_t(&a, &b, Alternative::TwoSided).unwrap();
        let wba = welch_t(&b, &a, Alternative::TwoSided).unwrap();
        prop_assert!(close(wab.t, -wba.t, 1e-9));
        prop_assert!(close(wab.p, wba.p, 1e-9));
        let rab = wilcoxon(&a, &b, Alternative::TwoSided).unwrap();
        let rba = wilcoxon(&b, &a, Alternative::TwoSided).unwrap();
        prop_assert!(close(rab.p, rba.p, 1e-12));
    }

    #[test]
    fn adding_a_constant_changes_nothing((a, b) in pair(30), c in -1000.0..1000.0f64) {
        let a2: Vec<f64> = a.iter().map(|x| x + c).collect();
        let b2: Vec<f64> = b.iter().map(|x| x + c).collect();
        let x = paired_t(&a, &b, Alternative::TwoSided).unwrap();
        let y = paired_t(&a2, &b2, Alternative::TwoSided).unwrap();
        prop_assert!(close(x.t, y.t, 1e-6), "{} vs {}", x.t, y.t);
        prop_assert!(close(x.p, y.p, 1e-6));
        let (l1, h1) = ci_mean_diff(&a, &b, 0.95).unwrap();
        let (l2, h2) = ci_mean_diff(&a2, &b2, 0.95).unwrap();
        prop_assert!(close(l1, l2, 1e-6) && close(h1, h2, 1e-6));
        prop_assert!(close(cohens_dz(&a, &b).unwrap(), cohens_dz(&a2, &b2).unwrap(), 1e-6));
        let w1 = welch_t(&a, &b, Alternative::TwoSided).unwrap();
        let w2 = welch_t(&a2, &b2, Alternative::TwoSided).unwrap();
        prop_assert!(close(w1.p, w2.p, 1e-6));
    }

    #[test]
    fn holm_dominates_raw_and_is_monotone(p in prop::collection::vec(0.0..=1.0f64, 1..40)) {
        let adj = holm(&p);
        prop_assert_eq!(adj.len(), p.len());
        for i in 0..p.len() {
            prop_assert!(adj[i] >= p[i]);
            prop_assert!(adj[i] <= 1.0);
            for j in 0..p.len() {
                if p[i] < p[j] {
                    prop_assert!(adj[i] <= adj[j], "rank order broken: {:?} -> {:?}", p, adj);
                }
            }
        }
        let bh = benjamini_hochberg(&p);
        let bo = bonferroni(&p);
        for i in 0..p.len() {
            prop_assert!(bh[i] >= p[i] * (1.0 - 1e-15) && bh[i] <= bo[i] * (1.0 + 1e-15) && adj[i] <= bo[i] * (1.0 + 1e-15));
        }
    }

    #[test]
    fn compare_never_panics(a in prop::collection::vec(prop::num::f64::ANY, 0..8), b in prop::collection::vec(prop::num::f64::ANY, 0..8)) {
        let c = compare(&a, &b);
        let json = serde_json::to_string(&c).unwrap();
        let back: Comparison = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back.n, c.n);
    }
}
