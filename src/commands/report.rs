//! `sigsweep report`: the significance report of a sweep, offline from a
//! state directory or from a running coordinator.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};

use sigsweep_coordinator::store::{Catalog, EmbeddedStore};
use sigsweep_coordinator::sweep::SweepSpec;
use sigsweep_report::{Correction, Format, TestKind, TrialRecord};

use crate::cli::{ReportArgs, ReportFormat};

/// The latest sweep stored in a state directory and its records.
pub async fn load_state_dir(dir: &Path) -> anyhow::Result<(SweepSpec, Vec<TrialRecord>)> {
    let path = dir.join("state.redb");
    if !path.exists() {
        bail!("{} holds no sigsweep state (no state.redb)", dir.display());
    }
    let store = EmbeddedStore::open(&path).with_context(|| {
        format!(
            "cannot open {} (is a sweep still running there?)",
            path.display()
        )
    })?;
    let catalog = Catalog::new(Arc::new(store));
    let mut sweeps = catalog.sweeps().await?;
    sweeps.sort_by_key(|s| s.submitted_at);
    let record = sweeps
        .pop()
        .with_context(|| format!("{} holds no sweep", dir.display()))?;
    let spec = SweepSpec::parse(&record.source, &record.source_name)?;
    let all = catalog.results().await?;
    let results: Vec<_> = spec
        .trials()
        .iter()
        .filter_map(|t| all.get(&t.trial_id).cloned())
        .collect();
    Ok((spec, results))
}

async fn load_remote(
    remote: &crate::cli::Remote,
    sweep: &str,
) -> anyhow::Result<(SweepSpec, Vec<TrialRecord>)> {
    let mut client = super::client::client_for(&remote.connection()?);
    let status = client
        .get_sweep(sigsweep_proto::v1::GetSweepRequest {
            sweep_id: sweep.to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let spec = SweepSpec::parse(&status.sweep_toml, sweep)?;
    let records = super::client::fetch_results_from(remote, sweep).await?;
    Ok((spec, records))
}

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let (spec, records) = match &args.coordinator {
        Some(url) => {
            let remote = crate::cli::Remote {
                coordinator: url.clone(),
                credentials: args.credentials.clone(),
            };
            load_remote(&remote, &args.target).await?
        }
        None => load_state_dir(Path::new(&args.target)).await?,
    };
    let mut rs = super::run::report_spec(&spec);
    if let Some(b) = &args.baseline {
        if !spec.configurations().iter().any(|c| &c.key == b) {
            bail!(
                "--baseline `{b}` is not a configuration of this sweep; configurations: {}",
                spec.configurations()
                    .iter()
                    .map(|c| c.key.clone())
                    .collect::<Vec<_>>()
                    .join(" | ")
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
    let report = sigsweep_report::build(&rs, &records);
    let to_file = args.out.is_some();
    let format = match args.format {
        ReportFormat::Term => Format::Term {
            color: !to_file && std::io::IsTerminal::is_terminal(&std::io::stdout()),
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
