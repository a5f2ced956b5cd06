//! Format-neutral view of a report: captions, headers and cells shared by the text renderers.

use crate::model::{Goal, TestKind};
use crate::report::{MetricTable, Report, Row, UsedTest};

/// One table cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    /// Plain text (unicode symbols ±, Δ, ε, †; renderers escape as needed).
    pub text: String,
    /// Bold (best mean).
    pub bold: bool,
    /// Significance mark `*`.
    pub star: bool,
    /// Exploratory mark `†`.
    pub dagger: bool,
}

impl Cell {
    fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }
}

/// A metric table ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct TableView {
    /// Metric name.
    pub metric: String,
    /// Caption sentences.
    pub caption: String,
    /// Power line and its warnings.
    pub power: Vec<String>,
    /// Column headers.
    pub header: Vec<String>,
    /// Number of leading hyperparameter columns (left-aligned).
    pub n_hyper: usize,
    /// Rows of cells.
    pub rows: Vec<Vec<Cell>>,
}

/// Decimals for a metric table from the magnitude of its means.
pub fn decimals(t: &MetricTable) -> usize {
    let max = t
        .rows
        .iter()
        .map(|r| r.mean.abs())
        .filter(|m| m.is_finite())
        .fold(0.0_f64, f64::max);
    if max >= 10.0 {
        2
    } else if max >= 1.0 {
        3
    } else {
        4
    }
}

/// Fixed-point number, `–` for `NaN`, `∞` for infinities; `-0.00` is printed as `0.00`.
pub fn fnum(x: f64, dec: usize) -> String {
    if x.is_nan() {
        return "–".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "∞" } else { "-∞" }.to_string();
    }
    let s = format!("{x:.dec$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// p-value: three decimals, scientific below 0.001, `–` for `NaN`.
pub fn fp(p: f64) -> String {
    if p.is_nan() {
        "–".to_string()
    } else if p == 0.0 {
        "0".to_string()
    } else if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// Signed difference with an explicit `+`.
pub fn fdelta(x: f64, dec: usize) -> String {
    let s = fnum(x, dec);
    if x.is_finite() && x > 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        format!("+{s}")
    } else {
        s
    }
}

/// Headline banners (test-split selection, exploratory/confirmatory).
pub fn banners(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    if r.selection_on_test {
        out.push("WARNING: epochs were selected on the TEST split. Test scores are optimistically biased and the significance tests below do not support generalisation claims; re-run with validation-based selection.".to_string());
    }
    if r.confirmatory {
        out.push("Confirmatory report: fresh seeds, configurations fixed in advance.".to_string());
    } else {
        out.push("Exploratory report: configurations were compared on the seeds used to choose them; confirm the winner on fresh seeds (`sigsweep confirm`).".to_string());
    }
    out
}

/// Winner line.
pub fn winner_line(r: &Report) -> String {
    match &r.winner {
        Some(w) => format!(
            "Winner (best validation {} mean, {}): {}",
            r.select_metric,
            goal_words(r.select_goal),
            w
        ),
        None => "Winner: none (no validation values)".to_string(),
    }
}

/// "higher is better" / "lower is better".
pub fn goal_words(g: Goal) -> &'static str {
    match g {
        Goal::Max => "higher is better",
        Goal::Min => "lower is better",
    }
}

