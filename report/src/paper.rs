//! Several datasets in one table, the shape of Table 3 in the MMIC and
//! FD-CMDIE papers (`sigsweep report DIR1 DIR2 … --layout paper`).
//!
//! Rows are configurations (their keys; a swept `model` makes them models),
//! column groups are datasets and, inside a group, the dataset's reported
//! metrics. A cell is mean ± std over seeds, marked against the baseline
//! of its own dataset. **The correction runs across the whole table**: the
//! raw p-values of every comparison in every column are adjusted together
//! (one family), and the legend says so. With ASO the marks are each
//! report's `ε_min < 0.5` (its confidence level corrected within its
//! metric), and the legend says that instead.

use serde::{Deserialize, Serialize};
use sigsweep_stats::adjust;

use crate::model::{Correction, Goal, TestKind};
use crate::report::{ALPHA, Report, UsedTest};
use crate::view::{decimals, fnum, fp};

/// One column: a metric of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// The dataset's short name (made unique when two sweeps share one).
    pub dataset: String,
    /// Index of its report (column group).
    pub group: usize,
    pub metric: String,
    pub goal: Goal,
    pub baseline: String,
    /// Decimals used for its cells.
    pub decimals: usize,
}

/// One cell: a configuration on one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperCell {
    #[serde(with = "sigsweep_stats::num")]
    pub mean: f64,
    #[serde(with = "sigsweep_stats::num")]
    pub std: f64,
    /// Seeds.
    pub n: usize,
    pub is_baseline: bool,
    /// Best mean of the column (direction-aware).
    pub is_best: bool,
    /// Raw p (or `ε_min` for ASO); `NaN` when untested.
    #[serde(with = "sigsweep_stats::num")]
    pub p: f64,
    /// Adjusted across the whole table.
    #[serde(with = "sigsweep_stats::num")]
    pub p_adj: f64,
    pub significant: bool,
}

/// A configuration's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperRow {
    pub config_key: String,
    /// One per column; `None` where the dataset's sweep lacks it.
    pub cells: Vec<Option<PaperCell>>,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperTable {
    pub columns: Vec<Column>,
    pub rows: Vec<PaperRow>,
    pub test: TestKind,
    pub correction: Correction,
    /// Comparisons in the correction's family (the whole table).
    pub comparisons: usize,
    /// Reports whose comparisons were exploratory.
    pub exploratory: bool,
    pub notes: Vec<String>,
}

/// A dataset's short name: its label up to a file path in parentheses.
pub fn dataset_name(label: &str) -> String {
    label.split(" (").next().unwrap_or(label).trim().to_string()
}

/// Builds the table from one report per dataset (same test and correction).
pub fn paper_table(reports: &[Report]) -> PaperTable {
    let mut notes = Vec::new();
    let test = reports.first().map_or(TestKind::PairedT, |r| r.test);
    let correction = reports.first().map_or(Correction::Holm, |r| r.correction);
    let mut columns = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (group, r) in reports.iter().enumerate() {
        for c in &r.configs {
            if !keys.contains(&c.config_key) {
                keys.push(c.config_key.clone());
            }
        }
        let base = dataset_name(&r.dataset);
        let mut name = base.clone();
        let mut k = 2;
        while names.contains(&name) {
            name = format!("{base} ({k})");
            k += 1;
        }
        names.push(name.clone());
        for t in &r.tables {
            columns.push(Column {
                dataset: name.clone(),
                group,
                metric: t.metric.clone(),
                goal: t.goal,
                baseline: r.baseline_key.clone(),
                decimals: decimals(t),
            });
        }
    }
    let mut rows: Vec<PaperRow> = keys
        .iter()
        .map(|k| PaperRow {
            config_key: k.clone(),
            cells: Vec::new(),
        })
        .collect();
    for r in reports {
        for t in &r.tables {
            for row in &mut rows {
                let cell = t
                    .rows
                    .iter()
                    .find(|x| x.config_key == row.config_key)
                    .map(|x| {
                        let c = x.comparison.as_ref();
                        let tested = c.is_some_and(|c| c.used != UsedTest::None);
                        PaperCell {
                            mean: x.mean,
                            std: x.std,
                            n: x.seeds.len(),
                            is_baseline: x.is_baseline,
                            is_best: x.is_best,
                            p: if tested {
                                c.map_or(f64::NAN, |c| c.p)
                            } else {
                                f64::NAN
                            },
                            p_adj: f64::NAN,
                            significant: test == TestKind::Aso && c.is_some_and(|c| c.significant),
                        }
                    });
                row.cells.push(cell);
            }
        }
        if r.test != test || r.correction != correction {
            notes.push(format!(
                "{}: its report used another test or correction; this table uses {} with {}",
                r.dataset,
                test.label(),
                correction.label()
            ));
        }
    }
    // One family: every tested comparison of the table.
    let mut slots: Vec<(usize, usize)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        for (j, cell) in row.cells.iter().enumerate() {
            if cell
                .as_ref()
                .is_some_and(|c| !c.is_baseline && c.p.is_finite())
            {
                slots.push((i, j));
            }
        }
    }
    if test != TestKind::Aso {
        let raw: Vec<f64> = slots
            .iter()
            .filter_map(|(i, j)| rows.get(*i)?.cells.get(*j)?.as_ref().map(|c| c.p))
            .collect();
        let adj = adjust(&raw, correction);
        for ((i, j), p) in slots.iter().zip(adj) {
            if let Some(Some(c)) = rows.get_mut(*i).and_then(|r| r.cells.get_mut(*j)) {
                c.p_adj = p;
                c.significant = p < ALPHA;
            }
        }
    }
    PaperTable {
        comparisons: slots.len(),
        exploratory: reports.iter().any(|r| !r.confirmatory),
        columns,
        rows,
        test,
        correction,
        notes,
    }
}

