//! A coordinator in the CLI's own process, for `sigsweep run`: an embedded
//! store in a state directory, served on a loopback port while local worker
//! processes train; and reading such a directory back (`report`,
//! `confirm`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::store::{Catalog, EmbeddedStore, StoreError};
use crate::sweep::SweepSpec;
use crate::{Coordinator, CoordinatorConfig};
use sigsweep_types::ResultRecord;

/// The state file of a state directory.
pub const STATE_FILE: &str = "state.redb";
/// How the token files of local runs' servers begin ([`LocalRun::serve`]).
const TOKEN_PREFIX: &str = ".token-";

/// A coordinator over the embedded store of one state directory.
pub struct LocalRun {
    pub coordinator: Coordinator,
    pub state_dir: PathBuf,
}

/// The coordinator of a [`LocalRun`], served on loopback to the holders of
/// a token made for this run: loopback is every user of the machine, and
/// the local workers run training programs (`--allow-command`), so without
/// it anyone on a shared machine could read the run or run code as its
/// user.
pub struct Serving {
    /// `http://127.0.0.1:PORT`, for the workers.
    pub url: String,
    /// The file holding the token (readable by its owner only; removed
    /// when this is dropped), for the workers' `--token-file`.
    token_file: tempfile::TempPath,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl LocalRun {
    /// Opens (or creates) the state in `state_dir` (and its `logs/`) and
    /// loads it.
    pub async fn open(state_dir: &Path, lease_ttl: Duration) -> anyhow::Result<Self> {
        std::fs::create_dir_all(state_dir.join("logs"))
            .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
        let store = EmbeddedStore::open(state_dir.join(STATE_FILE)).with_context(|| {
            format!(
                "cannot open the state in {} (is another sigsweep using it?)",
                state_dir.display()
            )
        })?;
        let coordinator = Coordinator::start(
            Catalog::new(Arc::new(store)),
            CoordinatorConfig {
                lease_ttl,
                max_acquire_wait: Duration::from_secs(2),
                // The user runs the sweep file on their own machine.
                allow_command: true,
                ..CoordinatorConfig::default()
            },
        )
        .await?;
        Ok(Self {
            coordinator,
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// Serves the coordinator on a free loopback port to the holders of a
    /// new random token, written to a file in the state directory that
    /// only this user can read ([`Serving::token_file`]).
    pub async fn serve(&self) -> anyhow::Result<Serving> {
        // A run killed outright leaves its token file; the state file's lock
        // says no other run uses this directory, so those are stale.
        for entry in std::fs::read_dir(&self.state_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(TOKEN_PREFIX)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let token = hex::encode(rand::random::<[u8; 32]>());
        // tempfile creates the file readable and writable by its owner only.
        let mut file = tempfile::Builder::new()
            .prefix(TOKEN_PREFIX)
            .tempfile_in(&self.state_dir)
            .with_context(|| {
                format!(
                    "cannot create the run's token file in {}",
                    self.state_dir.display()
                )
            })?;
        std::io::Write::write_all(&mut file, token.as_bytes())
            .context("cannot write the run's token file")?;
        let token_file = file.into_temp_path();
        let options = crate::server::ServerOptions {
            tls: None,
            auth: crate::server::Auth::with_token(&token),
        };
        let shutdown = CancellationToken::new();
        let listener = crate::server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(crate::server::serve(
            listener,
            self.coordinator.clone(),
            options,
            shutdown.clone(),
        ));
        Ok(Serving {
            url: format!("http://{addr}"),
            token_file,
            shutdown,
            server,
        })
    }
}

impl Serving {
    /// The file holding the token the workers must send.
    pub fn token_file(&self) -> &Path {
        &self.token_file
    }

    /// Stops serving and waits for the server to end.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
    }
}

/// The last sweep submitted in `dir` and its results, one per trial of the
/// sweep (trials without a result yet are left out).
pub async fn load_state_dir(dir: &Path) -> anyhow::Result<(SweepSpec, Vec<ResultRecord>)> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        bail!(
            "{} holds no sigsweep state (no {STATE_FILE})",
            dir.display()
        );
    }
    let store = EmbeddedStore::open(&path).map_err(|e| {
        // Unavailable: another process (a running coordinator) holds the
        // file; anything else (a damaged file) says so itself.
        let hint = match e {
            StoreError::Unavailable(_) => " (is a sweep still running there?)",
            _ => "",
        };
        anyhow::Error::new(e).context(format!("cannot open {}{hint}", path.display()))
    })?;
    let catalog = Catalog::new(Arc::new(store));
    let mut sweeps = catalog.sweeps().await?;
    sweeps.sort_by_key(|s| s.submitted_at);
    let record = sweeps
        .pop()
        .with_context(|| format!("{} holds no sweep", dir.display()))?;
    let spec = SweepSpec::parse(&record.source, &record.source_name)?;
    let mut results = Vec::new();
    for t in spec.trials() {
        results.extend(catalog.result(&t.trial_id).await?);
    }
    Ok((spec, results))
}
