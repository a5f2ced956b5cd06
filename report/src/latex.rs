//! LaTeX rendering: one booktabs `table` per metric, ready to `\input`.
//!
//! Requires `\usepackage{booktabs}` in the preamble. Best means are `\textbf{}`, significant
//! ones carry `$^{*}$`, exploratory ones `$^{\dagger}$`; text is escaped (`_`, `%`, `&`, ...).

use crate::report::Report;
use crate::view::{Cell, banners, failure_lines, table_view, winner_line};

/// Escape LaTeX special characters and map the unicode symbols used in the view to math.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '<' => out.push_str("$<$"),
            '>' => out.push_str("$>$"),
            '|' => out.push_str("$|$"),
            '±' => out.push_str("$\\pm$"),
            'Δ' => out.push_str("$\\Delta$"),
            'ε' => out.push_str("$\\varepsilon$"),
            'α' => out.push_str("$\\alpha$"),
            '†' => out.push_str("$^{\\dagger}$"),
            '−' => out.push('-'),
            '–' => out.push_str("--"),
            '—' => out.push_str("---"),
            '∞' => out.push_str("$\\infty$"),
            '↑' => out.push_str("$\\uparrow$"),
            '↓' => out.push_str("$\\downarrow$"),
            '×' => out.push_str("$\\times$"),
            '∈' => out.push_str("$\\in$"),
            '≥' => out.push_str("$\\geq$"),
            '≤' => out.push_str("$\\leq$"),
            '…' => out.push_str("\\ldots{}"),
            '·' => out.push_str("$\\cdot$"),
            '`' => out.push('\''),
            _ => out.push(ch),
        }
    }
    out
}

fn cell(c: &Cell) -> String {
    let mut s = escape(&c.text);
    if c.bold && !s.is_empty() {
        s = format!("\\textbf{{{s}}}");
    }
    if c.star {
        s.push_str("$^{*}$");
    }
    if c.dagger {
        s.push_str("$^{\\dagger}$");
    }
    s
}

fn label(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Render as LaTeX.
pub fn render(r: &Report) -> String {
    let one_line = |x: &str| x.replace(['\n', '\r'], " ");
    let mut out = format!(
        "% sigsweep report: {} on {} (requires \\usepackage{{booktabs}})\n",
        one_line(&r.sweep_name),
        one_line(&r.dataset)
    );
    for b in banners(r) {
        out.push_str(&format!("% {}\n", one_line(&b)));
    }
    out.push_str(&format!("% {}\n", one_line(&winner_line(r))));
    if r.selection_on_test {
        out.push_str("\\noindent\\textbf{Warning: epochs were selected on the test split; test scores are optimistically biased.}\n\n");
    }
    for t in &r.tables {
        let v = table_view(r, t);
        let spec: String = (0..v.header.len())
            .map(|i| {
                if i < v.n_hyper || i + 1 == v.header.len() {
                    'l'
                } else {
                    'r'
                }
            })
            .collect();
        out.push_str("\\begin{table}[t]\n\\centering\n\\small\n");
        let mut caption = escape(&v.caption);
        for p in &v.power {
            caption.push(' ');
            caption.push_str(&escape(p));
        }
        caption = caption.replace("* ", "$^{*}$ ");
        out.push_str(&format!("\\caption{{{caption}}}\n"));
        out.push_str(&format!(
            "\\label{{tab:{}-{}}}\n",
            label(&r.sweep_name),
            label(&t.metric)
        ));
        out.push_str(&format!("\\begin{{tabular}}{{{spec}}}\n\\toprule\n"));
        let header: Vec<String> = v.header.iter().map(|h| escape(h)).collect();
        out.push_str(&format!("{} \\\\\n\\midrule\n", header.join(" & ")));
        for row in &v.rows {
            let cells: Vec<String> = row.iter().map(cell).collect();
            out.push_str(&format!("{} \\\\\n", cells.join(" & ")));
        }
        out.push_str("\\bottomrule\n\\end{tabular}\n\\end{table}\n\n");
    }
    out.push_str("% Statistics paragraph (also in statistics.tex; references in report.bib):\n");
    out.push_str(&format!("% {}\n", statistics_paragraph(r)));
    let failures = failure_lines(r);
    if !failures.is_empty() || !r.notes.is_empty() {
        out.push_str("% Notes and failed trials:\n");
        for n in r.notes.iter().chain(failures.iter()) {
            out.push_str(&format!("% - {}\n", one_line(n)));
        }
    }
    out
}

/// The Statistics paragraph in LaTeX: escaped text with natbib `\citep`.
pub fn statistics_paragraph(r: &Report) -> String {
    let text = crate::writeup::statistics_paragraph(r, crate::writeup::Cite::Latex);
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("\\citep{") {
        let (before, cite) = rest.split_at(i);
        out.push_str(&escape(before));
        let end = cite.find('}').map_or(cite.len(), |e| e + 1);
        let (c, after) = cite.split_at(end);
        out.push_str(c);
        rest = after;
    }
    out.push_str(&escape(rest));
    out
}
