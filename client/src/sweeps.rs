//! The sweep service with typed answers.

use sigsweep_proto::v1 as pb;
use sigsweep_types::ResultRecord;

use crate::{ClientError, Connection, call};

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

    /// Per-trial results of `sweep`, as the result record.
    pub async fn results(&self, sweep: &str) -> Result<Vec<ResultRecord>, ClientError> {
        let list = call(&self.connection, |mut c| {
            let sweep_id = sweep.to_string();
            async move { c.list_results(pb::ListResultsRequest { sweep_id }).await }
        })
        .await?;
        Ok(list.results.iter().map(|r| r.to_record(sweep)).collect())
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
