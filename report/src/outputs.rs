//! The files a finished sweep leaves in its state directory, and the
//! per-trial result listings of `sigsweep results`.

use std::path::Path;

use sigsweep_types::ResultRecord;

use crate::{Format, Report, render};

/// One JSON object per line, in `records` order (the `results.jsonl`
/// format; `sigsweep_types::record::parse_jsonl` reads it back).
pub fn results_jsonl(records: &[ResultRecord]) -> String {
    let mut out = String::new();
    for r in records {
        // A record is plain data (strings, numbers, maps): it always serialises.
        out.push_str(&serde_json::to_string(r).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// One CSV row per trial: `trial_id,seed,status`, then every configuration
/// key and every test metric that any record has (in order of first
/// appearance). Fields are quoted as RFC 4180 says.
pub fn results_csv(records: &[ResultRecord]) -> Result<String, csv::Error> {
    let mut config_keys: Vec<&str> = Vec::new();
    let mut metric_keys: Vec<&str> = Vec::new();
    for r in records {
        for k in r.config.keys() {
            if !config_keys.contains(&k.as_str()) {
                config_keys.push(k);
            }
        }
        for k in r.metrics.keys() {
            if !metric_keys.contains(&k.as_str()) {
                metric_keys.push(k);
            }
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["trial_id", "seed", "status"];
    header.extend(&config_keys);
    header.extend(&metric_keys);
    w.write_record(&header)?;
    for r in records {
        let mut row = vec![
            r.trial_id.to_string(),
            r.seed.to_string(),
            r.status.as_str().to_string(),
        ];
        row.extend(config_keys.iter().map(|k| match r.config.get(*k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        }));
        row.extend(
            metric_keys
                .iter()
                .map(|k| r.metrics.get(*k).map(f64::to_string).unwrap_or_default()),
        );
        w.write_record(&row)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Writes `results.jsonl`, `report.md`, `report.html`, `report.tex`, the
/// Statistics paragraph for LaTeX (`statistics.tex`) and its references
/// (`report.bib`) into `dir`.
pub fn write_outputs(dir: &Path, report: &Report, records: &[ResultRecord]) -> std::io::Result<()> {
    std::fs::write(dir.join("results.jsonl"), results_jsonl(records))?;
    std::fs::write(dir.join("report.md"), render(report, Format::Markdown))?;
    std::fs::write(dir.join("report.html"), render(report, Format::Html))?;
    std::fs::write(dir.join("report.tex"), render(report, Format::Latex))?;
    write_statistics(dir, report)
}

/// Writes `statistics.tex` (the Statistics paragraph with `\citep`) and
/// `report.bib` (what it cites) into `dir`.
pub fn write_statistics(dir: &Path, report: &Report) -> std::io::Result<()> {
    std::fs::write(
        dir.join("statistics.tex"),
        format!("{}\n", crate::latex::statistics_paragraph(report)),
    )?;
    std::fs::write(dir.join("report.bib"), crate::writeup::bibtex(report))
}

#[cfg(test)]
mod tests {
    use super::results_csv;
    use sigsweep_types::{ResultRecord, TrialStatus};

    #[test]
    fn csv_quotes_fields_with_commas_and_quotes() {
        let mut r = ResultRecord {
            trial_id: "t1".into(),
            sweep_id: "s".into(),
            config_key: "k".into(),
            config: Default::default(),
            seed: 3,
            status: TrialStatus::Completed,
            metrics: [("acc".to_string(), 0.5)].into_iter().collect(),
            valid_metrics: Default::default(),
            selected_epoch: Some(1),
            failure: None,
            attempts: 1,
            seconds: 1.0,
            worker: "w".into(),
            predictions: None,
            weights: None,
            history: Vec::new(),
            fold: None,
            hardware: None,
            program_selected: false,
        };
        r.config
            .insert("losses".into(), serde_json::json!("scl, \"cpc\""));
        let text = results_csv(&[r]).expect("csv");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("trial_id,seed,status,losses,acc"));
        assert_eq!(
            lines.next(),
            Some("t1,3,completed,\"scl, \"\"cpc\"\"\",0.5")
        );
    }
}
