//! The sweep service with typed answers.

use sigsweep_proto::v1 as pb;
use sigsweep_types::ResultRecord;

use crate::{ClientError, Connection, call};

/// Results asked for per `ListResults` page (the coordinator may send
/// fewer, to keep a page under its byte budget).
const RESULTS_PAGE: u32 = 500;

/// The sweep service's calls over one [`Connection`], each retried through
/// coordinator outages ([`call`]).
#[derive(Debug, Clone)]
pub struct SweepApi {
    pub connection: Connection,
}

impl SweepApi {
    pub fn new(connection: Connection) -> Self {
        Self { connection }
    }

    /// Submits a sweep file's text (`source` names it in errors).
    pub async fn submit(
        &self,
        sweep_toml: &str,
        source: &str,
    ) -> Result<pb::SubmitSweepResponse, ClientError> {
        let request = pb::SubmitSweepRequest {
            sweep_toml: sweep_toml.to_string(),
            source_name: source.to_string(),
        };
        call(&self.connection, |mut c| {
            let request = request.clone();
            async move { c.submit_sweep(request).await }
        })
        .await
    }

    pub async fn status(&self, sweep: &str) -> Result<pb::SweepStatus, ClientError> {
        call(&self.connection, |mut c| {
            let sweep_id = sweep.to_string();
            async move { c.get_sweep(pb::GetSweepRequest { sweep_id }).await }
        })
        .await
    }

    pub async fn list(&self) -> Result<Vec<pb::SweepStatus>, ClientError> {
        let list = call(&self.connection, |mut c| async move {
            c.list_sweeps(pb::ListSweepsRequest {}).await
        })
        .await?;
        Ok(list.sweeps)
    }

    pub async fn cancel(&self, sweep: &str) -> Result<pb::SweepStatus, ClientError> {
        call(&self.connection, |mut c| {
            let sweep_id = sweep.to_string();
            async move { c.cancel_sweep(pb::CancelSweepRequest { sweep_id }).await }
        })
        .await
    }

    /// The status stream of `sweep` (ends when the sweep does, or with an
    /// error when the coordinator goes away: watch again).
    pub async fn watch(
        &self,
        sweep: &str,
    ) -> Result<tonic::Streaming<pb::SweepStatus>, ClientError> {
        call(&self.connection, |mut c| {
            let sweep_id = sweep.to_string();
            async move { c.watch_sweep(pb::GetSweepRequest { sweep_id }).await }
        })
        .await
    }

    /// Per-trial results of `sweep`, as the result record, fetched a page
    /// at a time (a sweep's results can be far larger than one message).
    pub async fn results(&self, sweep: &str) -> Result<Vec<ResultRecord>, ClientError> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = call(&self.connection, |mut c| {
                let req = pb::ListResultsRequest {
                    sweep_id: sweep.to_string(),
                    page_size: RESULTS_PAGE,
                    page_token: page_token.clone(),
                };
                async move { c.list_results(req).await }
            })
            .await?;
            out.extend(page.results.iter().map(|r| r.to_record(sweep)));
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = page.next_page_token;
        }
    }

    /// The end of a training program trial's output, as its worker
    /// reported it when the last attempt ended.
    pub async fn trial_log(&self, sweep: &str, trial: &str) -> Result<String, ClientError> {
        let log = call(&self.connection, |mut c| {
            let req = pb::GetTrialLogRequest {
                sweep_id: sweep.to_string(),
                trial_id: trial.to_string(),
            };
            async move { c.get_trial_log(req).await }
        })
        .await?;
        Ok(log.text)
    }
}
