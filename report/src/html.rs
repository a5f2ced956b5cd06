//! Self-contained HTML page: inline CSS, the tables, and inline SVG plots (see [`crate::plots`]).

use crate::escape::html as escape;
use crate::plots::{
    SMALL, curves_svg, forest_rows, forest_svg, paired_svg_sized, pairs, sensitivity_points,
    sensitivity_svg,
};
use crate::report::Report;
use crate::view::{
    Cell, PlainTable, banners, example_tables, examples_intro, failure_lines, table_view,
    winner_line,
};

const CSS: &str = "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.4}\
table{border-collapse:collapse;margin:1em 0;font-variant-numeric:tabular-nums}\
th,td{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:right}\
th{border-bottom:2px solid #444}\
td.h,th.h,td.note{text-align:left}\
tr.baseline{background:#f4f6fa}\
.warn{background:#fff3cd;border-left:4px solid #d9534f;padding:.6em 1em;font-weight:bold}\
.banner{color:#555;font-style:italic}\
.caption{color:#444;font-size:.9em;max-width:100ch}\
.power{font-size:.9em;color:#444}\
.power .w{color:#a94442}\
.plots{display:flex;flex-wrap:wrap;gap:1em}\
.plots figure{margin:0}\
.plots figcaption{font-size:.8em;color:#555;max-width:440px}\
sup{color:#2a7d2a}\
table.multiples td{padding:0;border:none}\
.statistics{max-width:100ch;background:#f7f7f7;padding:.8em 1em;border-left:4px solid #888}\
dl.repro dt{font-weight:bold;margin-top:.5em}\
dl.repro dd{margin-left:1.5em;max-width:100ch}";

fn cell(c: &Cell) -> String {
    let mut s = escape(&c.text);
    if c.bold && !s.is_empty() {
        s = format!("<strong>{s}</strong>");
    }
    if c.star {
        s.push_str("<sup>*</sup>");
    }
    if c.dagger {
        s.push_str("<sup>†</sup>");
    }
    s
}

