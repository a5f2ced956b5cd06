//! `sigsweep coordinator`: a long-running coordinator node
//! ([`sigsweep_coordinator::node::run`]).

use std::process::ExitCode;

use crate::cli::CoordinatorArgs;
use crate::config::{self, CoordinatorSettings, FileConfig};

pub async fn run(args: CoordinatorArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => Some(FileConfig::load(path)?.coordinator),
        None => None,
    };
    let settings = config::resolve(args.settings, file, CoordinatorSettings::defaults());
    if args.print_config {
        print!(
            "{}",
            toml::to_string(&FileConfig {
                coordinator: settings,
                ..FileConfig::default()
            })?
        );
        return Ok(ExitCode::SUCCESS);
    }
    match sigsweep_coordinator::server::raise_open_files_limit() {
        Ok(limit) => tracing::info!(limit, "open files limit (one per worker connection)"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
    let shutdown = crate::signals::shutdown_token("shutting down");
    sigsweep_coordinator::node::run(
        settings.resolve(),
        Some(crate::steps::check_settings),
        shutdown,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}
