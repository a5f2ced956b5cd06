//! The Statistics paragraph, report.bib and the Reproducibility section.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sigsweep_report::writeup::{Cite, bibtex, reproducibility, statistics_paragraph};
use sigsweep_report::*;

/// A three-configuration sweep with `n` seeds.
fn records(n: usize) -> Vec<TrialRecord> {
    let mut out = Vec::new();
    for seed in 0..n {
        let s = seed as u64;
        out.push(record(0.001, 0.1, s, BASE[seed], MAE_BASE[seed], 0.70));
        out.push(record(0.003, 0.1, s, BETTER[seed], MAE_BETTER[seed], 0.72));
        out.push(record(0.001, 0.3, s, SAME[seed], MAE_BASE[seed], 0.69));
    }
    out
}

fn spec_with_run(n: u64) -> ReportSpec {
    let mut s = spec();
    s.run = RunInfo {
        model: "mmic".to_string(),
        params: vec![("hidden".to_string(), "200".to_string())],
        dataset: "iemocap (data/iemocap.pkl)".to_string(),
        seeds: (0..n).collect(),
        search_space: vec![
            (
                "lr".to_string(),
                vec!["0.001".to_string(), "0.003".to_string()],
            ),
            (
                "dropout".to_string(),
                vec!["0.1".to_string(), "0.3".to_string()],
            ),
        ],
        epochs: 30,
        gpus_per_trial: 1,
        trials_per_gpu: 1,
        fuse_seeds: false,
        versions: vec![("sigsweep".to_string(), "0.1.0".to_string())],
    };
    s
}

fn digits_masked(s: &str) -> String {
    let mut out = String::new();
    let mut last_digit = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !last_digit {
                out.push('#');
            }
            last_digit = true;
        } else {
            out.push(c);
            last_digit = false;
        }
    }
    out
}

#[test]
fn more_seeds_change_the_paragraphs_numbers_and_nothing_else() {
    let five = build(&spec_with_run(5), &records(5));
    let ten = build(&spec_with_run(10), &records(10));
    for style in [Cite::Text, Cite::Latex] {
        let a = statistics_paragraph(&five, style);
        let b = statistics_paragraph(&ten, style);
        assert_ne!(a, b);
        assert_eq!(digits_masked(&a), digits_masked(&b), "\n{a}\n{b}");
    }
    let text = statistics_paragraph(&ten, Cite::Text);
    for needle in [
        "10 random seeds (0–9)",
        "two-sided paired t-test",
        "Holm-Bonferroni",
        "2 comparisons per metric",
        "not a confidence interval",
        "exploratory",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn every_citation_has_its_bibtex_entry() {
    let mut s = spec_with_run(10);
    for (test, correction) in [
        (TestKind::PairedT, Correction::Holm),
        (TestKind::Wilcoxon, Correction::BenjaminiHochberg),
        (TestKind::Permutation, Correction::Bonferroni),
        (TestKind::Aso, Correction::Holm),
        (TestKind::PairedT, Correction::None),
    ] {
        s.test = test;
        s.correction = correction;
        let r = build(&s, &records(10));
        let latex = statistics_paragraph(&r, Cite::Latex);
        let bib = bibtex(&r);
        let mut cited = 0;
        for part in latex.split("\\citep{").skip(1) {
            let keys = part.split('}').next().unwrap();
            for key in keys.split(',') {
                cited += 1;
                assert!(
                    bib.contains(&format!("{{{key},")),
                    "{key} missing from report.bib"
                );
            }
        }
        assert!(cited >= 2);
        // Entries are not cited twice and nothing uncited is listed.
        assert_eq!(bib.matches('@').count(), {
            let mut keys: Vec<&str> = latex
                .split("\\citep{")
                .skip(1)
                .flat_map(|p| p.split('}').next().unwrap().split(','))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            keys.len()
        });
    }
}

#[test]
fn the_latex_paragraph_escapes_text_but_not_citations() {
    let r = build(&spec_with_run(10), &records(10));
    let p = sigsweep_report::latex::statistics_paragraph(&r);
    assert!(p.contains("$\\pm$"));
    assert!(p.contains("\\citep{holm1979simple}"));
    assert!(!p.contains("±"));
}

#[test]
fn reproducibility_answers_the_checklist_from_the_run() {
    let r = build(&spec_with_run(10), &records(10));
    let items = reproducibility(&r);
    let find = |k: &str| {
        items
            .iter()
            .find(|(i, _)| i == k)
            .map(|(_, a)| a.clone())
            .unwrap()
    };
    assert!(find("Runs per configuration").starts_with("10 seeds (0–9); 30 trial(s) completed"));
    assert!(find("Search space").contains("4 configuration(s), 40 trial(s)"));
    assert!(find("Selection").contains("of 30 epochs"));
    // 30 completed trials of 1 s each on 1 GPU.
    assert!(find("Hardware and compute").contains("GPU-hours = trial-hours × 1 = 0.01 h (30 s)"));
    assert!(!find("Hardware and compute").contains("upper bound"));
    assert_eq!(find("Software"), "sigsweep 0.1.0");
    assert!(find("Model and fixed parameters").contains("mmic: hidden = 200"));
    for format in [Format::Html, Format::Markdown] {
        let text = render(&r, format);
        assert!(text.contains("Reproducibility") && text.contains("Statistics"));
        assert!(text.contains("Validation and test acc"));
    }
}

/// Trials that shared a GPU or a fused model each count the whole shared
/// run's wall time: the compute figures say they are upper bounds.
#[test]
fn shared_gpus_and_fused_seeds_make_the_compute_an_upper_bound() {
    let compute = |spec: &ReportSpec| {
        reproducibility(&build(spec, &records(10)))
            .into_iter()
            .find(|(k, _)| k == "Hardware and compute")
            .map(|(_, text)| text)
            .unwrap()
    };
    let mut spec = spec_with_run(10);
    spec.run.trials_per_gpu = 8;
    spec.run.fuse_seeds = true;
    let text = compute(&spec);
    assert!(
        text.contains("GPU-hours ≤ trial-hours × 1 = 0.01 h (30 s)"),
        "{text}"
    );
    assert!(
        text.contains("(an upper bound where trials shared: up to 8 trials shared a GPU (trials_per_gpu); a seed-fused trial counts the wall time of its whole fused model (fuse_seeds))"),
        "{text}"
    );
    spec.run.gpus_per_trial = 0;
    let text = compute(&spec);
    assert!(
        text.starts_with("CPU, one worker slot per trial;")
            && !text.contains("trials shared a GPU")
            && text.contains("whole fused model"),
        "{text}"
    );
}