/// Caption of a metric table.
pub fn caption(r: &Report, t: &MetricTable) -> String {
    let stat = if r.test == TestKind::Aso {
        format!(
            "ε_min: {} of config over baseline; * ε_min < 0.5 (adjusted: confidence level Bonferroni-corrected for {} comparisons{})",
            r.test.label(),
            t.comparisons,
            if r.correction == crate::model::Correction::None {
                ", disabled"
            } else {
                ""
            }
        )
    } else {
        let test = match (r.folds, r.test) {
            (Some(k), TestKind::PairedT) => format!(
                "corrected resampled t-test (Nadeau & Bengio) on (seed, fold) pairs of {k}-fold cross-validation, n_test/n_train = 1/{}, which also widens the CI",
                k.max(2) - 1
            ),
            _ => r.test.label().to_string(),
        };
        format!(
            "p: two-sided {test}; p_adj: {} across {} comparison(s) with the baseline; * p_adj < 0.05",
            r.correction.label(),
            t.comparisons
        )
    };
    let mut s = format!(
        "{} on {} ({}): mean ± std over seeds; n = seeds used. Δ = config − baseline ({}) with 95% CI, paired by seed: only seeds completed in both are compared. Better on: the paired seeds on which the configuration beats the baseline (wins–ties–losses). {}. Bold: best mean.",
        t.metric,
        r.dataset,
        goal_words(t.goal),
        r.baseline_key,
        stat
    );
    if !r.confirmatory {
        s.push_str(&format!(
            " † winner chosen on validation {} of the same seeds: exploratory.",
            r.select_metric
        ));
    }
    if t.rows.iter().any(|row| {
        row.comparison
            .as_ref()
            .is_some_and(|c| c.used == UsedTest::WelchFallback)
    }) {
        s.push_str(" Welch: fewer than 2 shared seeds, Welch's unpaired t-test used instead.");
    }
    s
}

/// Power line and warnings of a metric table.
/// With folds (`Some(k)`) the design is the corrected resampled t's.
pub fn power_lines(t: &MetricTable, folds: Option<u32>) -> Vec<String> {
    let p = &t.power;
    let mut out = vec![format!(
        "Power: with n = {} paired {} and m = {} comparison(s), the minimum detectable |d_z| at {:.0}% power (two-sided {}, α = {}/m) is {}.",
        p.n,
        if folds.is_some() {
            "(seed, fold) units"
        } else {
            "seeds"
        },
        p.m,
        p.power * 100.0,
        if folds.is_some() {
            "corrected resampled t"
        } else {
            "paired t"
        },
        p.alpha,
        fnum(p.min_detectable_dz, 2)
    )];
    out.extend(p.warnings.iter().map(|w| format!("Warning: {w}")));
    out
}

fn role(row: &Row) -> String {
    let mut parts = Vec::new();
    if row.is_baseline {
        parts.push("baseline".to_string());
    }
    if row.is_winner {
        parts.push("winner".to_string());
    }
    if let Some(c) = &row.comparison {
        match c.used {
            UsedTest::WelchFallback => parts.push("Welch".to_string()),
            UsedTest::None => parts.push("untested".to_string()),
            UsedTest::Paired | UsedTest::CorrectedResampled => {}
        }
        if c.no_difference {
            parts.push("no difference".to_string());
        }
    }
    parts.join(", ")
}

