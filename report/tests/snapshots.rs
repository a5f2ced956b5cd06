//! Snapshot tests of every format on a small fixed record set.
//!
//! Expected outputs live in `tests/snapshots/`; regenerate with
//! `UPDATE_SNAPSHOTS=1 cargo test -p sigsweep-report --test snapshots`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::*;
use sigsweep_report::*;

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "snapshot {name} differs at line {}:\n expected: {:?}\n   actual: {:?}\n(run with UPDATE_SNAPSHOTS=1 to accept)",
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

fn small_report() -> Report {
    build(&spec(), &small())
}

#[test]
fn term_plain() {
    check(
        "small.txt",
        &render(&small_report(), Format::Term { color: false }),
    );
}

#[test]
fn term_color() {
    let out = render(&small_report(), Format::Term { color: true });
    assert!(out.contains("\x1b[1m"));
    check("small.ansi.txt", &out);
    let plain = render(&small_report(), Format::Term { color: false });
    assert!(!plain.contains('\x1b'));
}

#[test]
fn markdown() {
    check("small.md", &render(&small_report(), Format::Markdown));
}

#[test]
fn latex() {
    let out = render(&small_report(), Format::Latex);
    assert!(out.contains("\\toprule") && out.contains("\\bottomrule"));
    assert!(out.contains("acc\\_2"));
    assert!(out.contains("\\textbf{"));
    assert_eq!(
        out.matches("\\begin{table}").count(),
        out.matches("\\end{table}").count()
    );
    check("small.tex", &out);
}

#[test]
fn csv() {
    let out = render(&small_report(), Format::Csv);
    // Count fields outside double quotes.
    let fields = |l: &str| {
        let mut quoted = false;
        1 + l
            .chars()
            .filter(|c| {
                if *c == '"' {
                    quoted = !quoted;
                }
                *c == ',' && !quoted
            })
            .count()
    };
    let widths: Vec<usize> = out.lines().map(fields).collect();
    assert!(widths.iter().all(|w| *w == widths[0]), "ragged csv");
    check("small.csv", &out);
}

#[test]
fn json() {
    let out = render(&small_report(), Format::Json);
    let back: Report = serde_json::from_str(&out).unwrap();
    assert_eq!(back.tables.len(), 2);
    check("small.json", &out);
}

#[test]
fn html() {
    let out = render(&small_report(), Format::Html);
    assert!(out.starts_with("<!DOCTYPE html>"));
    assert!(out.contains("<style>"));
    // 2 metrics × (2 sensitivity + 1 forest) plots, and the small
    // multiples: 2 comparisons × 2 metrics.
    assert_eq!(out.matches("<svg").count(), 10, "inline svg plots");
    assert!(!out.contains("plot-error"));
    assert!(!out.contains("<script"));
    assert!(
        !out.contains("http://")
            || out.matches("http://").count()
                == out.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
    check("small.html", &out);
}

#[test]
fn markdown_flags_and_other_test() {
    let mut s = spec();
    s.selection_on_test = true;
    s.confirmatory = true;
    s.test = TestKind::Wilcoxon;
    s.correction = Correction::BenjaminiHochberg;
    let out = render(&build(&s, &small()), Format::Markdown);
    assert!(out.contains("TEST split"));
    assert!(out.contains("Confirmatory"));
    assert!(!out.contains('†'));
    check("small_flags.md", &out);
}
