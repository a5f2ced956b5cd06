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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use sigsweep_proto::v1 as pb;
use sigsweep_proto::v1::worker_service_client::WorkerServiceClient;

use crate::backend::BackendKind;
use crate::trial::{
    DatasetRequest, EpochReport, Params, Split, TrainError, TrialOutcome, TrialRequest, Value,
};

/// Worker settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Coordinator URL, e.g. `http://127.0.0.1:50051`.
    pub coordinator: String,
    pub name: String,
    pub backend: BackendKind,
    pub gpus: Vec<u32>,
    pub trials_per_gpu: u32,
    /// On shutdown, how long the running trial may go on before it is
    /// stopped and released.
    pub drain_timeout: Duration,
    /// Give up after the coordinator has been unreachable this long.
    pub orphan_timeout: Duration,
    /// Exit after this long without getting a trial (None: never).
    pub exit_when_idle: Option<Duration>,
    /// Most trials taken at once from a sweep with `fuse_seeds = true` (the
    /// seeds of one configuration, trained as one fused model).
    pub fuse_max: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid coordinator URL `{url}`: {message}")]
    BadUrl { url: String, message: String },
    #[error("coordinator unreachable for {0:?}: giving up")]
    Orphaned(Duration),
    #[error("{0}")]
    Backend(String),
    #[error("coordinator rejected the request: {0}")]
    Rejected(Status),
}

/// Adds `authorization: Bearer <token>` to every request, when a token is set.
#[derive(Clone, Default)]
pub struct BearerAuth(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerAuth(<redacted>)"
        } else {
            "BearerAuth(none)"
        })
    }
}

