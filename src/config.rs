//! Layered configuration of the long-running processes (`sigsweep
//! coordinator`, `sigsweep worker`): defaults → file (`--config FILE`, TOML
//! with `[coordinator]` and `[worker]` tables) → `SIGSWEEP_…` environment →
//! command-line flags.
//!
//! One struct per process serves as the clap arguments (every field
//! optional, so "not given" is visible), as the file table (serde, unknown
//! keys rejected) and as the effective configuration (`--print-config`
//! prints it as TOML that can be fed back with `--config`). Flags and the
//! environment come through clap (a flag wins over its variable);
//! [`Layered::layer`] fills what they left unset from the file, then from
//! the defaults, which come from the resolved configurations
//! (`NodeConfig`, `AgentConfig`): their `Default` is the only copy of
//! each default. Secrets never appear here: tokens and keys are file paths,
//! and the etcd password is read from `SIGSWEEP_ETCD_PASSWORD` only.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use sigsweep_coordinator::node::CoordinatorSettings;
pub use sigsweep_worker::agent::WorkerSettings;

/// The configuration file: one optional table per process.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub coordinator: CoordinatorSettings,
    #[serde(default)]
    pub worker: WorkerSettings,
}

impl FileConfig {
    /// Reads `path`; errors name the file, line and key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }
}

pub use sigsweep_types::layered::{Layered, resolve};
