//! The gRPC edge: tonic services over a [`Coordinator`], conversion between
//! wire and domain types, and the one place where domain errors become
//! `tonic::Status` codes.
//!
//! - [`serve`]: one coordinator, plaintext, no token (local runs, tests);
//! - [`serve_slot`]: the long-running server: the services answer through a
//!   [`LeaderSlot`] that holds the coordinator while this process leads and is
//!   empty while it stands by (requests then fail with `UNAVAILABLE`, so
//!   clients reconnect and a load balancer lands them on the leader), with
//!   optional TLS ([`ServerOptions::tls`]) and [`Auth`] on every call
//!   ([`ServerOptions::auth`]: a bearer token or a verified client
//!   certificate; without either, loopback callers only);
//! - [`serve_health`]: plaintext `grpc.health.v1` on its own port for
//!   Kubernetes probes (service `""` serving while the process is up,
//!   `sigsweep.v1.SweepService` only on the leader);
//! - [`metrics`]: Prometheus text at `GET /metrics`.

mod convert;
pub mod metrics;

pub use tonic_health::server::HealthReporter;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use std::sync::Arc;

use futures::Stream;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use sigsweep_proto::v1 as pb;
use sigsweep_proto::v1::sweep_service_server::{SweepService, SweepServiceServer};
use sigsweep_proto::v1::worker_service_server::{WorkerService, WorkerServiceServer};

use crate::service::{Completion, Coordinator, CoordinatorError, WorkerCaps};
use convert::{assignment_to_proto, metrics_from_proto, progress_to_proto};

/// Largest gRPC message of the sweep service (sweep files and result lists
/// stay far below).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest gRPC message a worker may send (a completion carries at most
/// [`crate::service::MAX_METRICS`] metrics per split); tonic refuses larger
/// ones with `OUT_OF_RANGE` naming this limit.
pub const MAX_WORKER_MESSAGE_BYTES: usize = 1024 * 1024;

impl From<CoordinatorError> for Status {
    fn from(e: CoordinatorError) -> Self {
        use sigsweep_proto::ErrorCode;
        let msg = e.to_string();
        match e {
            CoordinatorError::Sweep(_) | CoordinatorError::Invalid(_) => {
                ErrorCode::Invalid.attach(Status::invalid_argument(msg))
            }
            CoordinatorError::UnknownSweep(_) => {
                ErrorCode::UnknownSweep.attach(Status::not_found(msg))
            }
            CoordinatorError::UnknownTrial(_) => {
                ErrorCode::UnknownTrial.attach(Status::not_found(msg))
            }
            CoordinatorError::UnknownWorker(_) => {
                ErrorCode::UnknownWorker.attach(Status::not_found(msg))
            }
            CoordinatorError::StaleGeneration { .. } => {
                ErrorCode::StaleGeneration.attach(Status::failed_precondition(msg))
            }
            // A deposed leader's write was refused: the caller retries and
            // lands on the new leader.
            CoordinatorError::Store(
                crate::store::StoreError::Unavailable(_) | crate::store::StoreError::Fenced { .. },
            ) => Status::unavailable(msg),
            CoordinatorError::Store(_) => Status::internal(msg),
        }
    }
}

/// gRPC service names as the health service reports them.
pub const SWEEP_SERVICE: &str = "sigsweep.v1.SweepService";
pub const WORKER_SERVICE: &str = "sigsweep.v1.WorkerService";

/// The coordinator that answers requests: set while this process leads,
/// empty while it stands by. Cheap to clone; clones share the slot.
#[derive(Clone)]
pub struct LeaderSlot {
    current: Arc<watch::Sender<Option<Coordinator>>>,
}

impl Default for LeaderSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl LeaderSlot {
    /// An empty slot (standby).
    pub fn new() -> Self {
        Self {
            current: Arc::new(watch::Sender::new(None)),
        }
    }

    /// A slot holding `coordinator` (single-process mode).
    pub fn leading(coordinator: Coordinator) -> Self {
        let slot = Self::new();
        slot.promote(coordinator);
        slot
    }

    /// This process now leads with `coordinator`.
    pub fn promote(&self, coordinator: Coordinator) {
        self.current.send_replace(Some(coordinator));
    }

    /// This process no longer leads: requests fail with `UNAVAILABLE`.
    pub fn demote(&self) {
        self.current.send_replace(None);
    }

