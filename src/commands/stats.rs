//! `sigsweep stats`: compare per-seed scores from anywhere, or adjust
//! p-values.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, bail};

use sigsweep_stats::Correction;

use crate::cli::StatsArgs;

/// Reads `seed → score` from a CSV file with a header row.
fn read_scores(
    path: &str,
    seed_column: &str,
    column: Option<&str>,
) -> anyhow::Result<(String, BTreeMap<String, f64>)> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read {path}"))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{path}: no header row"))?
        .clone();
    let seed_idx = headers
        .iter()
        .position(|h| h == seed_column)
        .with_context(|| {
            format!(
                "{path}: no column `{seed_column}` (columns: {})",
                headers.iter().collect::<Vec<_>>().join(", ")
            )
        })?;
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .collect::<Result<_, _>>()
        .with_context(|| format!("{path}: malformed CSV"))?;
    let score_idx = match column {
        Some(c) => headers
            .iter()
            .position(|h| h == c)
            .with_context(|| format!("{path}: no column `{c}`"))?,
        None => {
            let numeric: Vec<usize> = (0..headers.len())
                .filter(|&i| {
                    i != seed_idx
                        && rows
                            .iter()
                            .all(|r| r.get(i).is_some_and(|v| v.parse::<f64>().is_ok()))
                })
                .collect();
            match numeric.as_slice() {
                [one] => *one,
                [] => bail!("{path}: no numeric score column"),
                many => bail!(
                    "{path}: several numeric columns ({}); choose one with --column",
                    many.iter()
                        .map(|&i| &headers[i])
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    let mut scores = BTreeMap::new();
    for (line, r) in rows.iter().enumerate() {
        let seed = r.get(seed_idx).unwrap_or_default().to_string();
        let raw = r.get(score_idx).unwrap_or_default();
        let v: f64 = raw
            .parse()
            .with_context(|| format!("{path}: row {}: `{raw}` is not a number", line + 2))?;
        if scores.insert(seed.clone(), v).is_some() {
            bail!("{path}: seed `{seed}` appears twice");
        }
    }
    Ok((headers[score_idx].to_string(), scores))
}

fn correction(name: &str) -> anyhow::Result<Correction> {
    Ok(match name {
        "holm" => Correction::Holm,
        "bh" | "fdr_bh" => Correction::BenjaminiHochberg,
        "bonferroni" => Correction::Bonferroni,
        "none" => Correction::None,
        other => bail!("unknown correction `{other}`: expected holm, bh, bonferroni or none"),
    })
}

pub fn run(args: StatsArgs) -> anyhow::Result<ExitCode> {
    if let Some(method) = &args.adjust {
        let method = correction(method)?;
        let p: Vec<f64> = args
            .inputs
            .iter()
            .map(|s| {
                let v: f64 = s
                    .parse()
                    .with_context(|| format!("`{s}` is not a p-value"))?;
                if !(0.0..=1.0).contains(&v) {
                    bail!("p-value {v} is outside [0, 1]");
                }
                Ok(v)
            })
            .collect::<anyhow::Result<_>>()?;
        if p.is_empty() {
            bail!(
                "give the p-values to adjust, e.g. `sigsweep stats --adjust holm 0.01 0.04 0.03`"
            );
        }
        let adjusted = sigsweep_stats::adjust(&p, method);
        if args.json {
            println!("{}", serde_json::to_string(&adjusted)?);
        } else {
            println!(
                "{:<12} {:<12}",
                "p",
                format!("p_{}", args.adjust.as_deref().unwrap_or_default())
            );
            for (raw, adj) in p.iter().zip(&adjusted) {
                println!("{raw:<12.6} {adj:<12.6}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let [a_path, b_path] = args.inputs.as_slice() else {
        bail!("give two CSV files (A and B), e.g. `sigsweep stats mmic.csv mmdfn.csv`");
    };
    let (col_a, a) = read_scores(a_path, &args.seed_column, args.column.as_deref())?;
    let (col_b, b) = read_scores(b_path, &args.seed_column, args.column.as_deref())?;
    let seeds: Vec<&String> = a.keys().filter(|s| b.contains_key(*s)).collect();
    if seeds.len() < 2 {
        bail!("fewer than 2 seeds appear in both files: nothing to pair");
    }
    let xa: Vec<f64> = seeds.iter().map(|s| a[*s]).collect();
    let xb: Vec<f64> = seeds.iter().map(|s| b[*s]).collect();
    let mut cmp = sigsweep_stats::compare(&xa, &xb);
    // Welch uses every score of each file, paired or not.
    let all_a: Vec<f64> = a.values().copied().collect();
    let all_b: Vec<f64> = b.values().copied().collect();
    if let Ok(w) = sigsweep_stats::welch_t(&all_a, &all_b, sigsweep_stats::Alternative::TwoSided) {
        cmp.welch_p = w.p;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&cmp)?);
        return Ok(ExitCode::SUCCESS);
    }
    let unpaired = a.len() + b.len() - 2 * seeds.len();
    println!(
        "A = {a_path} [{col_a}], B = {b_path} [{col_b}], paired by `{}`: n = {}",
        args.seed_column, cmp.n
    );
    if unpaired > 0 {
        println!("({unpaired} score(s) without a partner were left out of the paired tests)");
    }
    let v = serde_json::to_value(&cmp)?;
    for (k, val) in v.as_object().into_iter().flatten() {
        println!("  {k:<14} {val}");
    }
    Ok(ExitCode::SUCCESS)
}
