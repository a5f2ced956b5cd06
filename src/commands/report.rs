//! `sigsweep report`: the report of a state directory, or of a sweep on a
//! running coordinator.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use sigsweep_coordinator::sweep::SweepSpec;
use sigsweep_report::{Correction, Format, TestKind};

use crate::cli::{ReportArgs, ReportFormat, ReportLayout};

/// The report specification of a sweep, with the burn version of this
/// build's workers (one place for both `report` and `run`).
pub fn report_spec(spec: &SweepSpec) -> sigsweep_report::ReportSpec {
    let mut rs = spec.report_spec();
    rs.run.versions.push((
        "burn".to_string(),
        sigsweep_worker::BURN_VERSION.to_string(),
    ));
    rs
}

/// The report of one target (a state directory, or a sweep id on
/// `--coordinator`) under the flags of `args`.
async fn report_of(args: &ReportArgs, target: &str) -> anyhow::Result<sigsweep_report::Report> {
    let (spec, records) = match &args.coordinator {
        Some(url) => {
            let api = crate::steps::sweep_api(url, &args.credentials)?;
            let status = api.status(target).await?;
            let spec = SweepSpec::parse(&status.sweep_toml, target)?;
            (spec, api.results(target).await?)
        }
        None => sigsweep_coordinator::local::load_state_dir(Path::new(target)).await?,
    };
    let mut rs = report_spec(&spec);
    if let Some(b) = &args.baseline {
        let keys: Vec<String> = spec.configurations().into_iter().map(|c| c.key).collect();
        if !keys.contains(b) {
            bail!(
                "--baseline `{b}` is not a configuration of {target}; configurations: {}",
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
        (None, None) => Some(Path::new(target).join("artifacts")),
        (None, Some(_)) => None,
    };
    let (predictions, load_notes) = match &artifacts {
        Some(dir) => sigsweep_report::per_example::load_predictions(dir, &records),
        None => Default::default(),
    };
    let mut report = sigsweep_report::build_with_predictions(&rs, &records, &predictions);
    report.notes.extend(load_notes);
    Ok(report)
}

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    if args.layout == ReportLayout::Paper {
        return paper(&args).await;
    }
    let [target] = args.targets.as_slice() else {
        bail!(
            "{} targets given: several sweeps make one table with --layout paper",
            args.targets.len()
        );
    };
    let report = report_of(&args, target).await?;
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
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            if matches!(
                args.format,
                ReportFormat::Md | ReportFormat::Tex | ReportFormat::Html
            ) {
                // The Statistics paragraph's LaTeX form and its references.
                let dir = path.parent().unwrap_or(Path::new("."));
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                sigsweep_report::outputs::write_statistics(dir, &report)
                    .with_context(|| format!("cannot write report.bib into {}", dir.display()))?;
                eprintln!(
                    "wrote {}, {}/statistics.tex and {}/report.bib",
                    path.display(),
                    dir.display(),
                    dir.display()
                );
            }
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `--layout paper`: one table over every target (a dataset each).
async fn paper(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    if args.artifacts.is_some() && args.targets.len() > 1 {
        bail!(
            "--artifacts names one directory; with several targets each state directory's own artifacts/ is used"
        );
    }
    let mut reports = Vec::new();
    for target in &args.targets {
        reports.push(report_of(args, target).await?);
    }
    let table = sigsweep_report::paper::paper_table(&reports);
    let text = match args.format {
        ReportFormat::Tex => sigsweep_report::paper::latex(&table),
        ReportFormat::Md | ReportFormat::Term => sigsweep_report::paper::markdown(&table),
        ReportFormat::Html => sigsweep_report::paper::html(&table),
        ReportFormat::Json => serde_json::to_string_pretty(&table)? + "\n",
        ReportFormat::Csv => bail!("--layout paper writes tex, md, html or json"),
    };
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
