//! `sigsweep report`: the report of a state directory, or of a sweep on a
//! running coordinator.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use sigsweep_coordinator::sweep::SweepSpec;
use sigsweep_report::{Correction, Format, TestKind};

use crate::cli::{ReportArgs, ReportFormat};

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let (spec, records) = match &args.coordinator {
        Some(url) => {
            let api = crate::steps::sweep_api(url, &args.credentials)?;
            let status = api.status(&args.target).await?;
            let spec = SweepSpec::parse(&status.sweep_toml, &args.target)?;
            (spec, api.results(&args.target).await?)
        }
        None => sigsweep_coordinator::local::load_state_dir(Path::new(&args.target)).await?,
    };
    let mut rs = spec.report_spec();
    if let Some(b) = &args.baseline {
        let keys: Vec<String> = spec.configurations().into_iter().map(|c| c.key).collect();
        if !keys.contains(b) {
            bail!(
                "--baseline `{b}` is not a configuration of this sweep; configurations: {}",
                keys.join(" | ")
            );
        }
        rs.baseline_key = b.clone();
    }
    rs.correction = Correction::from_cli(&args.correction).with_context(|| {
        format!(
            "unknown correction `{}`: expected holm, bh, bonferroni or none",
            args.correction
        )
    })?;
    rs.test = TestKind::from_cli(&args.test).with_context(|| {
        format!(
            "unknown test `{}`: expected t, wilcoxon, permutation or aso",
            args.test
        )
    })?;
    let artifacts = match (&args.artifacts, &args.coordinator) {
        (Some(dir), _) => Some(dir.clone()),
        (None, None) => Some(Path::new(&args.target).join("artifacts")),
        (None, Some(_)) => None,
    };
    let (predictions, load_notes) = match &artifacts {
        Some(dir) => sigsweep_report::per_example::load_predictions(dir, &records),
        None => Default::default(),
    };
    let mut report = sigsweep_report::build_with_predictions(&rs, &records, &predictions);
    report.notes.extend(load_notes);
    let format = match args.format {
        ReportFormat::Term => Format::Term {
            color: args.out.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()),
        },
        ReportFormat::Md => Format::Markdown,
        ReportFormat::Tex => Format::Latex,
        ReportFormat::Csv => Format::Csv,
        ReportFormat::Json => Format::Json,
        ReportFormat::Html => Format::Html,
    };
    let text = sigsweep_report::render(&report, format);
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