    /// The leading coordinator, if this process leads.
    pub fn get(&self) -> Option<Coordinator> {
        self.current.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.current.borrow().is_some()
    }

    /// Changes of leadership (`true` while leading).
    pub fn subscribe(&self) -> watch::Receiver<Option<Coordinator>> {
        self.current.subscribe()
    }

    fn require(&self) -> Result<Coordinator, Status> {
        self.get().ok_or_else(|| {
            Status::unavailable("this coordinator is a standby (not the leader); retry")
        })
    }
}

/// Who may call the sweep and worker services (every RPC but the gRPC
/// health service, which is served on its own port).
///
/// - A caller that presented a client certificate the server verified
///   (mutual TLS) is authenticated by it.
/// - With a token, every other caller must send it
///   (`authorization: Bearer …`, compared in constant time, never logged).
/// - Without a token, loopback callers are accepted and others refused,
///   unless the operator chose [`Auth::allow_unauthenticated`] (`--insecure`).
#[derive(Clone, Default)]
pub struct Auth {
    token: Option<Arc<str>>,
    allow_unauthenticated: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .finish()
    }
}

impl Auth {
    /// Requires `token` (surrounding whitespace is ignored; must not be empty).
    pub fn with_token(token: &str) -> Self {
        let token = token.trim();
        Self {
            token: (!token.is_empty()).then(|| Arc::from(token)),
            allow_unauthenticated: false,
        }
    }

    /// Without a token, also accepts unauthenticated non-loopback callers
    /// (the operator's `--insecure`). Has no effect when a token is set.
    pub fn allow_unauthenticated(mut self, allow: bool) -> Self {
        self.allow_unauthenticated = allow;
        self
    }

