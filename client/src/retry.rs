//! Calls that survive a coordinator restart or a change of leader.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::{Code, Response, Status};

use crate::{ClientError, Connection, SweepClient};

/// How long [`call`] keeps retrying an unavailable coordinator.
pub const RETRY_FOR: Duration = Duration::from_secs(60);

/// Errors worth retrying on a fresh channel: the coordinator is away,
/// overloaded, or the call was cut.
pub fn is_transient(s: &Status) -> bool {
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

/// Calls the sweep service, reconnecting with backoff while the coordinator
/// is unavailable (for up to [`RETRY_FOR`]); other errors are returned at
/// once.
pub async fn call<T, F, Fut>(connection: &Connection, mut request: F) -> Result<T, ClientError>
where
    F: FnMut(SweepClient) -> Fut,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let start = Instant::now();
    let mut backoff = Duration::from_millis(200);
    loop {
        match request(connection.sweep_client()).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(s) if s.code() == Code::Unavailable && start.elapsed() < RETRY_FOR => {
                tracing::debug!(status = %s, "coordinator unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(s) if s.code() == Code::Unavailable => {
                return Err(ClientError::Unreachable {
                    url: connection.url.clone(),
                    message: s.message().to_string(),
                });
            }
            Err(s) => return Err(ClientError::Rejected(s)),
        }
    }
}
