//! The text a paper needs besides the tables: the "Statistics" paragraph
//! (with its references as BibTeX, `report.bib`) and the "Reproducibility"
//! section answering the ACL Rolling Review responsible-NLP checklist
//! (C1–C3) and NeurIPS checklist item 7 from what the sweep actually ran.
//!
//! The paragraph is a function of the design (test, correction, metrics,
//! selection, confirmatory status) and of counts: a rerun of the same sweep
//! with more seeds changes its numbers and nothing else.

use crate::model::{Correction, TestKind};
use crate::report::Report;
use crate::view::{PlainTable, fnum, goal_words};

/// How references are cited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cite {
    /// "(Holm, 1979)".
    Text,
    /// `\citep{holm1979simple}` (natbib).
    Latex,
}

struct Reference {
    key: &'static str,
    text: &'static str,
    bibtex: &'static str,
}

const REFERENCES: &[Reference] = &[
    Reference {
        key: "dror2018hitchhiker",
        text: "Dror et al., 2018",
        bibtex: "@inproceedings{dror2018hitchhiker,\n  author = {Dror, Rotem and Baumer, Gili and Shlomov, Segev and Reichart, Roi},\n  title = {The Hitchhiker's Guide to Testing Statistical Significance in Natural Language Processing},\n  booktitle = {Proceedings of the 56th Annual Meeting of the Association for Computational Linguistics (Volume 1: Long Papers)},\n  pages = {1383--1392},\n  year = {2018}\n}\n",
    },
    Reference {
        key: "reimers2017reporting",
        text: "Reimers and Gurevych, 2017",
        bibtex: "@inproceedings{reimers2017reporting,\n  author = {Reimers, Nils and Gurevych, Iryna},\n  title = {Reporting Score Distributions Makes a Difference: Performance Study of {LSTM}-networks for Sequence Tagging},\n  booktitle = {Proceedings of the 2017 Conference on Empirical Methods in Natural Language Processing},\n  pages = {338--348},\n  year = {2017}\n}\n",
    },
    Reference {
        key: "student1908probable",
        text: "Student, 1908",
        bibtex: "@article{student1908probable,\n  author = {Student},\n  title = {The Probable Error of a Mean},\n  journal = {Biometrika},\n  volume = {6},\n  number = {1},\n  pages = {1--25},\n  year = {1908}\n}\n",
    },
    Reference {
        key: "wilcoxon1945individual",
        text: "Wilcoxon, 1945",
        bibtex: "@article{wilcoxon1945individual,\n  author = {Wilcoxon, Frank},\n  title = {Individual Comparisons by Ranking Methods},\n  journal = {Biometrics Bulletin},\n  volume = {1},\n  number = {6},\n  pages = {80--83},\n  year = {1945}\n}\n",
    },
    Reference {
        key: "dror2019deep",
        text: "Dror et al., 2019",
        bibtex: "@inproceedings{dror2019deep,\n  author = {Dror, Rotem and Shlomov, Segev and Reichart, Roi},\n  title = {Deep Dominance - How to Properly Compare Deep Neural Models},\n  booktitle = {Proceedings of the 57th Annual Meeting of the Association for Computational Linguistics},\n  pages = {2773--2785},\n  year = {2019}\n}\n",
    },
    Reference {
        key: "holm1979simple",
        text: "Holm, 1979",
        bibtex: "@article{holm1979simple,\n  author = {Holm, Sture},\n  title = {A Simple Sequentially Rejective Multiple Test Procedure},\n  journal = {Scandinavian Journal of Statistics},\n  volume = {6},\n  number = {2},\n  pages = {65--70},\n  year = {1979}\n}\n",
    },
    Reference {
        key: "benjamini1995controlling",
        text: "Benjamini and Hochberg, 1995",
        bibtex: "@article{benjamini1995controlling,\n  author = {Benjamini, Yoav and Hochberg, Yosef},\n  title = {Controlling the False Discovery Rate: A Practical and Powerful Approach to Multiple Testing},\n  journal = {Journal of the Royal Statistical Society: Series B (Methodological)},\n  volume = {57},\n  number = {1},\n  pages = {289--300},\n  year = {1995}\n}\n",
    },
    Reference {
        key: "dunn1961multiple",
        text: "Dunn, 1961",
        bibtex: "@article{dunn1961multiple,\n  author = {Dunn, Olive Jean},\n  title = {Multiple Comparisons Among Means},\n  journal = {Journal of the American Statistical Association},\n  volume = {56},\n  number = {293},\n  pages = {52--64},\n  year = {1961}\n}\n",
    },
    Reference {
        key: "lakens2013calculating",
        text: "Lakens, 2013",
        bibtex: "@article{lakens2013calculating,\n  author = {Lakens, Dani{\\\"e}l},\n  title = {Calculating and Reporting Effect Sizes to Facilitate Cumulative Science: A Practical Primer for t-tests and {ANOVAs}},\n  journal = {Frontiers in Psychology},\n  volume = {4},\n  pages = {863},\n  year = {2013}\n}\n",
    },
    Reference {
        key: "nadeau2003inference",
        text: "Nadeau and Bengio, 2003",
        bibtex: "@article{nadeau2003inference,\n  author = {Nadeau, Claude and Bengio, Yoshua},\n  title = {Inference for the Generalization Error},\n  journal = {Machine Learning},\n  volume = {52},\n  number = {3},\n  pages = {239--281},\n  year = {2003}\n}\n",
    },
    Reference {
        key: "bouckaert2004evaluating",
        text: "Bouckaert and Frank, 2004",
        bibtex: "@inproceedings{bouckaert2004evaluating,\n  author = {Bouckaert, Remco R. and Frank, Eibe},\n  title = {Evaluating the Replicability of Significance Tests for Comparing Learning Algorithms},\n  booktitle = {Advances in Knowledge Discovery and Data Mining (PAKDD 2004)},\n  series = {Lecture Notes in Computer Science},\n  volume = {3056},\n  pages = {3--12},\n  year = {2004}\n}\n",
    },
    Reference {
        key: "koehn2004statistical",
        text: "Koehn, 2004",
        bibtex: "@inproceedings{koehn2004statistical,\n  author = {Koehn, Philipp},\n  title = {Statistical Significance Tests for Machine Translation Evaluation},\n  booktitle = {Proceedings of the 2004 Conference on Empirical Methods in Natural Language Processing},\n  pages = {388--395},\n  year = {2004}\n}\n",
    },
    Reference {
        key: "berg2012empirical",
        text: "Berg-Kirkpatrick et al., 2012",
        bibtex: "@inproceedings{berg2012empirical,\n  author = {Berg-Kirkpatrick, Taylor and Burkett, David and Klein, Dan},\n  title = {An Empirical Investigation of Statistical Significance in {NLP}},\n  booktitle = {Proceedings of the 2012 Joint Conference on Empirical Methods in Natural Language Processing and Computational Natural Language Learning},\n  pages = {995--1005},\n  year = {2012}\n}\n",
    },
    Reference {
        key: "mcnemar1947note",
        text: "McNemar, 1947",
        bibtex: "@article{mcnemar1947note,\n  author = {McNemar, Quinn},\n  title = {Note on the Sampling Error of the Difference Between Correlated Proportions or Percentages},\n  journal = {Psychometrika},\n  volume = {12},\n  number = {2},\n  pages = {153--157},\n  year = {1947}\n}\n",
    },
];