    /// Whether callers may authenticate with a bearer token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Checks the caller of any sweep or worker call.
    #[allow(clippy::result_large_err)]
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if request.peer_certs().is_some_and(|certs| !certs.is_empty()) {
            // tonic only hands over certificates its verifier accepted
            // against the configured client CA.
            return Ok(());
        }
        match &self.token {
            Some(token) => {
                let sent = request
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim);
                match sent {
                    Some(sent) if constant_time_eq(sent.as_bytes(), token.as_bytes()) => Ok(()),
                    Some(_) => Err(Status::unauthenticated("invalid bearer token")),
                    None => Err(Status::unauthenticated(
                        "missing bearer token (send `authorization: Bearer <token>`; the CLI and workers take --token-file or SIGSWEEP_TOKEN_FILE)",
                    )),
                }
            }
            None if self.allow_unauthenticated => Ok(()),
            None => match request.remote_addr() {
                Some(addr) if addr.ip().is_loopback() => Ok(()),
                _ => Err(Status::unauthenticated(
                    "no token is configured on the coordinator: only loopback clients are served (configure --token-file or mutual TLS, or start the coordinator with --insecure to serve unauthenticated clients)",
                )),
            },
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// TLS for the gRPC endpoint, as PEM bytes.
#[derive(Clone)]
pub struct TlsSettings {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// With a CA, clients must present a certificate it signed (mutual TLS).
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Options of [`serve_slot`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub tls: Option<TlsSettings>,
    pub auth: Auth,
}

/// The sweep service (users, CLI).
#[derive(Clone)]
pub struct SweepApi {
    slot: LeaderSlot,
}

/// The worker service (worker processes).
#[derive(Clone)]
pub struct WorkerApi {
    slot: LeaderSlot,
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::SweepStatus, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SweepService for SweepApi {
    async fn submit_sweep(
        &self,
        request: Request<pb::SubmitSweepRequest>,
    ) -> Result<Response<pb::SubmitSweepResponse>, Status> {
        let coordinator = self.slot.require()?;
        let req = request.into_inner();
        let name = if req.source_name.is_empty() {
            "<submitted>".to_string()
        } else {
            req.source_name
        };
        let s = coordinator.submit(&req.sweep_toml, &name).await?;
        Ok(Response::new(pb::SubmitSweepResponse {
            sweep_id: s.sweep_id,
            total_trials: s.total_trials,
            created: s.created,
        }))
    }

    async fn get_sweep(
        &self,
        request: Request<pb::GetSweepRequest>,
    ) -> Result<Response<pb::SweepStatus>, Status> {
        let p = self
            .slot
            .require()?
            .progress(&request.into_inner().sweep_id)?;
        Ok(Response::new(progress_to_proto(&p, true)))
    }

    async fn list_sweeps(
        &self,
        _request: Request<pb::ListSweepsRequest>,
    ) -> Result<Response<pb::ListSweepsResponse>, Status> {
        let sweeps = self
            .slot
            .require()?
            .list()
            .iter()
            .map(|p| progress_to_proto(p, false))
            .collect();
        Ok(Response::new(pb::ListSweepsResponse { sweeps }))
    }

    type WatchSweepStream = StatusStream;

    async fn watch_sweep(
        &self,
        request: Request<pb::GetSweepRequest>,
    ) -> Result<Response<Self::WatchSweepStream>, Status> {
        let mut rx = self.slot.require()?.watch(&request.into_inner().sweep_id)?;
        let (tx, out) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let p = rx.borrow_and_update().clone();
                let terminal = p.state != crate::service::SweepRunState::Running;
                if tx.send(Ok(progress_to_proto(&p, false))).await.is_err() || terminal {
                    return;
                }
                // Throttle: at most ~10 updates a second.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        let stream: StatusStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(out));
        Ok(Response::new(stream))
    }

    async fn cancel_sweep(
        &self,
        request: Request<pb::CancelSweepRequest>,
    ) -> Result<Response<pb::SweepStatus>, Status> {
        let p = self
            .slot
            .require()?
            .cancel(&request.into_inner().sweep_id)
            .await?;
        Ok(Response::new(progress_to_proto(&p, false)))
    }

    async fn list_results(
        &self,
        request: Request<pb::ListResultsRequest>,
    ) -> Result<Response<pb::ListResultsResponse>, Status> {
        let results = self
            .slot
            .require()?
            .results(&request.into_inner().sweep_id)
            .await?
            .iter()
            .map(pb::TrialResult::from)
            .collect();
        Ok(Response::new(pb::ListResultsResponse { results }))
    }
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let req = request.into_inner();
        if req.name.len() > 253 {
            return Err(Status::invalid_argument(
                "worker name longer than 253 bytes",
            ));
        }
        let caps = req.capabilities.unwrap_or_default();
        let models = convert::declarations_from_proto(&caps.models)?;
        let coordinator = self.slot.require()?;
        coordinator.declare_models(&models)?;
        let reg = coordinator.register(
            &req.name,
            WorkerCaps {
                backend: caps.backend,
                gpus: caps.gpus,
                trials_per_gpu: caps.trials_per_gpu.max(1),
            },
        );
        let ttl = coordinator.config().lease_ttl;
        Ok(Response::new(pb::RegisterResponse {
            worker_id: reg.worker_id,
            generation: reg.generation,
            lease_ttl_ms: ttl.as_millis() as u64,
            heartbeat_interval_ms: (ttl / 3).as_millis() as u64,
        }))
    }

    async fn acquire_trial(
        &self,
        request: Request<pb::AcquireTrialRequest>,
    ) -> Result<Response<pb::AcquireTrialResponse>, Status> {
        let req = request.into_inner();
        let coordinator = self.slot.require()?;
        Ok(Response::new(acquire(&coordinator, &req).await?))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let (lease_valid, cancel) = self.slot.require()?.heartbeat(
            &req.worker_id,
            req.generation,
            &req.lease_id,
            &req.trial_id,
            req.reserved,
        )?;
        Ok(Response::new(pb::HeartbeatResponse {
            lease_valid,
            cancel,
        }))
    }

    async fn complete_trial(
        &self,
        request: Request<pb::CompleteTrialRequest>,
    ) -> Result<Response<pb::CompleteTrialResponse>, Status> {
        let req = request.into_inner();
        let coordinator = self.slot.require()?;
        let stored = coordinator
            .complete(Completion {
                worker_id: req.worker_id.clone(),
                generation: req.generation,
                lease_id: req.lease_id,
                trial_id: req.trial_id,
                test_metrics: metrics_from_proto(req.test_metrics),
                valid_metrics: metrics_from_proto(req.valid_metrics),
                selected_epoch: req.selected_epoch,
                seconds: req.seconds,
            })
            .await?;
        let next = match req.next {
            Some(mut next) => {
                next.worker_id = req.worker_id.clone();
                next.generation = req.generation;
                // The result is stored: a failure to lease the next trial
                // must not make the worker report it again.
                match acquire(&coordinator, &next).await {
                    Ok(r) => Some(r),
                    Err(s) => {
                        tracing::debug!(status = %s, "no next trial with a completion");
                        None
                    }
                }
            }
            None => None,
        };
        Ok(Response::new(pb::CompleteTrialResponse { stored, next }))
    }

