//! The worker service: register, acquire, heartbeat, complete, fail,
//! release.

use std::time::Duration;

use tonic::{Request, Response, Status};

use sigsweep_proto::v1 as pb;
use sigsweep_proto::v1::worker_service_server::WorkerService;

use super::convert::{self, assignment_to_proto, metrics_from_proto};
use super::leader::LeaderSlot;
use crate::service::{Completion, Coordinator, WorkerCaps};

/// The worker service (worker processes).
#[derive(Clone)]
pub struct WorkerApi {
    pub(super) slot: LeaderSlot,
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
        )?;
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
        if !req.log.is_empty() {
            coordinator
                .put_log(&req.worker_id, req.generation, &req.trial_id, &req.log)
                .await?;
        }
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
                predictions: (!req.predictions.is_empty()).then_some(req.predictions),
                weights: (!req.weights.is_empty()).then_some(req.weights),
                history: req
                    .history
                    .iter()
                    .map(pb::EpochMetrics::to_record)
                    .collect(),
                hardware: (!req.hardware.is_empty()).then_some(req.hardware),
                program_selected: req.program_selected,
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
        if !req.log.is_empty() {
            self.slot
                .require()?
                .put_log(&req.worker_id, req.generation, &req.trial_id, &req.log)
                .await?;
        }
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
