//! GitHub-flavoured Markdown rendering.

use crate::report::Report;
use crate::view::{
    Cell, PlainTable, banners, confusion_tables, example_tables, examples_intro, failure_lines,
    table_view, winner_line,
};

/// Escape characters with meaning inside GitHub table cells and inline text. Underscores
/// inside words (`acc_2`) are left alone since GitHub does not treat them as emphasis.
pub fn escape(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &ch) in chars.iter().enumerate() {
        match ch {
            '|' | '*' | '`' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '_' => {
                let word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric());
                if word(i.checked_sub(1).and_then(|j| chars.get(j))) && word(chars.get(i + 1)) {
                    out.push('_');
                } else {
                    out.push_str("\\_");
                }
            }
            '\n' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

fn cell(c: &Cell) -> String {
    let mut s = escape(&c.text);
    if c.bold && !s.is_empty() {
        s = format!("**{s}**");
    }
    if c.star {
        s.push_str("<sup>\\*</sup>");
    }
    if c.dagger {
        s.push('†');
    }
    s
}

/// Render as Markdown.
pub fn render(r: &Report) -> String {
    let mut out = format!("# {} — {}\n\n", escape(&r.sweep_name), escape(&r.dataset));
    for b in banners(r) {
        if b.starts_with("WARNING") {
            out.push_str(&format!("> **{}**\n\n", escape(&b)));
        } else {
            out.push_str(&format!("_{}_\n\n", escape(&b)));
        }
    }
    out.push_str(&escape(&winner_line(r)));
    out.push_str("\n\n");
    for t in &r.tables {
        let v = table_view(r, t);
        out.push_str(&format!("## {}\n\n", escape(&v.metric)));
        let header: Vec<String> = v.header.iter().map(|h| escape(h)).collect();
        out.push_str(&format!("| {} |\n", header.join(" | ")));
        let align: Vec<&str> = (0..v.header.len())
            .map(|i| {
                if i < v.n_hyper || i + 1 == v.header.len() {
                    ":--"
                } else {
                    "--:"
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", align.join(" | ")));
        for row in &v.rows {
            let cells: Vec<String> = row.iter().map(cell).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out.push_str(&format!("\n{}\n\n", escape(&v.caption)));
        for p in &v.power {
            out.push_str(&format!("- {}\n", escape(p)));
        }
        out.push('\n');
    }
    if let Some(intro) = examples_intro(r) {
        out.push_str(&format!(
            "## Per-example analysis\n\n{}\n\n",
            escape(&intro)
        ));
        for t in example_tables(r).iter().chain(&confusion_tables(r)) {
            plain_table(&mut out, t);
        }
    }
    out.push_str(&format!(
        "## Statistics\n\n{}\n\n",
        escape(&crate::writeup::statistics_paragraph(
            r,
            crate::writeup::Cite::Text
        ))
    ));
    out.push_str("## Reproducibility\n\n");
    for (item, answer) in crate::writeup::reproducibility(r) {
        out.push_str(&format!("- **{}**: {}\n", escape(&item), escape(&answer)));
    }
    out.push('\n');
    plain_table(&mut out, &crate::writeup::valid_test_table(r));
    if !r.notes.is_empty() {
        out.push_str("## Notes\n\n");
        for n in &r.notes {
            out.push_str(&format!("- {}\n", escape(n)));
        }
        out.push('\n');
    }
    let failures = failure_lines(r);
    if !failures.is_empty() {
        out.push_str(&format!("## Failed trials ({})\n\n", failures.len()));
        for f in failures {
            out.push_str(&format!("- {}\n", escape(&f)));
        }
        out.push('\n');
    }
    out
}

/// A [`PlainTable`] under a level-3 heading, with its caption.
pub fn plain_table(out: &mut String, t: &PlainTable) {
    out.push_str(&format!("### {}\n\n", escape(&t.title)));
    let header: Vec<String> = t.header.iter().map(|h| escape(h)).collect();
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    let align: Vec<&str> = (0..t.header.len())
        .map(|i| if i < t.left { ":--" } else { "--:" })
        .collect();
    out.push_str(&format!("| {} |\n", align.join(" | ")));
    for row in &t.rows {
        let cells: Vec<String> = row.iter().map(|c| escape(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push_str(&format!("\n{}\n\n", escape(&t.caption)));
}
