//! The worker's gRPC loop.
//!
//! register → loop { acquire (long poll) → train on a thread while
//! heartbeating → complete | fail | release }. Between trials the worker
//! does not wait for the coordinator: while a trial trains, it reports the
//! previous one and reserves the next in the same call
//! (`CompleteTrialRequest.next`, or `AcquireTrial` with `reserve`), so the
//! next trial starts as soon as the running one ends. A reservation is
//! heartbeated like a running trial; an idle worker may take it over until
//! it starts (see the coordinator's scheduler). Cancellation and lost leases
//! arrive with heartbeat replies and stop the trial at its next step. On
//! shutdown (SIGTERM) the worker drains: the running trial may finish within
//! `drain_timeout`, otherwise it is stopped and handed back (released, no
//! failure counted). If the coordinator restarts, the worker registers again
//! and re-adopts its running trial through the heartbeat.
//!
//! Connection: [`Connection`] carries the endpoint (with its TLS settings)
//! and the bearer token sent with every request. On `UNAVAILABLE` (the
//! coordinator restarting, or a standby answering) the worker drops its
//! channel and connects afresh, so that a load balancer in front of several
//! coordinators can land it on the leader.

mod assignment;
mod config;
mod convert;
mod report;
mod session;
mod settings;

pub use config::{AgentConfig, AgentError};
pub use convert::trial_request;
pub use settings::WorkerSettings;
pub use sigsweep_client::{BearerAuth, Connection};

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use sigsweep_proto::v1 as pb;

use self::assignment::run_assignments;
use self::report::report_finished;
use self::session::{Finished, Group, Session, acquire, group_of, register, release_group};

/// Runs the worker until `shutdown` (drains the running trial first) or
/// until it has been idle for `exit_when_idle`.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let connection = Connection::plain(&config.coordinator)?;
    run_with(config, connection, shutdown).await
}

/// [`run`] over `connection` (TLS, token) instead of plaintext to
/// `config.coordinator`.
pub async fn run_with(
    config: AgentConfig,
    connection: Connection,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    crate::backend::check_available(config.backend).map_err(AgentError::Backend)?;
    let client = connection.worker_client();
    let mut session = Session {
        connection,
        client,
        worker_id: String::new(),
        generation: 0,
        heartbeat: Duration::from_secs(5),
    };
    register(&mut session, &config, &shutdown).await?;
    let mut idle_since = Instant::now();
    // The group to start when the running one ends, and the outcomes of the
    // last group, reported while the next one trains.
    let mut reserved: Option<Group> = None;
    let mut unreported: Option<Finished> = None;
    loop {
        if shutdown.is_cancelled() {
            if let Some(f) = unreported.take() {
                report_finished(&mut session, &config, &shutdown, f, None).await?;
            }
            if let Some(g) = reserved.take() {
                release_group(&mut session, &g).await;
            }
            tracing::info!(worker = %session.worker_id, "shutting down");
            return Ok(());
        }
        let (group, from_reservation) = match reserved.take() {
            Some(g) => (g, true),
            None => {
                if let Some(f) = unreported.take() {
                    // Nothing trains meanwhile: report, and acquire the next
                    // trial in the same call.
                    let next = pb::AcquireTrialRequest {
                        wait_ms: 0,
                        max_trials: config.fuse_max.max(1),
                        ..Default::default()
                    };
                    reserved = report_finished(&mut session, &config, &shutdown, f, Some(next))
                        .await?
                        .and_then(group_of);
                    if let Some(g) = reserved.take() {
                        // Acquired, not reserved: it starts now.
                        unreported = run_assignments(
                            &mut session,
                            &config,
                            g,
                            false,
                            &shutdown,
                            None,
                            &mut reserved,
                        )
                        .await?;
                        idle_since = Instant::now();
                        continue;
                    }
                }
                if let Some(limit) = config.exit_when_idle
                    && idle_since.elapsed() >= limit
                {
                    tracing::info!(worker = %session.worker_id, "idle; exiting");
                    return Ok(());
                }
                match acquire(&mut session, &config, &shutdown).await? {
                    Some(g) => (g, false),
                    None => continue,
                }
            }
        };
        unreported = run_assignments(
            &mut session,
            &config,
            group,
            from_reservation,
            &shutdown,
            unreported.take(),
            &mut reserved,
        )
        .await?;
        idle_since = Instant::now();
    }
}