impl BearerAuth {
    /// `token` is trimmed; fails if it is not valid in an HTTP header.
    pub fn new(token: Option<&str>) -> Result<Self, String> {
        match token.map(str::trim) {
            None => Ok(Self(None)),
            Some("") => Err("the token file is empty".into()),
            Some(t) => {
                let mut value: MetadataValue<Ascii> =
                    format!("Bearer {t}").parse().map_err(|_| {
                        "the token contains characters not allowed in a header".to_string()
                    })?;
                value.set_sensitive(true);
                Ok(Self(Some(value)))
            }
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// How to reach the coordinator.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The coordinator endpoint, TLS settings included.
    pub endpoint: Endpoint,
    pub auth: BearerAuth,
}

impl Connection {
    /// A plaintext connection to `url` without a token.
    pub fn plain(url: &str) -> Result<Self, AgentError> {
        let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| AgentError::BadUrl {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        Ok(Self {
            endpoint,
            auth: BearerAuth::default(),
        })
    }

    /// A client over a fresh (lazily connected) channel.
    fn client(&self) -> WorkerClient {
        let channel = self
            .endpoint
            .clone()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_lazy();
        WorkerServiceClient::with_interceptor(channel, self.auth.clone())
            .max_decoding_message_size(16 * 1024 * 1024)
    }
}

type WorkerClient = WorkerServiceClient<InterceptedService<Channel, BearerAuth>>;

struct Session {
    connection: Connection,
    client: WorkerClient,
    worker_id: String,
    generation: u64,
    heartbeat: Duration,
}

impl Session {
    /// Drops the channel and connects afresh (possibly to another
    /// coordinator behind the same address).
    fn reconnect(&mut self) {
        self.client = self.connection.client();
    }
}

fn is_transient(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Cancelled
    )
}

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
    let client = connection.client();
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

/// Trials leased together: one trial, or the fused seeds of one
/// configuration.
type Group = Vec<pb::TrialAssignment>;

fn group_of(r: pb::AcquireTrialResponse) -> Option<Group> {
    let mut group = vec![r.assignment?];
    group.extend(r.fused);
    Some(group)
}

/// A group that finished training, waiting to be reported.
struct Finished {
    leases: Vec<(String, pb::TrialSpec)>,
    results: Vec<Result<TrialOutcome, TrainError>>,
    /// Stopped by a drain: hand the trials back rather than fail them.
    released: bool,
}

/// Long-polls for the next group (None: nothing within the wait).
async fn acquire(
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
async fn send_acquire(
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
async fn release_group(session: &mut Session, group: &Group) {
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
        };
        if let Err(s) = session.client.fail_trial(req).await {
            tracing::debug!(status = %s, trial = %spec.trial_id, "could not hand a reservation back");
        }
    }
}

async fn register(
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
                models: sigsweep_types::params::MODELS
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

async fn wait_for_coordinator(
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

/// Converts a wire assignment into a trial request.
pub fn trial_request(trial: &pb::TrialSpec) -> Result<TrialRequest, TrainError> {
    let mut values = IndexMap::new();
    for p in &trial.params {
        let v = p
            .value
            .as_ref()
            .and_then(Value::from_proto)
            .ok_or_else(|| TrainError::InvalidParam {
                key: p.name.clone(),
                message: "empty value".into(),
            })?;
        values.insert(p.name.clone(), v);
    }
    let dataset = trial.dataset.clone().unwrap_or_default();
    let params = if dataset.params_json.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&dataset.params_json).map_err(|e| {
            TrainError::Dataset(format!("dataset parameters are not valid JSON: {e}"))
        })?
    };
    let metrics = trial.metrics.clone().unwrap_or_default();
    Ok(TrialRequest {
        trial_id: trial.trial_id.clone(),
        seed: trial.seed,
        model: trial.model.clone(),
        params: Params::new(values),
        dataset: DatasetRequest {
            kind: dataset.kind,
            generator: dataset.generator,
            path: dataset.path,
            params,
        },
        select: metrics.select,
        select_higher_is_better: metrics.select_higher_is_better,
        select_split: if metrics.select_split == "test" {
            Split::Test
        } else {
            Split::Valid
        },
    })
}

fn metrics(m: &std::collections::BTreeMap<String, f64>) -> pb::Metrics {
    pb::Metrics {
        values: m.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    }
}

enum Ending {
    Finished(Vec<Result<TrialOutcome, TrainError>>),
    LeaseLost,
}


/// Trains `group` while heartbeating its leases (and the reservation's).
/// Once training has started, reports `previous` and reserves the next
/// group into `reserved` in the same call. Returns the group's outcomes,
/// unreported (None when its leases were lost).
async fn run_assignments(
    session: &mut Session,
    config: &AgentConfig,
    group: Group,
    from_reservation: bool,
    shutdown: &CancellationToken,
    previous: Option<Finished>,
    reserved: &mut Option<Group>,
) -> Result<Option<Finished>, AgentError> {
    let leases: Vec<(String, pb::TrialSpec)> = group
        .into_iter()
        .filter_map(|a| Some((a.lease_id, a.trial?)))
        .collect();
    if leases.is_empty() {
        if let Some(f) = previous {
            report_finished(session, config, shutdown, f, None).await?;
        }
        return Ok(None);
    }
    for (_, spec) in &leases {
        tracing::info!(trial = %spec.trial_id, config = %spec.config_key, seed = spec.seed, fused = leases.len(), "trial started");
    }
    let label = leases[0].1.trial_id.clone();

    let cancel = Arc::new(AtomicBool::new(false));
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<(usize, EpochReport)>();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let backend = config.backend;
    let thread_cancel = cancel.clone();
    let requests: Vec<Result<TrialRequest, TrainError>> =
        leases.iter().map(|(_, spec)| trial_request(spec)).collect();
    let devices = leases.first().map_or(1, |(_, spec)| spec.gpus.max(1));
    let n = requests.len();
    std::thread::Builder::new()
        .name(format!("trial-{label}"))
        .spawn(move || {
            let mut progress = |i: usize, r: EpochReport| {
                let _ = progress_tx.send((i, r));
            };
            let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::execute::run(requests, backend, devices, &mut progress, &thread_cancel)
            }))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                (0..n)
                    .map(|_| Err(TrainError::Backend(format!("training panicked: {msg}"))))
                    .collect()
            });
            let _ = done_tx.send(results);
        })
        .map_err(|e| AgentError::Backend(format!("cannot start a training thread: {e}")))?;

    // Training runs: in one call, report the previous group, tell the
    // coordinator that this group (if it was a reservation) started, and
    // reserve the next one.
    let next = pb::AcquireTrialRequest {
        reserve: reserved.is_none() && !shutdown.is_cancelled(),
        max_trials: config.fuse_max.max(1),
        started: if from_reservation {
            leases.iter().map(|(id, _)| id.clone()).collect()
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let next = (next.reserve || !next.started.is_empty()).then_some(next);
    let reply = match previous {
        Some(f) => report_finished(session, config, shutdown, f, next).await?,
        None => match next {
            Some(n) => send_acquire(session, n).await,
            None => None,
        },
    };
    if let Some(reply) = reply {
        if !reply.lost.is_empty() {
            // Taken over before it started: the other worker runs it.
            tracing::info!(trial = %label, "reservation was taken over; stopping");
            cancel.store(true, Ordering::Relaxed);
            let _ = done_rx.await;
            if let Some(g) = group_of(reply) {
                release_group(session, &g).await;
            }
            return Ok(None);
        }
        if reserved.is_none() {
            *reserved = group_of(reply);
        }
    }

    let mut last_progress: Vec<Option<EpochReport>> = vec![None; leases.len()];
    // The first heartbeat goes out at once, unless the call above already
    // told the coordinator that this group started.
    let first_tick = if from_reservation {
        tokio::time::Instant::now() + session.heartbeat
    } else {
        tokio::time::Instant::now()
    };
    let mut ticker = tokio::time::interval_at(first_tick, session.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut released = false;
    let ending = 'outer: loop {
        tokio::select! {
            r = &mut done_rx => {
                break Ending::Finished(r.unwrap_or_else(|_| {
                    (0..leases.len()).map(|_| Err(TrainError::Backend("training thread vanished".into()))).collect()
                }));
            }
            Some((i, p)) = progress_rx.recv() => {
                tracing::debug!(trial = %leases[i].1.trial_id, epoch = p.epoch, loss = p.train_loss, "epoch done");
                last_progress[i] = Some(p);
            }
            () = shutdown.cancelled(), if drain_deadline.is_none() => {
                tracing::info!(trial = %label, timeout = ?config.drain_timeout, "draining: letting the running trial finish");
                if let Some(g) = reserved.take() {
                    release_group(session, &g).await;
                }
                drain_deadline = Some(tokio::time::Instant::now() + config.drain_timeout);
            }
            () = async { match drain_deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } }, if !released => {
                tracing::warn!(trial = %label, "drain timeout: stopping the trial and handing it back");
                cancel.store(true, Ordering::Relaxed);
                released = true;
            }
            _ = ticker.tick() => {
                for (i, (lease_id, spec)) in leases.iter().enumerate() {
                    let req = pb::HeartbeatRequest {
                        worker_id: session.worker_id.clone(),
                        generation: session.generation,
                        lease_id: lease_id.clone(),
                        progress: last_progress[i].as_ref().map(|p| pb::EpochProgress {
                            epoch: p.epoch,
                            epochs: p.epochs,
                            train_loss: p.train_loss,
                            valid_metrics: Some(metrics(&p.valid_metrics)),
                        }),
                        trial_id: spec.trial_id.clone(),
                        reserved: false,
                    };
                    match session.client.heartbeat(req).await {
                        Ok(r) => {
                            let r = r.into_inner();
                            if !r.lease_valid || r.cancel {
                                // A fused group stops as a whole; trials whose
                                // leases are still valid run again elsewhere.
                                tracing::info!(trial = %spec.trial_id, lease_valid = r.lease_valid, cancel = r.cancel, "stopping trial");
                                cancel.store(true, Ordering::Relaxed);
                                let _ = (&mut done_rx).await;
                                if let Some(g) = reserved.take() {
                                    release_group(session, &g).await;
                                }
                                break 'outer Ending::LeaseLost;
                            }
                        }
                        Err(s) if s.code() == Code::NotFound || s.code() == Code::FailedPrecondition => {
                            tracing::warn!(status = %s, "coordinator forgot this worker; registering again to keep the trial");
                            register(session, config, shutdown).await?;
                        }
                        Err(s) => {
                            tracing::warn!(status = %s, "heartbeat failed; will retry");
                            if s.code() == Code::Unavailable {
                                session.reconnect();
                            }
                        }
                    }
                }
                if let Some(g) = reserved.as_ref()
                    && !renew_reservation(session, g).await
                {
                    tracing::info!(trial = %g.first().and_then(|a| a.trial.as_ref()).map_or("", |t| t.trial_id.as_str()), "reservation taken over by another worker");
                    let g = reserved.take().unwrap_or_default();
                    release_group(session, &g).await;
                }
            }
        }
    };

    let Ending::Finished(results) = ending else {
        return Ok(None);
    };
    Ok(Some(Finished {
        leases,
        results,
        released,
    }))
}

