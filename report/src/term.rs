//! Terminal rendering: aligned columns, ANSI colour only when asked.

use crate::report::Report;
use crate::view::{
    Cell, PlainTable, banners, example_tables, examples_intro, failure_lines, table_view,
    winner_line,
};

const BOLD: &str = "\x1b[1m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[1;31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

fn cell_text(c: &Cell) -> String {
    let mut s = c.text.clone();
    if c.star {
        s.push('*');
    }
    if c.dagger {
        s.push('†');
    }
    s
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn paint(s: &str, code: &str, color: bool) -> String {
    if color {
        format!("{code}{s}{RESET}")
    } else {
        s.to_string()
    }
}

/// Render for a terminal.
pub fn render(r: &Report, color: bool) -> String {
    let mut out = String::new();
    out.push_str(&paint(
        &format!("sweep {} — {}", r.sweep_name, r.dataset),
        BOLD,
        color,
    ));
    out.push('\n');
    for b in banners(r) {
        let code = if b.starts_with("WARNING") { RED } else { DIM };
        out.push_str(&paint(&b, code, color));
        out.push('\n');
    }
    out.push_str(&winner_line(r));
    out.push('\n');
    for t in &r.tables {
        let v = table_view(r, t);
        out.push('\n');
        out.push_str(&paint(&v.metric, BOLD, color));
        out.push('\n');
        let texts: Vec<Vec<String>> = v
            .rows
            .iter()
            .map(|row| row.iter().map(cell_text).collect())
            .collect();
        let mut widths: Vec<usize> = v.header.iter().map(|h| width(h)).collect();
        for row in &texts {
            for (i, s) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(width(s));
                }
            }
        }
        let line = |cells: Vec<(String, Option<&str>)>| -> String {
            let mut l = String::new();
            for (i, (s, code)) in cells.into_iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                let pad = " ".repeat(w.saturating_sub(width(&s)));
                let body = match code {
                    Some(c) => paint(&s, c, color),
                    None => s,
                };
                if i > 0 {
                    l.push_str("  ");
                }
                if i < v.n_hyper || i + 1 == widths.len() {
                    l.push_str(&body);
                    l.push_str(&pad);
                } else {
                    l.push_str(&pad);
                    l.push_str(&body);
                }
            }
            l.trim_end().to_string()
        };
        out.push_str(&line(v.header.iter().map(|h| (h.clone(), None)).collect()));
        out.push('\n');
        let total: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        out.push_str(&"─".repeat(total));
        out.push('\n');
        for (row, texts) in v.rows.iter().zip(texts) {
            let cells = row
                .iter()
                .zip(texts)
                .map(|(c, s)| {
                    let code = if c.bold {
                        Some(BOLD)
                    } else if c.star {
                        Some(GREEN)
                    } else {
                        None
                    };
                    (s, code)
                })
                .collect();
            out.push_str(&line(cells));
            out.push('\n');
        }
        out.push_str(&paint(&v.caption, DIM, color));
        out.push('\n');
        for p in &v.power {
            let code = if p.starts_with("Warning") {
                YELLOW
            } else {
                DIM
            };
            out.push_str(&paint(p, code, color));
            out.push('\n');
        }
    }
    if let Some(intro) = examples_intro(r) {
        out.push('\n');
        out.push_str(&paint("Per-example analysis", BOLD, color));
        out.push('\n');
        out.push_str(&paint(&intro, DIM, color));
        out.push('\n');
        for t in example_tables(r) {
            plain_table(&mut out, &t, color);
        }
    }
    if !r.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for n in &r.notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    let failures = failure_lines(r);
    if !failures.is_empty() {
        out.push_str(&paint(
            &format!("\nFailed trials ({}):", failures.len()),
            YELLOW,
            color,
        ));
        out.push('\n');
        for f in failures {
            out.push_str(&format!("  - {f}\n"));
        }
    }
    out
}

/// A [`PlainTable`] with aligned columns.
fn plain_table(out: &mut String, t: &PlainTable, color: bool) {
    let mut widths: Vec<usize> = t.header.iter().map(|h| width(h)).collect();
    for row in &t.rows {
        for (i, s) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(s));
            }
        }
    }
    let line = |cells: &[String]| -> String {
        let mut l = String::new();
        for (i, s) in cells.iter().enumerate() {
            let pad = " ".repeat(widths.get(i).copied().unwrap_or(0).saturating_sub(width(s)));
            if i > 0 {
                l.push_str("  ");
            }
            if i < t.left {
                l.push_str(s);
                l.push_str(&pad);
            } else {
                l.push_str(&pad);
                l.push_str(s);
            }
        }
        l.trim_end().to_string()
    };
    out.push('\n');
    out.push_str(&paint(&t.title, BOLD, color));
    out.push('\n');
    out.push_str(&line(&t.header));
    out.push('\n');
    for row in &t.rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out.push_str(&paint(&t.caption, DIM, color));
    out.push('\n');
}
