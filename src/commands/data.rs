//! `sigsweep data inspect`.

use std::path::Path;
use std::process::ExitCode;

use sigsweep_data::formats::{self, Format};

pub fn inspect(path: &Path, format: &str, json: bool) -> anyhow::Result<ExitCode> {
    let format: Format = format.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let inspection = formats::inspect(path, format)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        println!("{inspection}");
    }
    Ok(ExitCode::SUCCESS)
}
