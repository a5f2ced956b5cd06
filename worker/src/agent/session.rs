//! The worker's registration with the coordinator, and the calls that
//! acquire, reserve and release trials.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic::Code;

use sigsweep_proto::v1 as pb;

use crate::trial::{TrainError, TrialOutcome};

use sigsweep_client::{Connection, WorkerClient, is_transient};

use super::config::{AgentConfig, AgentError};

pub(super) struct Session {
    pub(super) connection: Connection,
    pub(super) client: WorkerClient,
    pub(super) worker_id: String,
    pub(super) generation: u64,
    pub(super) heartbeat: Duration,
}

impl Session {
    /// Drops the channel and connects afresh (possibly to another
    /// coordinator behind the same address).
    pub(super) fn reconnect(&mut self) {
        self.client = self.connection.worker_client();
    }
}

/// Trials leased together: one trial, or the fused seeds of one
/// configuration.
pub(super) type Group = Vec<pb::TrialAssignment>;

pub(super) fn group_of(r: pb::AcquireTrialResponse) -> Option<Group> {
    let mut group = vec![r.assignment?];
    group.extend(r.fused);
    Some(group)
}

/// A group that finished training, waiting to be reported.
pub(super) struct Finished {
    pub(super) leases: Vec<(String, pb::TrialSpec)>,
    pub(super) results: Vec<Result<TrialOutcome, TrainError>>,
    /// Stopped by a drain: hand the trials back rather than fail them.
    pub(super) released: bool,
}

/// Long-polls for the next group (None: nothing within the wait).
pub(super) async fn acquire(
    session: &mut Session,
    config: &AgentConfig,
    shutdown: &CancellationToken,
) -> Result<Option<Group>, AgentError> {
    let request = pb::AcquireTrialRequest {
        worker_id: session.worker_id.clone(),
        generation: session.generation,
        wait_ms: 2000,
        max_trials: config.fuse_max.max(1),
        reserve: false,
        started: Vec::new(),
    };
    let response = tokio::select! {
        () = shutdown.cancelled() => return Ok(None),
        r = session.client.acquire_trial(request) => r,
    };
    match response {
        Ok(r) => Ok(group_of(r.into_inner())),
        Err(s) if s.code() == Code::NotFound || s.code() == Code::FailedPrecondition => {
            tracing::warn!(status = %s, "coordinator does not know this worker; registering again");
            register(session, config, shutdown).await?;
            Ok(None)
        }
        Err(s) if is_transient(&s) => {
            tracing::warn!(status = %s, "coordinator unavailable; retrying");
            wait_for_coordinator(session, config, shutdown).await?;
            Ok(None)
        }
        Err(s) => Err(AgentError::Rejected(s)),
    }
}

/// Sends an `AcquireTrial` that must not hold the worker up (a reservation,
/// or starting one): None when the coordinator cannot answer now.
pub(super) async fn send_acquire(
    session: &mut Session,
    mut request: pb::AcquireTrialRequest,
) -> Option<pb::AcquireTrialResponse> {
    request.worker_id = session.worker_id.clone();
    request.generation = session.generation;
    match session.client.acquire_trial(request).await {
        Ok(r) => Some(r.into_inner()),
        Err(s) => {
            tracing::debug!(status = %s, "no reservation");
            None
        }
    }
}

/// Hands a reservation back (best effort: it expires otherwise).
pub(super) async fn release_group(session: &mut Session, group: &Group) {
    for a in group {
        let Some(spec) = &a.trial else { continue };
        let req = pb::FailTrialRequest {
            worker_id: session.worker_id.clone(),
            generation: session.generation,
            lease_id: a.lease_id.clone(),
            trial_id: spec.trial_id.clone(),
            reason: "reservation handed back".into(),
            retryable: true,
            release: true,
            log: String::new(),
        };
        if let Err(s) = session.client.fail_trial(req).await {
            tracing::debug!(status = %s, trial = %spec.trial_id, "could not hand a reservation back");
        }
    }
}

pub(super) async fn register(
    session: &mut Session,
    config: &AgentConfig,
    shutdown: &CancellationToken,
) -> Result<(), AgentError> {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let req = pb::RegisterRequest {
            name: config.name.clone(),
            capabilities: Some(pb::WorkerCapabilities {
                backend: config.backend.to_string(),
                gpus: config.gpus.clone(),
                gpu_memory_bytes: 0,
                cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
                trials_per_gpu: config.trials_per_gpu,
                // Every model this worker can train, with what it accepts:
                // the coordinator checks sweeps for them at submit.
                models: crate::models::declarations()
                    .iter()
                    .map(pb::ModelDeclaration::from)
                    .collect(),
            }),
        };
        match session.client.register(req).await {
            Ok(r) => {
                let r = r.into_inner();
                session.worker_id = r.worker_id;
                session.generation = r.generation;
                session.heartbeat = Duration::from_millis(r.heartbeat_interval_ms.max(50));
                tracing::info!(worker = %session.worker_id, generation = session.generation, backend = %config.backend, "registered");
                return Ok(());
            }
            Err(s) if is_transient(&s) => {
                if start.elapsed() > config.orphan_timeout {
                    return Err(AgentError::Orphaned(config.orphan_timeout));
                }
                tracing::debug!(status = %s, "register failed; retrying");
                session.reconnect();
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(s) => return Err(AgentError::Rejected(s)),
        }
    }
}

pub(super) async fn wait_for_coordinator(
    session: &mut Session,
    config: &AgentConfig,
    shutdown: &CancellationToken,
) -> Result<(), AgentError> {
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        () = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
    session.reconnect();
    register(session, config, shutdown).await
}

/// Heartbeats a reservation; false when any of its leases is gone (taken
/// over, expired or cancelled): the whole reservation is then dropped.
pub(super) async fn renew_reservation(session: &mut Session, group: &Group) -> bool {
    for a in group {
        let Some(spec) = &a.trial else { continue };
        let req = pb::HeartbeatRequest {
            worker_id: session.worker_id.clone(),
            generation: session.generation,
            lease_id: a.lease_id.clone(),
            progress: None,
            trial_id: spec.trial_id.clone(),
            reserved: true,
        };
        // Transient trouble is left to the running group's heartbeat.
        if let Ok(r) = session.client.heartbeat(req).await {
            let r = r.into_inner();
            if !r.lease_valid || r.cancel {
                return false;
            }
        }
    }
    true
}
