//! Steps several commands share: reading a sweep file, reaching a
//! coordinator, the progress bar.

use std::path::Path;

use anyhow::Context;

use sigsweep_client::{Connection, SweepApi, TlsFiles};
use sigsweep_coordinator::sweep::SweepSpec;

use crate::cli::Credentials;

/// Reads and validates a sweep file, model parameters included (this
/// binary's built-in models) and the model's support for data parallelism.
pub fn load_sweep(path: &Path) -> anyhow::Result<(String, SweepSpec)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read sweep file {}", path.display()))?;
    let spec = SweepSpec::parse(&text, &path.display().to_string())?;
    // Models this binary was built with beyond the built-in ones
    // (`sigsweep_worker::models::register`).
    spec.check_declared(&sigsweep_worker::models::extension_declarations())?;
    spec.check_data_parallel(sigsweep_worker::models::supports_data_parallel)?;
    spec.check_settings(check_settings)?;
    Ok((text, spec))
}

/// This binary's models' check of a configuration (a
/// [`sigsweep_coordinator::sweep::SettingsCheck`]): the CLI runs it before
/// anything starts, and a coordinator it starts at every submission.
pub fn check_settings(
    model: &str,
    params: &indexmap::IndexMap<String, sigsweep_coordinator::sweep::ParamValue>,
) -> Result<(), (String, String)> {
    let params = sigsweep_worker::trial::Params::new(params.clone());
    match sigsweep_worker::models::check_params(model, &params) {
        Err(sigsweep_worker::trial::TrainError::InvalidParam { key, message }) => {
            Err((key, message))
        }
        // The models' reading of parameters only refuses parameters.
        _ => Ok(()),
    }
}

/// The sweep service of the coordinator at `url`, with `credentials`.
pub fn sweep_api(url: &str, c: &Credentials) -> anyhow::Result<SweepApi> {
    let tls = TlsFiles {
        ca: c.tls_ca.as_deref(),
        cert: c.tls_cert.as_deref(),
        key: c.tls_key.as_deref(),
    };
    let connection = Connection::new(
        url,
        tls,
        c.token_file.as_deref(),
        c.insecure.unwrap_or(false),
    )?;
    Ok(SweepApi::new(connection))
}

/// The progress bar of `run` and `watch` (hidden when stderr is not a
/// terminal).
pub fn progress_bar(len: u64) -> indicatif::ProgressBar {
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} trials  {msg}  [{elapsed_precise}, ETA {eta}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
