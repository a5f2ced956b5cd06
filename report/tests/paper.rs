//! `--layout paper`: several datasets in one table, corrected across it.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sigsweep_report::paper::{html, latex, markdown, paper_table};
use sigsweep_report::*;

fn dataset(name: &str, better: &[f64; 10]) -> Report {
    let mut records = Vec::new();
    for seed in 0..10 {
        let s = seed as u64;
        records.push(record(0.001, 0.1, s, BASE[seed], MAE_BASE[seed], 0.70));
        records.push(record(0.003, 0.1, s, better[seed], MAE_BETTER[seed], 0.72));
        records.push(record(0.001, 0.3, s, SAME[seed], MAE_BASE[seed], 0.69));
    }
    let mut spec = spec();
    spec.dataset = name.to_string();
    build(&spec, &records)
}

#[test]
fn the_correction_runs_across_the_whole_table() {
    let reports = [
        dataset("iemocap (data/iemocap.pkl)", &BETTER),
        dataset("meld (data/meld.pkl)", &SAME),
    ];
    let t = paper_table(&reports);
    assert_eq!(t.columns.len(), 4);
    assert_eq!(t.columns[0].dataset, "iemocap");
    assert_eq!(t.rows.len(), 3);
    // 2 non-baseline rows × 2 metrics × 2 datasets.
    assert_eq!(t.comparisons, 8);
    let mut raw = Vec::new();
    for row in &t.rows {
        for c in row.cells.iter().flatten().filter(|c| !c.is_baseline) {
            raw.push(c.p);
        }
    }
    let adjusted = sigsweep_stats::adjust(&raw, Correction::Holm);
    let mut k = 0;
    for row in &t.rows {
        for c in row.cells.iter().flatten().filter(|c| !c.is_baseline) {
            assert_eq!(c.p_adj, adjusted[k]);
            assert_eq!(c.significant, adjusted[k] < 0.05);
            k += 1;
        }
    }
    // The table's correction is stricter than each report's own.
    let own = reports[0].tables[0]
        .rows
        .iter()
        .find(|r| r.config_key == "lr=0.003,dropout=0.1")
        .unwrap()
        .comparison
        .as_ref()
        .unwrap()
        .p_adj;
    let table = t.rows[1].cells[0].as_ref().unwrap().p_adj;
    assert!(table >= own, "{table} < {own}");

    let tex = latex(&t);
    assert!(tex.contains("\\multicolumn{2}{c}{iemocap} & \\multicolumn{2}{c}{meld}"));
    assert!(tex.contains("\\cmidrule(lr){2-3}\\cmidrule(lr){4-5}"));
    assert!(tex.contains("across all 8 comparisons of this table"));
    assert!(tex.contains("$^{*}$"));
    let md = markdown(&t);
    assert!(
        md.contains("| configuration | iemocap: acc\\_2 ↑ |") || md.contains("iemocap: acc_2 ↑")
    );
    let page = html(&t);
    assert!(page.contains("<th colspan=\"2\" style=\"text-align:center\">iemocap</th>"));
}

#[test]
fn a_configuration_missing_from_one_dataset_leaves_its_cells_empty() {
    let a = dataset("iemocap", &BETTER);
    let mut b = dataset("meld", &SAME);
    b.tables
        .iter_mut()
        .for_each(|t| t.rows.retain(|r| r.config_key != "lr=0.001,dropout=0.3"));
    b.configs.retain(|c| c.config_key != "lr=0.001,dropout=0.3");
    let t = paper_table(&[a, b]);
    let row = t
        .rows
        .iter()
        .find(|r| r.config_key == "lr=0.001,dropout=0.3")
        .unwrap();
    assert!(row.cells[0].is_some() && row.cells[2].is_none());
    assert!(latex(&t).contains("& -- & --"));
}

#[test]
fn two_sweeps_on_the_same_dataset_get_their_own_column_groups() {
    let t = paper_table(&[
        dataset("synthetic fusion", &BETTER),
        dataset("synthetic fusion", &SAME),
    ]);
    assert_eq!(
        sigsweep_report::paper::groups(&t),
        vec![
            ("synthetic fusion".to_string(), 2),
            ("synthetic fusion (2)".to_string(), 2)
        ]
    );
}