/// Render the HTML page.
pub fn render(r: &Report) -> String {
    let title = format!("{} — {}", r.sweep_name, r.dataset);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    for b in banners(r) {
        let class = if b.starts_with("WARNING") {
            "warn"
        } else {
            "banner"
        };
        out.push_str(&format!("<p class=\"{class}\">{}</p>\n", escape(&b)));
    }
    out.push_str(&format!("<p>{}</p>\n", escape(&winner_line(r))));
    for t in &r.tables {
        let v = table_view(r, t);
        out.push_str(&format!(
            "<h2>{}</h2>\n<table>\n<thead><tr>",
            escape(&v.metric)
        ));
        for (i, h) in v.header.iter().enumerate() {
            let class = if i < v.n_hyper || i + 1 == v.header.len() {
                " class=\"h\""
            } else {
                ""
            };
            out.push_str(&format!("<th{class}>{}</th>", escape(h)));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for (row, data) in v.rows.iter().zip(&t.rows) {
            let class = if data.is_baseline {
                " class=\"baseline\""
            } else {
                ""
            };
            out.push_str(&format!("<tr{class}>"));
            for (i, c) in row.iter().enumerate() {
                let class = if i < v.n_hyper {
                    " class=\"h\""
                } else if i + 1 == row.len() {
                    " class=\"note\""
                } else {
                    ""
                };
                out.push_str(&format!("<td{class}>{}</td>", cell(c)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        out.push_str(&format!(
            "<p class=\"caption\">{}</p>\n",
            escape(&v.caption)
        ));
        out.push_str("<ul class=\"power\">\n");
        for p in &v.power {
            let class = if p.starts_with("Warning") {
                " class=\"w\""
            } else {
                ""
            };
            out.push_str(&format!("<li{class}>{}</li>\n", escape(p)));
        }
        out.push_str("</ul>\n");

        if !r.grid_keys.is_empty() {
            out.push_str(&format!(
                "<h3>Sensitivity: {}</h3>\n<p class=\"caption\">Mean ± std over seeds for each value of one hyperparameter, the others held at the baseline's values; the baseline point is black.</p>\n<div class=\"plots\">\n",
                escape(&t.metric)
            ));
            for (k, key) in r.grid_keys.iter().enumerate() {
                let points = sensitivity_points(t, k);
                let svg =
                    sensitivity_svg(&format!("{} vs {}", t.metric, key), key, &t.metric, &points);
                out.push_str(&format!(
                    "<figure>{svg}<figcaption>{} vs {} ({} value(s))</figcaption></figure>\n",
                    escape(&t.metric),
                    escape(key),
                    points.len()
                ));
            }
            out.push_str("</div>\n");
        }
        let forest = forest_rows(t);
        if !forest.is_empty() {
            out.push_str(&format!(
                "<h3>Forest plot: {}</h3>\n<div class=\"plots\"><figure>{}<figcaption>Δ = configuration − baseline in {} with error bars = {}; filled: significant after correction ({}); the vertical line is no difference.</figcaption></figure></div>\n",
                escape(&t.metric),
                forest_svg(&format!("Δ {} vs baseline", t.metric), &t.metric, &forest),
                escape(&t.metric),
                "95% t-interval of the mean paired difference over seeds (Welch interval for unpaired fallbacks)",
                escape(r.correction.label())
            ));
        }
    }
    small_multiples(&mut out, r);
    if !r.curves.is_empty() {
        let split = if r.selection_on_test {
            "test"
        } else {
            "validation"
        };
        let seeds: usize = r.curves.iter().map(|c| c.selected.len()).sum();
        out.push_str(&format!(
            "<h2>Learning curves</h2>\n<p class=\"caption\">{} on the {split} split after every epoch: the mean over seeds per configuration with a ± 1 std band; dots mark the epochs the seeds selected (larger when several chose the same epoch; {seeds} seed(s) in all). The baseline is black.</p>\n<div class=\"plots\"><figure>{}</figure></div>\n",
            escape(&r.select_metric),
            curves_svg(
                &format!("{} ({split}) per epoch", r.select_metric),
                &r.select_metric,
                &r.curves
            )
        ));
    }
    if let Some(intro) = examples_intro(r) {
        out.push_str(&format!(
            "<h2>Per-example analysis</h2>\n<p class=\"caption\">{}</p>\n",
            escape(&intro)
        ));
        for t in example_tables(r) {
            plain_table(&mut out, &t);
        }
        if let Some(e) = &r.examples {
            for c in &e.confusion {
                confusion_html(&mut out, c);
            }
        }
    }
    out.push_str(&format!(
        "<h2>Statistics</h2>\n<p class=\"statistics\">{}</p>\n<p class=\"caption\">Ready to paste; the LaTeX version is statistics.tex and its references are in report.bib.</p>\n<h2>Reproducibility</h2>\n<dl class=\"repro\">\n",
        escape(&crate::writeup::statistics_paragraph(r, crate::writeup::Cite::Text))
    ));
    for (item, answer) in crate::writeup::reproducibility(r) {
        out.push_str(&format!(
            "<dt>{}</dt><dd>{}</dd>\n",
            escape(&item),
            escape(&answer)
        ));
    }
    out.push_str("</dl>\n");
    plain_table(&mut out, &crate::writeup::valid_test_table(r));
    if !r.notes.is_empty() {
        out.push_str("<h2>Notes</h2>\n<ul>\n");
        for n in &r.notes {
            out.push_str(&format!("<li>{}</li>\n", escape(n)));
        }
        out.push_str("</ul>\n");
    }
    let failures = failure_lines(r);
    if !failures.is_empty() {
        out.push_str(&format!(
            "<h2>Failed trials ({})</h2>\n<ul>\n",
            failures.len()
        ));
        for f in failures {
            out.push_str(&format!("<li>{}</li>\n", escape(&f)));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// A [`PlainTable`] under a level-3 heading, with its caption.
fn plain_table(out: &mut String, t: &PlainTable) {
    out.push_str(&format!(
        "<h3>{}</h3>\n<table>\n<thead><tr>",
        escape(&t.title)
    ));
    for (i, h) in t.header.iter().enumerate() {
        let class = if i < t.left { " class=\"h\"" } else { "" };
        out.push_str(&format!("<th{class}>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            let class = if i < t.left { " class=\"h\"" } else { "" };
            out.push_str(&format!("<td{class}>{}</td>", escape(c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str(&format!(
        "</tbody>\n</table>\n<p class=\"caption\">{}</p>\n",
        escape(&t.caption)
    ));
}

/// A confusion matrix as a table whose cells are shaded by their share of
/// the row (the true class).
fn confusion_html(out: &mut String, c: &crate::per_example::Confusion) {
    out.push_str(&format!(
        "<h3>Confusion matrix: {} ({})</h3>\n<table class=\"confusion\">\n<thead><tr><th class=\"h\">truth \\ predicted</th>",
        escape(&c.config_key),
        escape(&c.role)
    ));
    for k in 0..c.counts.len() {
        out.push_str(&format!("<th>{k}</th>"));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (k, row) in c.counts.iter().enumerate() {
        let total: u64 = row.iter().sum();
        out.push_str(&format!("<tr><th class=\"h\">{k}</th>"));
        for (j, n) in row.iter().enumerate() {
            let share = if total == 0 {
                0.0
            } else {
                *n as f64 / total as f64
            };
            let rgb = if j == k { "44,160,44" } else { "214,39,40" };
            out.push_str(&format!(
                "<td style=\"background:rgba({rgb},{share:.3})\" title=\"{:.1}% of true class {k}\">{n}</td>",
                share * 100.0
            ));
        }
        out.push_str("</tr>\n");
    }
    out.push_str(&format!(
        "</tbody>\n</table>\n<p class=\"caption\">Test examples by true class (rows) and predicted class (columns), summed over {} seed(s); shading: share of the row (green: correct, red: confused).</p>\n",
        c.seeds.len()
    ));
}

/// The per-seed pairs as small multiples: one row per comparison, one
/// panel per metric.
fn small_multiples(out: &mut String, r: &Report) {
    let Some(first) = r.tables.first() else {
        return;
    };
    let compared: Vec<&str> = first
        .rows
        .iter()
        .filter(|row| !row.is_baseline)
        .map(|row| row.config_key.as_str())
        .collect();
    if compared.is_empty() {
        return;
    }
    out.push_str(&format!(
        "<h2>Per-seed pairs</h2>\n<p class=\"caption\">Small multiples, one row per comparison and one panel per metric: each line joins the baseline's ({}) and the configuration's score on one seed; green improves in the metric's direction, red gets worse, grey ties. No error bars: every seed is drawn.</p>\n<table class=\"multiples\">\n<thead><tr><th class=\"h\">configuration</th>",
        escape(&r.baseline_key)
    ));
    for t in &r.tables {
        out.push_str(&format!("<th>{}</th>", escape(&t.metric)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for key in compared {
        out.push_str(&format!("<tr><th class=\"h\">{}</th>", escape(key)));
        for t in &r.tables {
            let svg = t
                .rows
                .iter()
                .find(|row| row.config_key == key)
                .map(|row| {
                    let p = pairs(t, row);
                    paired_svg_sized(
                        &format!("{} seed(s)", p.len()),
                        &t.metric,
                        t.goal,
                        &p,
                        SMALL,
                    )
                })
                .unwrap_or_default();
            out.push_str(&format!("<td>{svg}</td>"));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}