    async fn fail_trial(
        &self,
        request: Request<pb::FailTrialRequest>,
    ) -> Result<Response<pb::FailTrialResponse>, Status> {
        let req = request.into_inner();
        let reason: String = req.reason.chars().take(4000).collect();
        let will_retry = if req.release {
            self.slot
                .require()?
                .release(&req.worker_id, req.generation, &req.trial_id)?;
            true
        } else {
            self.slot
                .require()?
                .fail_with(
                    &req.worker_id,
                    req.generation,
                    &req.trial_id,
                    &reason,
                    req.retryable,
                )
                .await?
        };
        Ok(Response::new(pb::FailTrialResponse { will_retry }))
    }
}

/// Answers an `AcquireTrial` (also when it rides on a completion).
async fn acquire(
    coordinator: &Coordinator,
    req: &pb::AcquireTrialRequest,
) -> Result<pb::AcquireTrialResponse, Status> {
    // At most 64 trials at once (a fused group is one configuration's seeds).
    let max = req.max_trials.clamp(1, 64) as usize;
    if req.started.len() > 64 {
        return Err(Status::invalid_argument("more than 64 started leases"));
    }
    let lost = coordinator.start_reserved(&req.worker_id, req.generation, &req.started)?;
    let got = if req.reserve {
        coordinator.reserve(&req.worker_id, req.generation, max)?
    } else {
        coordinator
            .acquire_many(
                &req.worker_id,
                req.generation,
                Duration::from_millis(req.wait_ms),
                max,
            )
            .await?
    };
    let mut got = got.iter().map(assignment_to_proto);
    let assignment = got.next();
    Ok(pb::AcquireTrialResponse {
        assignment,
        fused: got.collect(),
        lost,
    })
}

/// Serves the sweep and worker services, gRPC health and reflection on
/// `listener` until `shutdown` is cancelled, for one coordinator (plaintext,
/// no token: loopback clients only), and runs its lease expiry.
pub async fn serve(
    listener: TcpListener,
    coordinator: Coordinator,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let health_reporter = tonic_health::server::HealthReporter::new();
    let health_service = health_service(&health_reporter);
    health_reporter
        .set_serving::<SweepServiceServer<SweepApi>>()
        .await;
    health_reporter
        .set_serving::<WorkerServiceServer<WorkerApi>>()
        .await;
    let expiry = tokio::spawn(coordinator.clone().run_expiry(shutdown.clone()));
    let result = serve_slot(
        listener,
        LeaderSlot::leading(coordinator),
        ServerOptions::default(),
        health_service,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    let _ = expiry.await;
    result
}

/// The health service type [`tonic_health::server::health_reporter`] returns.
pub type HealthService =
    tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

/// A health service answering with `reporter`'s statuses.
pub fn health_service(reporter: &tonic_health::server::HealthReporter) -> HealthService {
    tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
    )
}

/// Serves the sweep and worker services (through `slot`), `health` and
/// reflection on `listener` until `shutdown` is cancelled. Runs no lease
/// expiry: whoever fills the slot runs it.
pub async fn serve_slot(
    listener: TcpListener,
    slot: LeaderSlot,
    options: ServerOptions,
    health: HealthService,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sigsweep_proto::v1::FILE_DESCRIPTOR_SET)
        .build_v1()
        .ok();

