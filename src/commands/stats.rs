//! `sigsweep stats`: compare per-seed scores from anywhere
//! ([`sigsweep_report::scores`]), or adjust p-values.

use std::process::ExitCode;

use anyhow::{Context, bail};

use sigsweep_stats::Correction;

use crate::cli::StatsArgs;

pub fn run(args: StatsArgs) -> anyhow::Result<ExitCode> {
    if let Some(name) = &args.adjust {
        let method = Correction::from_cli(name).with_context(|| {
            format!("unknown correction `{name}`: expected holm, bh, bonferroni or none")
        })?;
        let p: Vec<f64> = args
            .inputs
            .iter()
            .map(|s| match s.parse::<f64>() {
                Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
                Ok(v) => bail!("p-value {v} is outside [0, 1]"),
                Err(_) => bail!("`{s}` is not a p-value"),
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
            println!("{:<12} {:<12}", "p", format!("p_{name}"));
            for (raw, adj) in p.iter().zip(&adjusted) {
                println!("{raw:<12.6} {adj:<12.6}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let [a, b] = args.inputs.as_slice() else {
        bail!("give two CSV files (A and B), e.g. `sigsweep stats mmic.csv mmdfn.csv`");
    };
    let f = sigsweep_report::scores::compare_files(a, b, &args.seed_column, args.column.as_deref())
        .map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f.comparison)?);
        return Ok(ExitCode::SUCCESS);
    }
    let [col_a, col_b] = &f.columns;
    println!(
        "A = {a} [{col_a}], B = {b} [{col_b}], paired by `{}`: n = {}",
        args.seed_column, f.comparison.n
    );
    if f.unpaired > 0 {
        println!(
            "({} score(s) without a partner were left out of the paired tests)",
            f.unpaired
        );
    }
    let v = serde_json::to_value(&f.comparison)?;
    for (k, val) in v.as_object().into_iter().flatten() {
        println!("  {k:<14} {val}");
    }
    Ok(ExitCode::SUCCESS)
}