fn cite(keys: &[&str], style: Cite) -> String {
    match style {
        Cite::Latex => format!("\\citep{{{}}}", keys.join(",")),
        Cite::Text => {
            let texts: Vec<&str> = keys
                .iter()
                .filter_map(|k| REFERENCES.iter().find(|r| r.key == *k).map(|r| r.text))
                .collect();
            format!("({})", texts.join("; "))
        }
    }
}

fn test_keys(r: &Report) -> &'static [&'static str] {
    if r.folds.is_some() && r.test == TestKind::PairedT {
        return &["nadeau2003inference", "bouckaert2004evaluating"];
    }
    match r.test {
        TestKind::PairedT => &["student1908probable", "dror2018hitchhiker"],
        TestKind::Wilcoxon => &["wilcoxon1945individual", "dror2018hitchhiker"],
        TestKind::Permutation => &["dror2018hitchhiker"],
        TestKind::Aso => &["dror2019deep"],
    }
}

fn correction_keys(c: Correction) -> &'static [&'static str] {
    match c {
        Correction::Holm => &["holm1979simple"],
        Correction::BenjaminiHochberg => &["benjamini1995controlling"],
        Correction::Bonferroni => &["dunn1961multiple"],
        Correction::None => &[],
    }
}

/// Seeds as ranges: `0–9`, `0–4, 7, 11`.
pub fn seed_ranges(seeds: &[u64]) -> String {
    let mut sorted = seeds.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(&start) = sorted.get(i) {
        let mut end = start;
        while sorted.get(i + 1) == Some(&(end + 1)) {
            end += 1;
            i += 1;
        }
        parts.push(if end == start {
            start.to_string()
        } else {
            format!("{start}–{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// The seeds the sweep planned, or else those any configuration completed.
fn seeds(r: &Report) -> Vec<u64> {
    if !r.run.seeds.is_empty() {
        return r.run.seeds.clone();
    }
    let mut all: Vec<u64> = r
        .configs
        .iter()
        .flat_map(|c| c.completed_seeds.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Every reference the paragraph cites.
fn cited(r: &Report) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    keys.extend(test_keys(r));
    if r.test != TestKind::Aso {
        keys.extend(correction_keys(r.correction));
    }
    keys.push("lakens2013calculating");
    if !r.confirmatory {
        keys.push("reimers2017reporting");
    }
    if r.examples.is_some() {
        keys.extend([
            "koehn2004statistical",
            "berg2012empirical",
            "mcnemar1947note",
        ]);
    }
    let mut out = Vec::new();
    for k in keys {
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// The "Statistics" paragraph, ready to paste into a paper.
pub fn statistics_paragraph(r: &Report, style: Cite) -> String {
    let seeds = seeds(r);
    let metrics: Vec<String> = r
        .tables
        .iter()
        .map(|t| format!("{} ({})", t.metric, goal_words(t.goal)))
        .collect();
    let m = r.tables.iter().map(|t| t.comparisons).max().unwrap_or(0);
    let split = if r.selection_on_test {
        "test"
    } else {
        "validation"
    };
    let (cv, over) = match r.folds {
        Some(k) => (
            format!(" on each of {k} cross-validation folds (each fold held out once)"),
            "seeds and folds",
        ),
        None => (String::new(), "seeds"),
    };
    let mut s = format!(
        "Each configuration was trained with {} random seeds ({}){cv}, the same seeds for every configuration. We report the mean ± standard deviation over {over} (sample standard deviation; ± is the spread over training runs, not a confidence interval) of the test {}, each run evaluated at the epoch with the best {split} {}.",
        seeds.len(),
        seed_ranges(&seeds),
        metrics.join(", "),
        r.select_metric
    );
    if r.test == TestKind::Aso {
        s.push_str(&format!(
            " Every configuration is compared with the baseline ({}) by Almost Stochastic Order on the per-seed scores {}; * marks ε_min < 0.5, with the confidence level Bonferroni-corrected for the {m} comparisons per metric.",
            r.baseline_key,
            cite(test_keys(r), style)
        ));
    } else {
        let correction = match r.correction {
            Correction::None => format!("not corrected for the {m} comparisons per metric"),
            c => format!(
                "adjusted for the {m} comparisons per metric with the {} procedure {}",
                c.label(),
                cite(correction_keys(c), style)
            ),
        };
        let (unit, test) = match (r.folds, r.test) {
            (Some(k), TestKind::PairedT) => (
                "seed by seed and fold by fold, on the (seed, fold) pairs completed by both",
                format!(
                    "corrected resampled t-test, whose variance accounts for the training data the folds share (n_test/n_train = 1/{})",
                    k.max(2) - 1
                ),
            ),
            (Some(_), t) => (
                "seed by seed and fold by fold, on the (seed, fold) pairs completed by both",
                t.label().to_string(),
            ),
            (None, t) => (
                "seed by seed, on the seeds completed by both",
                t.label().to_string(),
            ),
        };
        s.push_str(&format!(
            " Every configuration is compared with the baseline ({}) {unit}, with a two-sided {test} {}; p-values are {correction}, and * marks an adjusted p < 0.05.",
            r.baseline_key,
            cite(test_keys(r), style)
        ));
    }
    s.push_str(&format!(
        " We also give the mean paired difference with its 95% t-interval, the effect size d_z {} and the number of seeds on which the configuration beat the baseline.",
        cite(&["lakens2013calculating"], style)
    ));
    if r.confirmatory {
        s.push_str(" The comparisons are confirmatory: the configurations were fixed before these seeds were run.");
    } else {
        s.push_str(&format!(
            " The best configuration was chosen by its mean {split} {} on these same seeds, so its comparison with the baseline is exploratory {}; a confirmatory test needs fresh seeds.",
            r.select_metric,
            cite(&["reimers2017reporting"], style)
        ));
    }
    if r.selection_on_test {
        s.push_str(
            " Epochs were selected on the test split, so test scores are optimistically biased.",
        );
    }
    if let Some(e) = &r.examples {
        s.push_str(&format!(
            " To ask whether the differences hold on this test set, with the trained models fixed, we add a paired bootstrap over the {} test examples {}, with {} resamples pooled over seeds, and McNemar's test for accuracy on each pair of seeds {}; their unit of replication is the test example, not the seed.",
            e.n_examples,
            cite(&["koehn2004statistical", "berg2012empirical"], style),
            e.resamples,
            cite(&["mcnemar1947note"], style)
        ));
    }
    s
}

/// The BibTeX entries the Statistics paragraph cites (`report.bib`).
pub fn bibtex(r: &Report) -> String {
    cited(r)
        .iter()
        .filter_map(|k| REFERENCES.iter().find(|x| x.key == *k))
        .map(|x| x.bibtex)
        .collect::<Vec<_>>()
        .join("\n")
}

fn hours(seconds: f64) -> String {
    format!("{:.2} h ({seconds:.0} s)", seconds / 3600.0)
}

/// The Reproducibility section: `(checklist item, answer)`.
pub fn reproducibility(r: &Report) -> Vec<(String, String)> {
    let seeds = seeds(r);
    let completed = r.compute.trials;
    let failed: usize = r.configs.iter().map(|c| c.failed).sum();
    let mut out = Vec::new();
    out.push((
        "Runs per configuration".to_string(),
        format!(
            "{} seeds ({}){}; {completed} trial(s) completed and {failed} failed over {} configuration(s). Every random source of a trial (initialisation, shuffling, dropout, synthetic data) derives from its seed.",
            seeds.len(),
            seed_ranges(&seeds),
            r.folds.map_or(String::new(), |k| format!(" × {k} cross-validation folds")),
            r.configs.len()
        ),
    ));
    let space = if r.run.search_space.is_empty() {
        format!("{} configuration(s); no grid recorded", r.configs.len())
    } else {
        let size: usize = r
            .run
            .search_space
            .iter()
            .map(|(_, v)| v.len().max(1))
            .product();
        let dims: Vec<String> = r
            .run
            .search_space
            .iter()
            .map(|(k, v)| format!("{k} ∈ {{{}}}", v.join(", ")))
            .collect();
        format!(
            "grid search over {}: {size} configuration(s), {} trial(s) with the seeds",
            dims.join(" × "),
            size * seeds.len().max(1) * r.folds.unwrap_or(1) as usize
        )
    };
    out.push(("Search space".to_string(), space));
    let split = if r.selection_on_test {
        "test"
    } else {
        "validation"
    };
    out.push((
        "Selection".to_string(),
        format!(
            "each trial's epoch: the best {split} {} ({}){}; the configuration: the best mean {split} {} over seeds: {}. Baseline: {}.",
            r.select_metric,
            goal_words(r.select_goal),
            if r.run.epochs > 0 {
                format!(" of {} epochs", r.run.epochs)
            } else {
                String::new()
            },
            r.select_metric,
            r.winner.as_deref().unwrap_or("none"),
            r.baseline_key
        ),
    ));
    out.push((
        "Validation and test scores".to_string(),
        "in the table below, side by side for every configuration.".to_string(),
    ));
    let c = &r.compute;
    // Trials that shared a GPU or a fused model each count the wall time
    // of the whole run they shared, so the sums are upper bounds.
    let mut shared = Vec::new();
    if r.run.gpus_per_trial > 0 && r.run.trials_per_gpu > 1 {
        shared.push(format!(
            "up to {} trials shared a GPU (trials_per_gpu)",
            r.run.trials_per_gpu
        ));
    }
    if r.run.fuse_seeds {
        shared.push(
            "a seed-fused trial counts the wall time of its whole fused model (fuse_seeds)"
                .to_string(),
        );
    }
    let bound = if shared.is_empty() {
        String::new()
    } else {
        format!(
            " (an upper bound where trials shared: {})",
            shared.join("; ")
        )
    };
    let device = if r.run.gpus_per_trial > 0 {
        format!(
            "{} GPU(s) per trial; GPU-hours {} trial-hours × {} = {}",
            r.run.gpus_per_trial,
            if shared.is_empty() { "=" } else { "≤" },
            r.run.gpus_per_trial,
            hours(c.total_seconds * f64::from(r.run.gpus_per_trial))
        )
    } else {
        "CPU, one worker slot per trial".to_string()
    };
    out.push((
        "Hardware and compute".to_string(),
        format!(
            "{device}; {} worker(s) reported results. {} Trial time in all: {}{bound} (wall time of each completed trial's final attempt, {} trial(s)); per trial mean {:.1} s, median {:.1} s, max {:.1} s. Earlier failed attempts and orchestration time are not included.",
            c.workers.len(),
            if c.hardware.is_empty() {
                "The results do not say which hardware trained them.".to_string()
            } else {
                let parts: Vec<String> = c
                    .hardware
                    .iter()
                    .map(|(h, n)| format!("{n} trial(s): {h}"))
                    .collect();
                format!("Hardware, as the workers described it: {}.", parts.join(" | "))
            },
            hours(c.total_seconds),
            c.trials,
            c.mean_seconds,
            c.median_seconds,
            c.max_seconds
        ),
    ));
    let mut software: Vec<String> = r
        .run
        .versions
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if software.is_empty() {
        software.push("not recorded".to_string());
    }
    out.push(("Software".to_string(), software.join(", ")));
    if !r.run.model.is_empty() {
        let params: Vec<String> = r
            .run
            .params
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        out.push((
            "Model and fixed parameters".to_string(),
            format!("{}: {}", r.run.model, params.join(", ")),
        ));
    }
    if !r.run.dataset.is_empty() {
        out.push(("Dataset".to_string(), r.run.dataset.clone()));
    }
    out
}

/// Validation next to test scores of the selection metric, per configuration.
pub fn valid_test_table(r: &Report) -> PlainTable {
    let test = r.tables.iter().find(|t| t.metric == r.select_metric);
    let dec = test.map_or(4, crate::view::decimals);
    let rows = r
        .configs
        .iter()
        .map(|c| {
            let valid = match (c.valid_mean, c.valid_std) {
                (Some(m), Some(s)) => format!("{} ± {}", fnum(m, dec), fnum(s, dec)),
                (Some(m), None) => fnum(m, dec),
                _ => "–".to_string(),
            };
            let test_cell = test
                .and_then(|t| t.rows.iter().find(|row| row.config_key == c.config_key))
                .map_or("–".to_string(), |row| {
                    format!("{} ± {}", fnum(row.mean, dec), fnum(row.std, dec))
                });
            vec![
                c.config_key.clone(),
                c.completed_seeds.len().to_string(),
                valid,
                test_cell,
            ]
        })
        .collect();
    PlainTable {
        title: format!("Validation and test {}", r.select_metric),
        header: vec![
            "configuration".to_string(),
            "n".to_string(),
            format!("validation {}", r.select_metric),
            format!("test {}", r.select_metric),
        ],
        left: 1,
        rows,
        caption: format!(
            "Mean ± std over completed seeds (n) at each trial's selected epoch; the winner was chosen on the validation column{}.",
            if test.is_none() {
                format!("; {} is not a reported test metric", r.select_metric)
            } else {
                String::new()
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::seed_ranges;

    #[test]
    fn seeds_are_written_as_ranges() {
        assert_eq!(seed_ranges(&[0, 1, 2, 3]), "0–3");
        assert_eq!(seed_ranges(&[7, 0, 1, 11, 2]), "0–2, 7, 11");
        assert_eq!(seed_ranges(&[]), "");
    }
}