    // One check in front of every service but health: the sweep and worker
    // services and reflection.
    let auth = options.auth.clone();
    let check = move |request: Request<()>| auth.check(&request).map(|()| request);
    let sweep = InterceptedService::new(
        SweepServiceServer::new(SweepApi { slot: slot.clone() })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        check.clone(),
    );
    let worker = InterceptedService::new(
        WorkerServiceServer::new(WorkerApi { slot })
            .max_decoding_message_size(MAX_WORKER_MESSAGE_BYTES),
        check.clone(),
    );
    let reflection = reflection.map(|r| InterceptedService::new(r, check));

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &options.tls {
        let mut config = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem),
        );
        if let Some(ca) = &tls.client_ca_pem {
            // A verified client certificate authenticates its caller. With a
            // token as well, a client may present either: the certificate
            // becomes optional at the handshake and [`Auth`] asks for the
            // token from callers without one.
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(options.auth.has_token());
        }
        builder = builder.tls_config(config)?;
    }
    builder
        .add_service(health)
        .add_service(sweep)
        .add_service(worker)
        .add_optional_service(reflection)
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await
}

/// Serves only `grpc.health.v1` (plaintext) on `listener` until `shutdown`.
pub async fn serve_health(
    listener: TcpListener,
    health: HealthService,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await
}

/// Keeps the health status of the sigsweep services in line with `slot`:
/// serving while leading, not serving while standing by. Runs until
/// `shutdown`, then reports every service (`""` included) not serving.
pub async fn track_health(
    slot: LeaderSlot,
    reporter: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
) {
    use tonic_health::ServingStatus;
    let mut rx = slot.subscribe();
    loop {
        let status = if rx.borrow_and_update().is_some() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        reporter.set_service_status(SWEEP_SERVICE, status).await;
        reporter.set_service_status(WORKER_SERVICE, status).await;
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = rx.changed() => if changed.is_err() { break },
        }
    }
    for name in ["", SWEEP_SERVICE, WORKER_SERVICE] {
        reporter
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
}

/// Accepted connections with Nagle's algorithm off: small gRPC replies
/// would otherwise wait for the peer's delayed ACK (~40 ms a round trip).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Pending connections the kernel queues before the server accepts them
/// (capped by `net.core.somaxconn`). A fleet of workers that (re)connects
/// at once — a coordinator restart, a large StatefulSet starting — must
/// not overflow it.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Raises this process's open-files soft limit to its hard limit and
/// returns the new soft limit. Every worker holds one connection (one file
/// descriptor); Debian's default soft limit of 1024 would stop a coordinator
/// at about a thousand workers: past the limit the kernel keeps new
/// connections in the listen backlog and the server retries `accept` until a
/// descriptor frees, so they wait instead of being served.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Binds `addr` (use port 0 for any free port) with [`LISTEN_BACKLOG`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::Auth;
    use tonic::transport::server::TcpConnectInfo;
    use tonic::{Code, Request};

    fn from(addr: &str, token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        r.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(addr.parse().expect("addr")),
        });
        if let Some(t) = token {
            r.metadata_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        r
    }

    fn code(r: Result<(), tonic::Status>) -> Option<Code> {
        r.err().map(|s| s.code())
    }

    #[test]
    fn without_a_token_only_loopback_callers_are_served_unless_insecure() {
        let open = Auth::default();
        assert_eq!(code(open.check(&from("127.0.0.1:9", None))), None);
        assert_eq!(code(open.check(&from("[::1]:9", None))), None);
        assert_eq!(
            code(open.check(&from("10.1.2.3:9", None))),
            Some(Code::Unauthenticated)
        );
        // No peer address at all (e.g. a transport we do not know) is not
        // loopback either.
        assert_eq!(
            code(open.check(&Request::new(()))),
            Some(Code::Unauthenticated)
        );
        let insecure = Auth::default().allow_unauthenticated(true);
        assert_eq!(code(insecure.check(&from("10.1.2.3:9", None))), None);
    }

    #[test]
    fn with_a_token_every_caller_needs_it_loopback_included() {
        let auth = Auth::with_token(" s3cret\n").allow_unauthenticated(true);
        assert_eq!(code(auth.check(&from("127.0.0.1:9", Some("s3cret")))), None);
        assert_eq!(code(auth.check(&from("10.1.2.3:9", Some("s3cret")))), None);
        for (addr, token) in [
            ("127.0.0.1:9", None),
            ("127.0.0.1:9", Some("s3cre")),
            ("127.0.0.1:9", Some("s3cret2")),
            ("10.1.2.3:9", None),
        ] {
            assert_eq!(
                code(auth.check(&from(addr, token))),
                Some(Code::Unauthenticated),
                "{addr} {token:?}"
            );
        }
        assert!(!format!("{auth:?}").contains("s3cret"), "never printed");
    }
}
