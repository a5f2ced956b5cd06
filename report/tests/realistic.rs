//! 3 configurations × 10 seeds: a clearly better one gets `*`, an equal one does not.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sigsweep_report::*;

#[test]
fn clearly_better_is_starred_and_equal_is_not() {
    let report = build(&spec(), &realistic());
    let acc = &report.tables[0];
    assert_eq!(acc.comparisons, 2);
    let row = |k: &str| acc.rows.iter().find(|r| r.config_key == k).unwrap();
    let better = row("lr=0.0005,dropout=0.1").comparison.as_ref().unwrap();
    let same = row("lr=0.001,dropout=0.3").comparison.as_ref().unwrap();
    assert!(better.significant, "{better:?}");
    assert!(!same.significant, "{same:?}");
    assert_eq!(better.n_pairs, 10);
    assert!(row("lr=0.0005,dropout=0.1").is_best);
    assert!(
        better.exploratory,
        "winner chosen on the same seeds is exploratory"
    );
    assert_eq!(report.winner.as_deref(), Some("lr=0.0005,dropout=0.1"));
    // MAE: lower is better, best is the better config.
    let mae = &report.tables[1];
    let best: Vec<_> = mae.rows.iter().filter(|r| r.is_best).collect();
    assert_eq!(best.len(), 1);
    assert_eq!(best[0].config_key, "lr=0.0005,dropout=0.1");
    let md = render(&report, Format::Markdown);
    assert!(md.contains("<sup>\\*</sup>"));
}