/// Build the neutral view of one metric table.
pub fn table_view(r: &Report, t: &MetricTable) -> TableView {
    let dec = decimals(t);
    let mut header: Vec<String> = r.grid_keys.clone();
    let pcol = if r.test == TestKind::Aso {
        "ε_min"
    } else {
        "p"
    };
    header.extend(
        [
            "n",
            "mean ± std",
            "Δ [95% CI]",
            "better on (W–T–L)",
            "d_z",
            pcol,
            &format!("{pcol}_adj"),
            "",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let mut rows = Vec::new();
    for row in &t.rows {
        let mut cells: Vec<Cell> = row.hyper.iter().map(Cell::plain).collect();
        cells.push(Cell::plain(row.seeds.len().to_string()));
        let sig = row.comparison.as_ref().is_some_and(|c| c.significant);
        cells.push(Cell {
            text: format!("{} ± {}", fnum(row.mean, dec), fnum(row.std, dec)),
            bold: row.is_best,
            star: sig,
            dagger: false,
        });
        match &row.comparison {
            None => {
                cells.push(Cell::plain("baseline"));
                cells.push(Cell::plain("–"));
                cells.push(Cell::plain("–"));
                cells.push(Cell::plain("–"));
                cells.push(Cell::plain("–"));
            }
            Some(c) => {
                let ci = if c.ci95[0].is_nan() {
                    String::new()
                } else {
                    format!(" [{}, {}]", fdelta(c.ci95[0], dec), fdelta(c.ci95[1], dec))
                };
                cells.push(Cell::plain(format!("{}{}", fdelta(c.delta, dec), ci)));
                cells.push(Cell::plain(c.seeds.label()));
                cells.push(Cell::plain(fnum(c.dz, 2)));
                cells.push(Cell::plain(fp(c.p)));
                cells.push(Cell {
                    text: fp(c.p_adj),
                    bold: false,
                    star: sig,
                    dagger: c.exploratory,
                });
            }
        }
        cells.push(Cell::plain(role(row)));
        rows.push(cells);
    }
    TableView {
        metric: t.metric.clone(),
        caption: caption(r, t),
        power: power_lines(t, r.folds),
        header,
        n_hyper: r.grid_keys.len(),
        rows,
    }
}

/// Failed trial lines.
pub fn failure_lines(r: &Report) -> Vec<String> {
    r.failures
        .iter()
        .map(|f| {
            format!(
                "{} ({}, seed {}, {} attempt(s)): {}",
                f.trial_id, f.config_key, f.seed, f.attempts, f.reason
            )
        })
        .collect()
}

/// A titled table of plain cells with a caption (the per-example section).
#[derive(Debug, Clone, PartialEq)]
pub struct PlainTable {
    pub title: String,
    pub header: Vec<String>,
    /// Leading left-aligned columns.
    pub left: usize,
    pub rows: Vec<Vec<String>>,
    pub caption: String,
}

/// What the per-example section is and how it pools seeds (one paragraph).
pub fn examples_intro(r: &Report) -> Option<String> {
    let e = r.examples.as_ref()?;
    let pairing = if e.shared_test_set {
        "every seed was evaluated on the same test set"
    } else {
        "each seed had its own test set (drawn from the seed), so examples are paired within a seed"
    };
    Some(format!(
        "Unit of replication: the {} test examples; {pairing}. The tables above replicate over seeds and answer \"does the method help across training randomness\"; the tests here hold the trained models fixed and answer \"does it help on this test set\". Paired bootstrap (Koehn 2004; Berg-Kirkpatrick et al. 2012): {} resamples of the test examples (seed {}); each resample is applied to every seed, and Δ* is the mean over the seeds shared with the baseline of config − baseline on it. 95% CI: percentile; p: two-sided, shifted null, (1 + #{{|Δ* − Δ| ≥ |Δ|}}) / (1 + B); p_adj: {} across the metric's comparisons; * p_adj < 0.05; Δ*>0: share of resamples in which the configuration scores higher.",
        e.n_examples,
        e.resamples,
        e.seed,
        r.correction.label()
    ))
}

/// The per-example tables: one bootstrap table per metric, McNemar per
/// seed pair, and per-class F1 of the baseline and the winner.
pub fn example_tables(r: &Report) -> Vec<PlainTable> {
    let Some(e) = &r.examples else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in &e.tables {
        let rows = t
            .rows
            .iter()
            .map(|c| {
                let b = &c.bootstrap;
                vec![
                    c.config_key.clone(),
                    c.seeds.len().to_string(),
                    fdelta(b.observed, 4),
                    format!("[{}, {}]", fdelta(b.ci95[0], 4), fdelta(b.ci95[1], 4)),
                    fp(b.p),
                    format!("{}{}", fp(c.p_adj), if c.significant { "*" } else { "" }),
                    fnum(b.share_positive, 3),
                ]
            })
            .collect();
        out.push(PlainTable {
            title: format!("Paired bootstrap over test examples: {}", t.metric),
            header: ["configuration", "seeds", "Δ", "95% CI", "p", "p_adj", "Δ*>0"]
                .map(String::from)
                .to_vec(),
            left: 1,
            rows,
            caption: format!(
                "{} ({}); Δ = config − baseline ({}), mean over the paired seeds; unit: test examples, {} resamples.",
                t.metric,
                goal_words(t.goal),
                r.baseline_key,
                e.resamples
            ),
        });
    }
    if !e.mcnemar.is_empty() {
        let mut summary: Vec<(String, usize, usize)> = Vec::new();
        for m in &e.mcnemar {
            let hit = usize::from(m.test.p < 0.05);
            match summary.iter_mut().find(|(k, _, _)| *k == m.config_key) {
                Some(s) => {
                    s.1 += hit;
                    s.2 += 1;
                }
                None => summary.push((m.config_key.clone(), hit, 1)),
            }
        }
        let counts: Vec<String> = summary
            .iter()
            .map(|(k, hit, n)| format!("{k}: {hit} of {n}"))
            .collect();
        out.push(PlainTable {
            title: "McNemar's test for accuracy, one pair of seeds at a time".to_string(),
            header: ["configuration", "seed", "b", "c", "p"]
                .map(String::from)
                .to_vec(),
            left: 1,
            rows: e
                .mcnemar
                .iter()
                .map(|m| {
                    vec![
                        m.config_key.clone(),
                        m.seed.to_string(),
                        m.test.b.to_string(),
                        m.test.c.to_string(),
                        fp(m.test.p),
                    ]
                })
                .collect(),
            caption: format!(
                "Exact McNemar test (statsmodels' default) of the configuration's seed s against the baseline's seed s; unit: test examples. b: examples only the configuration classifies correctly; c: only the baseline; p = min(1, 2·P[Binomial(b + c, ½) ≤ min(b, c)]), uncorrected. Seed pairs with p < 0.05: {}.",
                counts.join("; ")
            ),
        });
    }
    let shown: Vec<&crate::per_example::PerClass> = e
        .per_class
        .iter()
        .filter(|p| p.config_key == r.baseline_key || r.winner.as_deref() == Some(&p.config_key))
        .collect();
    if let Some(first) = shown.first() {
        let mut header = vec!["class".to_string(), "support".to_string()];
        header.extend(shown.iter().map(|p| {
            let role = if p.config_key == r.baseline_key {
                "baseline"
            } else {
                "winner"
            };
            format!("{role} {} (n = {})", p.config_key, p.seeds.len())
        }));
        let rows = first
            .classes
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let mut row = vec![c.class.to_string(), c.support.to_string()];
                row.extend(shown.iter().map(|p| {
                    p.classes.get(k).map_or("–".to_string(), |c| {
                        format!(
                            "{} [{}, {}]",
                            fnum(c.f1, 3),
                            fnum(c.ci95[0], 3),
                            fnum(c.ci95[1], 3)
                        )
                    })
                }));
                row
            })
            .collect();
        out.push(PlainTable {
            title: "Per-class F1".to_string(),
            header,
            left: 1,
            rows,
            caption: format!(
                "F1 of each class on the test split: the mean over the configuration's seeds, with a bootstrap percentile 95% interval over test examples ({} resamples); n = seeds. Support: test examples of the class.",
                e.resamples
            ),
        });
    }
    out
}

/// The confusion matrices of the winner and the baseline as count tables.
pub fn confusion_tables(r: &Report) -> Vec<PlainTable> {
    let Some(e) = &r.examples else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &e.confusion {
        let n = c.counts.len();
        let mut header = vec!["truth \\ predicted".to_string()];
        header.extend((0..n).map(|k| k.to_string()));
        out.push(PlainTable {
            title: format!("Confusion matrix: {} ({})", c.config_key, c.role),
            header,
            left: 1,
            rows: c
                .counts
                .iter()
                .enumerate()
                .map(|(k, row)| {
                    let mut cells = vec![k.to_string()];
                    cells.extend(row.iter().map(u64::to_string));
                    cells
                })
                .collect(),
            caption: format!(
                "Test examples by true class (rows) and predicted class (columns), summed over {} seed(s).",
                c.seeds.len()
            ),
        });
    }
    out
}
