//! The gRPC edge: tonic services over a [`Coordinator`], conversion between
//! wire and domain types, and the one place where domain errors become
//! `tonic::Status` codes.

mod convert;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use sigsweep_proto::v1 as pb;
use sigsweep_proto::v1::sweep_service_server::{SweepService, SweepServiceServer};
use sigsweep_proto::v1::worker_service_server::{WorkerService, WorkerServiceServer};

use crate::service::{Completion, Coordinator, CoordinatorError, WorkerCaps};
use convert::{assignment_to_proto, metrics_from_proto, progress_to_proto, result_to_proto};

/// Largest gRPC message accepted (sweep files and result lists stay far below).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

impl From<CoordinatorError> for Status {
    fn from(e: CoordinatorError) -> Self {
        let msg = e.to_string();
        match e {
            CoordinatorError::Sweep(_) | CoordinatorError::Invalid(_) => Status::invalid_argument(msg),
            CoordinatorError::UnknownSweep(_) | CoordinatorError::UnknownTrial(_) => {
                Status::not_found(msg)
            }
            CoordinatorError::UnknownWorker(_) => Status::not_found(msg),
            CoordinatorError::StaleGeneration { .. } => Status::failed_precondition(msg),
            CoordinatorError::Store(crate::store::StoreError::Unavailable(_)) => {
                Status::unavailable(msg)
            }
            CoordinatorError::Store(_) => Status::internal(msg),
        }
    }
}

/// The sweep service (users, CLI).
#[derive(Clone)]
pub struct SweepApi {
    coordinator: Coordinator,
}

/// The worker service (worker processes).
#[derive(Clone)]
pub struct WorkerApi {
    coordinator: Coordinator,
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::SweepStatus, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SweepService for SweepApi {
    async fn submit_sweep(
        &self,
        request: Request<pb::SubmitSweepRequest>,
    ) -> Result<Response<pb::SubmitSweepResponse>, Status> {
        let req = request.into_inner();
        let name = if req.source_name.is_empty() {
            "<submitted>".to_string()
        } else {
            req.source_name
        };
        let s = self.coordinator.submit(&req.sweep_toml, &name).await?;
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
        let p = self.coordinator.progress(&request.into_inner().sweep_id)?;
        Ok(Response::new(progress_to_proto(&p, true)))
    }

    async fn list_sweeps(
        &self,
        _request: Request<pb::ListSweepsRequest>,
    ) -> Result<Response<pb::ListSweepsResponse>, Status> {
        let sweeps = self
            .coordinator
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
        let mut rx = self.coordinator.watch(&request.into_inner().sweep_id)?;
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
        let p = self.coordinator.cancel(&request.into_inner().sweep_id).await?;
        Ok(Response::new(progress_to_proto(&p, false)))
    }

    async fn list_results(
        &self,
        request: Request<pb::ListResultsRequest>,
    ) -> Result<Response<pb::ListResultsResponse>, Status> {
        let results = self
            .coordinator
            .results(&request.into_inner().sweep_id)
            .await?
            .iter()
            .map(result_to_proto)
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
            return Err(Status::invalid_argument("worker name longer than 253 bytes"));
        }
        let caps = req.capabilities.unwrap_or_default();
        let reg = self.coordinator.register(
            &req.name,
            WorkerCaps {
                backend: caps.backend,
                gpus: caps.gpus,
                trials_per_gpu: caps.trials_per_gpu.max(1),
            },
        );
        let ttl = self.coordinator.config().lease_ttl;
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
        // At most 64 trials at once (a fused group is one configuration's seeds).
        let max = req.max_trials.clamp(1, 64) as usize;
        let mut got = self
            .coordinator
            .acquire_many(
                &req.worker_id,
                req.generation,
                Duration::from_millis(req.wait_ms),
                max,
            )
            .await?
            .into_iter()
            .map(|a| assignment_to_proto(&a));
        let assignment = got.next();
        Ok(Response::new(pb::AcquireTrialResponse {
            assignment,
            fused: got.collect(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let (lease_valid, cancel) = self.coordinator.heartbeat(
            &req.worker_id,
            req.generation,
            &req.lease_id,
            &req.trial_id,
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
        let stored = self
            .coordinator
            .complete(Completion {
                worker_id: req.worker_id,
                generation: req.generation,
                lease_id: req.lease_id,
                trial_id: req.trial_id,
                test_metrics: metrics_from_proto(req.test_metrics),
                valid_metrics: metrics_from_proto(req.valid_metrics),
                selected_epoch: req.selected_epoch,
                seconds: req.seconds,
            })
            .await?;
        Ok(Response::new(pb::CompleteTrialResponse { stored }))
    }

    async fn fail_trial(
        &self,
        request: Request<pb::FailTrialRequest>,
    ) -> Result<Response<pb::FailTrialResponse>, Status> {
        let req = request.into_inner();
        let reason: String = req.reason.chars().take(4000).collect();
        let will_retry = if req.release {
            self.coordinator
                .release(&req.worker_id, req.generation, &req.trial_id)?;
            true
        } else {
            self.coordinator
                .fail(&req.worker_id, req.generation, &req.trial_id, &reason)
                .await?
        };
        Ok(Response::new(pb::FailTrialResponse { will_retry }))
    }
}

/// Serves the sweep and worker services, gRPC health and reflection on
/// `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    coordinator: Coordinator,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<SweepServiceServer<SweepApi>>()
        .await;
    health_reporter
        .set_serving::<WorkerServiceServer<WorkerApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sigsweep_proto::v1::FILE_DESCRIPTOR_SET)
        .build_v1()
        .ok();

    let sweep = SweepServiceServer::new(SweepApi {
        coordinator: coordinator.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let worker = WorkerServiceServer::new(WorkerApi {
        coordinator: coordinator.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);

    let expiry = tokio::spawn(coordinator.clone().run_expiry(shutdown.clone()));
    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(sweep)
        .add_service(worker)
        .add_optional_service(reflection);
    let result = router
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    let _ = expiry.await;
    result
}

/// Binds `addr` (use port 0 for any free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
