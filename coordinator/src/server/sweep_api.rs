//! The sweep service: submit, status, watch, cancel, results.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tonic::{Request, Response, Status};

use sigsweep_proto::v1 as pb;
use sigsweep_proto::v1::sweep_service_server::SweepService;

use super::convert::progress_to_proto;

/// Most results in one page of `ListResults`.
pub const MAX_RESULTS_PAGE: usize = 1000;
/// Most bytes of results in one page (a page holds at least one result,
/// which the worker message limit keeps under 1 MiB).
pub const MAX_RESULTS_PAGE_BYTES: usize = 4 * 1024 * 1024;
use super::leader::LeaderSlot;

/// The sweep service (users, CLI).
#[derive(Clone)]
pub struct SweepApi {
    pub(super) slot: LeaderSlot,
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

    async fn get_trial_log(
        &self,
        request: Request<pb::GetTrialLogRequest>,
    ) -> Result<Response<pb::TrialLog>, Status> {
        let req = request.into_inner();
        let text = self
            .slot
            .require()?
            .trial_log(&req.sweep_id, &req.trial_id)
            .await?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "trial `{}` has no log yet (a worker reports it when an attempt ends; a local run's live log is artifacts/logs/<trial>.log)",
                    req.trial_id
                ))
            })?;
        Ok(Response::new(pb::TrialLog { text }))
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
        let req = request.into_inner();
        let coordinator = self.slot.require()?;
        if req.page_size == 0 && req.page_token.is_empty() {
            let results = coordinator
                .results(&req.sweep_id)
                .await?
                .iter()
                .map(pb::TrialResult::from)
                .collect();
            return Ok(Response::new(pb::ListResultsResponse {
                results,
                next_page_token: String::new(),
            }));
        }
        let from = if req.page_token.is_empty() {
            0
        } else {
            req.page_token.parse::<usize>().map_err(|_| {
                Status::invalid_argument("page_token is not one this coordinator gave")
            })?
        };
        let limit = (req.page_size as usize).clamp(1, MAX_RESULTS_PAGE);
        let (page, mut next) = coordinator.results_page(&req.sweep_id, from, limit).await?;
        // Within the page's byte budget (a result may be up to about 1 MiB).
        let mut results = Vec::with_capacity(page.len());
        let mut bytes = 0;
        for (index, r) in &page {
            let r = pb::TrialResult::from(r);
            let len = prost::Message::encoded_len(&r);
            if !results.is_empty() && bytes + len > MAX_RESULTS_PAGE_BYTES {
                next = Some(*index);
                break;
            }
            bytes += len;
            results.push(r);
        }
        Ok(Response::new(pb::ListResultsResponse {
            results,
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }
}