/// Heartbeats a reservation; false when any of its leases is gone (taken
/// over, expired or cancelled): the whole reservation is then dropped.
async fn renew_reservation(session: &mut Session, group: &Group) -> bool {
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

/// Reports a finished group's outcomes; `next`, when given, rides on the
/// last completion (or goes on its own after a failure) and its answer is
/// returned.
async fn report_finished(
    session: &mut Session,
    config: &AgentConfig,
    shutdown: &CancellationToken,
    finished: Finished,
    next: Option<pb::AcquireTrialRequest>,
) -> Result<Option<pb::AcquireTrialResponse>, AgentError> {
    let n = finished.leases.len();
    let mut carried = None;
    let mut sent = false;
    for (i, ((lease_id, spec), result)) in finished.leases.iter().zip(finished.results).enumerate()
    {
        let with_next = if i + 1 == n && result.is_ok() {
            next.clone()
        } else {
            None
        };
        sent |= with_next.is_some();
        carried = report_outcome(
            session,
            config,
            shutdown,
            (lease_id, &spec.trial_id),
            result,
            finished.released,
            with_next,
        )
        .await?;
    }
    match next {
        Some(next) if !sent || carried.is_none() => Ok(send_acquire(session, next).await),
        _ => Ok(carried),
    }
}

/// Reports one trial's outcome: completed, failed, or handed back.
async fn report_outcome(
    session: &mut Session,
    config: &AgentConfig,
    shutdown: &CancellationToken,
    (lease_id, trial_id): (&str, &str),
    result: Result<TrialOutcome, TrainError>,
    released: bool,
    next: Option<pb::AcquireTrialRequest>,
) -> Result<Option<pb::AcquireTrialResponse>, AgentError> {
    match result {
        Ok(outcome) => {
            tracing::info!(trial = %trial_id, epoch = outcome.selected_epoch, seconds = outcome.seconds, "trial completed");
            let req = pb::CompleteTrialRequest {
                worker_id: String::new(),
                generation: 0,
                lease_id: lease_id.to_string(),
                trial_id: trial_id.to_string(),
                test_metrics: Some(metrics(&outcome.test_metrics)),
                valid_metrics: Some(metrics(&outcome.valid_metrics)),
                selected_epoch: outcome.selected_epoch,
                seconds: outcome.seconds,
                next,
            };
            let reply = report_with_retry(session, config, shutdown, |s| {
                let mut r = req.clone();
                r.worker_id = s.worker_id.clone();
                r.generation = s.generation;
                let mut c = s.client.clone();
                async move { c.complete_trial(r).await.map(|r| r.into_inner()) }
            })
            .await?;
            Ok(reply.and_then(|r| r.next))
        }
        Err(e) => {
            let release =
                matches!(e, TrainError::Cancelled) && (released || shutdown.is_cancelled());
            if !release {
                tracing::warn!(trial = %trial_id, error = %e, "trial failed");
            }
            let req = pb::FailTrialRequest {
                worker_id: String::new(),
                generation: 0,
                lease_id: lease_id.to_string(),
                trial_id: trial_id.to_string(),
                reason: if release {
                    "worker shut down".into()
                } else {
                    e.to_string()
                },
                retryable: release || !e.is_deterministic(),
                release,
            };
            report_with_retry(session, config, shutdown, |s| {
                let mut r = req.clone();
                r.worker_id = s.worker_id.clone();
                r.generation = s.generation;
                let mut c = s.client.clone();
                async move { c.fail_trial(r).await.map(|_| ()) }
            })
            .await?;
            Ok(None)
        }
    }
}

/// Sends a final report, retrying through coordinator outages (and a
/// re-registration if the coordinator restarted meanwhile). None when the
/// coordinator rejected it for good.
async fn report_with_retry<F, Fut, T>(
    session: &mut Session,
    config: &AgentConfig,
    shutdown: &CancellationToken,
    mut send: F,
) -> Result<Option<T>, AgentError>
where
    F: FnMut(&Session) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let start = Instant::now();
    loop {
        match send(session).await {
            Ok(reply) => return Ok(Some(reply)),
            Err(s) if s.code() == Code::NotFound && s.message().contains("worker") => {
                register(session, config, shutdown).await?;
            }
            Err(s) if is_transient(&s) => {
                if start.elapsed() > config.orphan_timeout {
                    return Err(AgentError::Orphaned(config.orphan_timeout));
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                session.reconnect();
                let _ = register(session, config, shutdown).await;
            }
            Err(s) => {
                // e.g. a stale generation or an unknown trial: the coordinator
                // has moved on; the trial will be (or was) run elsewhere.
                tracing::warn!(status = %s, "report rejected; dropping it");
                return Ok(None);
            }
        }
    }
}