/// The column groups: `(dataset, number of columns)` in order.
pub fn groups(t: &PaperTable) -> Vec<(String, usize)> {
    let mut out: Vec<(usize, String, usize)> = Vec::new();
    for c in &t.columns {
        match out.last_mut() {
            Some((g, _, n)) if *g == c.group => *n += 1,
            _ => out.push((c.group, c.dataset.clone(), 1)),
        }
    }
    out.into_iter().map(|(_, d, n)| (d, n)).collect()
}

/// The legend under the table.
pub fn legend(t: &PaperTable) -> String {
    let mut baselines: Vec<String> = Vec::new();
    for c in &t.columns {
        let b = format!("{}: {}", c.dataset, c.baseline);
        if !baselines.contains(&b) {
            baselines.push(b);
        }
    }
    let marks = if t.test == TestKind::Aso {
        "* ε_min < 0.5 (Almost Stochastic Order against the dataset's baseline, confidence level Bonferroni-corrected within each metric)".to_string()
    } else {
        format!(
            "* adjusted p < 0.05: two-sided {} against the baseline of the same dataset, paired by seed; {} correction across all {} comparisons of this table",
            t.test.label(),
            t.correction.label(),
            t.comparisons
        )
    };
    format!(
        "Mean ± std over seeds (ddof 1). {marks}. Bold: best mean of the column; ↑ higher is better, ↓ lower is better. Baselines: {}.{}",
        baselines.join("; "),
        if t.exploratory {
            " Configurations were compared on the seeds used to choose them: exploratory."
        } else {
            ""
        }
    )
}

fn arrow(g: Goal) -> &'static str {
    match g {
        Goal::Max => "↑",
        Goal::Min => "↓",
    }
}

/// A cell as text with its parts: (`mean ± std`, bold, star).
fn cell_parts(c: &PaperCell, dec: usize) -> (String, bool, bool) {
    (
        format!("{} ± {}", fnum(c.mean, dec), fnum(c.std, dec)),
        c.is_best,
        c.significant,
    )
}

/// LaTeX (booktabs): a `table*` with grouped headers, superscript marks
/// and the legend as caption.
pub fn latex(t: &PaperTable) -> String {
    use crate::latex::escape;
    let n = t.columns.len();
    let mut out = String::from(
        "% sigsweep paper table (requires \\usepackage{booktabs})\n\\begin{table*}[t]\n\\centering\n\\small\n",
    );
    out.push_str(&format!(
        "\\caption{{{}}}\n",
        escape(&legend(t)).replace("* ", "$^{*}$ ")
    ));
    out.push_str(&format!(
        "\\begin{{tabular}}{{l{}}}\n\\toprule\n",
        "r".repeat(n)
    ));
    let mut group_line = String::from(" ");
    let mut rules = String::new();
    let mut col = 2;
    for (d, k) in groups(t) {
        group_line.push_str(&format!(" & \\multicolumn{{{k}}}{{c}}{{{}}}", escape(&d)));
        rules.push_str(&format!("\\cmidrule(lr){{{col}-{}}}", col + k - 1));
        col += k;
    }
    out.push_str(&format!("{group_line} \\\\\n{rules}\n"));
    let metrics: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("{} {}", escape(&c.metric), escape(arrow(c.goal))))
        .collect();
    out.push_str(&format!(
        "Configuration & {} \\\\\n\\midrule\n",
        metrics.join(" & ")
    ));
    for row in &t.rows {
        let mut cells = vec![escape(&row.config_key)];
        for (c, col) in row.cells.iter().zip(&t.columns) {
            cells.push(match c {
                None => "--".to_string(),
                Some(c) => {
                    let (text, bold, star) = cell_parts(c, col.decimals);
                    let mut s = escape(&text);
                    if bold {
                        s = format!("\\textbf{{{s}}}");
                    }
                    if star {
                        s.push_str("$^{*}$");
                    }
                    s
                }
            });
        }
        out.push_str(&format!("{} \\\\\n", cells.join(" & ")));
    }
    out.push_str("\\bottomrule\n\\end{tabular}\n\\end{table*}\n");
    for note in &t.notes {
        out.push_str(&format!("% {}\n", note.replace(['\n', '\r'], " ")));
    }
    out
}

/// GitHub Markdown: the dataset in every metric header.
pub fn markdown(t: &PaperTable) -> String {
    use crate::markdown::escape;
    let mut header = vec!["configuration".to_string()];
    header.extend(
        t.columns
            .iter()
            .map(|c| escape(&format!("{}: {} {}", c.dataset, c.metric, arrow(c.goal)))),
    );
    let mut out = format!("| {} |\n", header.join(" | "));
    out.push_str(&format!("| :-- |{}\n", " --: |".repeat(t.columns.len())));
    for row in &t.rows {
        let mut cells = vec![escape(&row.config_key)];
        for (c, col) in row.cells.iter().zip(&t.columns) {
            cells.push(match c {
                None => "–".to_string(),
                Some(c) => {
                    let (text, bold, star) = cell_parts(c, col.decimals);
                    let mut s = escape(&text);
                    if bold {
                        s = format!("**{s}**");
                    }
                    if star {
                        s.push_str("<sup>\\*</sup>");
                    }
                    s
                }
            });
        }
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push_str(&format!("\n{}\n", escape(&legend(t))));
    for n in &t.notes {
        out.push_str(&format!("\n- {}\n", escape(n)));
    }
    out
}

/// A self-contained HTML page with the table (two header rows).
pub fn html(t: &PaperTable) -> String {
    use crate::escape::html as escape;
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>sigsweep paper table</title>\n<style>body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}table{border-collapse:collapse;font-variant-numeric:tabular-nums}th,td{padding:.3em .7em;text-align:right;white-space:nowrap}thead tr:first-child th{border-bottom:1px solid #444}thead tr:last-child th{border-bottom:2px solid #444}td.h,th.h{text-align:left}tbody tr:last-child td{border-bottom:2px solid #444}sup{color:#2a7d2a}.caption{color:#444;font-size:.9em;max-width:100ch}</style>\n</head>\n<body>\n<table>\n<thead><tr><th class=\"h\"></th>",
    );
    for (d, k) in groups(t) {
        out.push_str(&format!(
            "<th colspan=\"{k}\" style=\"text-align:center\">{}</th>",
            escape(&d)
        ));
    }
    out.push_str("</tr>\n<tr><th class=\"h\">configuration</th>");
    for c in &t.columns {
        out.push_str(&format!("<th>{} {}</th>", escape(&c.metric), arrow(c.goal)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        out.push_str(&format!(
            "<tr><td class=\"h\">{}</td>",
            escape(&row.config_key)
        ));
        for (c, col) in row.cells.iter().zip(&t.columns) {
            let cell = match c {
                None => "–".to_string(),
                Some(c) => {
                    let (text, bold, star) = cell_parts(c, col.decimals);
                    let mut s = escape(&text);
                    if bold {
                        s = format!("<strong>{s}</strong>");
                    }
                    if star {
                        s.push_str("<sup>*</sup>");
                    }
                    let title = if c.is_baseline {
                        format!("baseline, n = {}", c.n)
                    } else {
                        format!("n = {}, p = {}, p_adj = {}", c.n, fp(c.p), fp(c.p_adj))
                    };
                    format!("<span title=\"{}\">{s}</span>", escape(&title))
                }
            };
            out.push_str(&format!("<td>{cell}</td>"));
        }
        out.push_str("</tr>\n");
    }
    out.push_str(&format!(
        "</tbody>\n</table>\n<p class=\"caption\">{}</p>\n",
        escape(&legend(t))
    ));
    for n in &t.notes {
        out.push_str(&format!("<p class=\"caption\">{}</p>\n", escape(n)));
    }
    out.push_str("</body>\n</html>\n");
    out
}
