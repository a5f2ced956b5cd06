//! Leader election among coordinators sharing an etcd cluster (one leader,
//! any number of standbys), on etcd's election API.
//!
//! [`campaign`] grants a lease of the given TTL, keeps it alive from a
//! background task, and blocks until this candidate leads. It returns a
//! [`LeaderGuard`] whose [`LeaderGuard::lost`] future completes when
//! leadership ends:
//! - the lease could not be renewed for most of its TTL (etcd unreachable,
//!   or this process stalled): the guard gives up *before* etcd can expire
//!   the lease, so a standby never leads while this one still thinks it
//!   does, provided clocks run at similar rates;
//! - etcd reports the lease gone, or the leader key was deleted or replaced.
//!
//! A leader that loses leadership must stop acting at once (stop serving,
//! stop writing) and may campaign again. [`LeaderGuard::resign`] hands
//! leadership over immediately; dropping the guard stops renewing the lease,
//! so a standby takes over within the TTL (what a crash looks like).
//!
//! Stopping "at once" cannot cover writes already on their way (a leader
//! paused mid-request, a slow network). [`LeaderGuard::fence`] makes them
//! harmless: a [`Fence`] names the leader key and the revision etcd created
//! it at, and a store fenced with it
//! ([`crate::store::EtcdStore::with_fence`]) sends every write as a
//! transaction that requires that key at that revision. The key disappears
//! when the lease expires or is revoked (and a new campaign creates it at a
//! new revision), so etcd refuses a deposed leader's writes, even ones that
//! arrive after a standby has taken over. A refused write deposes the fence,
//! which fires [`LeaderGuard::lost`].
//!
//! While waiting, a candidate retries through etcd outages and request
//! timeouts: a standby waits as long as it takes. Campaign attempts may be
//! bounded by the client's request timeout; each retry keeps the same lease,
//! which etcd treats as the same candidate.

use std::time::Duration;

use etcd_client::{Client, GetOptions, LeaderKey, ResignOptions, SortOrder, SortTarget};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::errors::{describe_error, is_retryable};
pub use super::fence::Fence;

/// Pause between retries of a failed request.
const RETRY_DELAY: Duration = Duration::from_millis(250);
/// Bound on one lease request (grant, keep-alive, revoke) or key check.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// etcd cannot be reached right now; retrying may succeed.
    #[error("election unavailable: {0}")]
    Unavailable(String),
    /// etcd refused the request (bad arguments, permissions).
    #[error("election error: {0}")]
    Internal(String),
}

pub type ElectionResult<T> = Result<T, ElectionError>;

/// Proof of leadership, until [`LeaderGuard::lost`] completes.
#[must_use = "dropping the guard gives up leadership after the lease TTL"]
pub struct LeaderGuard {
    client: Client,
    leader_key: LeaderKey,
    lease: Lease,
    _checker: AbortOnDrop,
    candidate_id: String,
}

impl std::fmt::Debug for LeaderGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderGuard")
            .field("candidate_id", &self.candidate_id)
            .field("key", &String::from_utf8_lossy(self.leader_key.key()))
            .field("lease_id", &self.lease.id)
            .field("lost", &self.lease.lost.is_cancelled())
            .finish()
    }
}

impl LeaderGuard {
    /// Completes when leadership is lost (or given up).
    pub fn lost(&self) -> WaitForCancellationFutureOwned {
        self.lease.lost.clone().cancelled_owned()
    }

    /// A token cancelled when leadership is lost, to hand to the tasks that
    /// act as leader.
    pub fn lost_token(&self) -> CancellationToken {
        self.lease.lost.clone()
    }

    /// Whether this candidate still leads, as far as it knows.
    pub fn is_leader(&self) -> bool {
        !self.lease.lost.is_cancelled()
    }

    /// The etcd lease backing leadership, e.g. to attach keys to it.
    pub fn lease_id(&self) -> i64 {
        self.lease.id
    }

    pub fn candidate_id(&self) -> &str {
        &self.candidate_id
    }

    /// The fence of this term, to condition the leader's writes on (see
    /// [`crate::store::EtcdStore::with_fence`]). Deposing it ends leadership
    /// like losing the lease does.
    pub fn fence(&self) -> Fence {
        Fence::new(
            self.leader_key.key(),
            self.leader_key.rev(),
            self.lease.lost.clone(),
        )
    }

    /// Gives up leadership now: stops acting as leader (fires `lost`), deletes
    /// the leader key and revokes the lease, so a standby takes over at once.
    /// If etcd cannot be reached, the lease still expires within its TTL.
    pub async fn resign(self) -> ElectionResult<()> {
        self.lease.lost.cancel();
        let mut election = self.client.election_client();
        let options = ResignOptions::new().with_leader(self.leader_key.clone());
        let resigned = request(election.resign(Some(options))).await;
        let mut lease = self.client.lease_client();
        let revoked = request(lease.revoke(self.lease.id)).await;
        tracing::info!(candidate = %self.candidate_id, "resigned leadership");
        resigned.and(revoked).map(drop)
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        self.lease.lost.cancel();
    }
}

/// Campaigns for leadership of `name` (a key prefix such as
/// `/sigsweep/election/coordinator`) as `candidate_id`, holding a lease of
/// `ttl` (at least 2 s; etcd may raise it), and returns once leading.
///
/// Retries through unavailability; cancel by dropping the future. Fails only
/// on errors retrying cannot fix.
pub async fn campaign(
    client: Client,
    name: &str,
    candidate_id: &str,
    ttl: Duration,
) -> ElectionResult<LeaderGuard> {
    let ttl_secs = i64::try_from(ttl.as_secs_f64().ceil() as u64)
        .ok()
        .filter(|&s| s >= 2)
        .ok_or_else(|| {
            ElectionError::Internal(format!("election ttl {ttl:?} must be at least 2 s"))
        })?;
    loop {
        let lease = match Lease::grant(&client, ttl_secs).await {
            Ok(lease) => lease,
            Err(ElectionError::Unavailable(e)) => {
                tracing::warn!(error = %e, candidate = candidate_id, "cannot grant election lease, retrying");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(candidate = candidate_id, lease_id = lease.id, "campaigning");
        while !lease.lost.is_cancelled() {
            let mut election = client.election_client();
            let attempt = tokio::select! {
                attempt = election.campaign(name, candidate_id, lease.id) => attempt,
                () = lease.lost.cancelled() => break,
            };
            let leader_key = match attempt.map_err(map_error) {
                Ok(mut response) => response.take_leader().ok_or_else(|| {
                    ElectionError::Internal("campaign response without leader key".into())
                })?,
                Err(ElectionError::Unavailable(e)) => {
                    tracing::debug!(error = %e, candidate = candidate_id, "campaign attempt failed, retrying");
                    tokio::time::sleep(RETRY_DELAY).await;
                    continue;
                }
                Err(ElectionError::Internal(e)) if e.contains("lease not found") => break,
                Err(e) => return Err(e),
            };
            // etcd answers once every earlier candidate is gone; make sure
            // our own key (hence our lease) survived the wait.
            match key_held(&client, leader_key.key(), lease.id).await {
                Ok(true) if !lease.lost.is_cancelled() => {
                    tracing::info!(
                        candidate = candidate_id,
                        lease_id = lease.id,
                        "won leadership"
                    );
                    let checker = spawn_key_checker(
                        client.clone(),
                        leader_key.key().to_vec(),
                        lease.id,
                        lease.interval,
                        lease.lost.clone(),
                    );
                    return Ok(LeaderGuard {
                        client,
                        leader_key,
                        lease,
                        _checker: checker,
                        candidate_id: candidate_id.to_string(),
                    });
                }
                Ok(_) => break,
                Err(_) => tokio::time::sleep(RETRY_DELAY).await,
            }
        }
        tracing::warn!(
            candidate = candidate_id,
            "election lease lost while campaigning, starting over"
        );
        let mut leases = client.lease_client();
        let _ = request(leases.revoke(lease.id)).await;
    }
}

/// Campaigns, leads, and campaigns again whenever leadership is lost, until
/// `shutdown` is cancelled.
///
/// Each time this candidate wins, `lead` is called with a token that is
/// cancelled when leadership is lost or on shutdown, and the term's
/// [`Fence`] (for the leader's store writes; a write etcd refuses deposes
/// it, which counts as losing leadership). `lead` must stop acting as
/// leader (stop serving, stop writing) and return once the token is
/// cancelled. If `lead` returns while still leading (done, or an error),
/// leadership is resigned and that result returned. Campaigning retries
/// through etcd outages, so a standby waits as long as it takes.
pub async fn run_leader_loop<F, Fut, E>(
    client: Client,
    name: &str,
    candidate_id: &str,
    ttl: Duration,
    shutdown: CancellationToken,
    mut lead: F,
) -> Result<(), E>
where
    F: FnMut(CancellationToken, Fence) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: From<ElectionError>,
{
    loop {
        let guard = tokio::select! {
            guard = campaign(client.clone(), name, candidate_id, ttl) => guard?,
            () = shutdown.cancelled() => return Ok(()),
        };
        let stop = guard.lost_token().child_token();
        let link = {
            let (stop, shutdown) = (stop.clone(), shutdown.clone());
            AbortOnDrop(tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => stop.cancel(),
                    () = stop.cancelled() => {}
                }
            }))
        };
        let result = lead(stop.clone(), guard.fence()).await;
        stop.cancel();
        drop(link);
        if shutdown.is_cancelled() || result.is_err() || guard.is_leader() {
            if let Err(e) = guard.resign().await {
                tracing::warn!(candidate = candidate_id, error = %e, "cannot resign leadership; it ends with the lease");
            }
            return result;
        }
        tracing::warn!(candidate = candidate_id, "lost leadership, back to standby");
        // Best effort: revoke the old lease so the next campaign need not
        // wait for it to expire (fails harmlessly while etcd is unreachable).
        tokio::spawn(async move {
            let _ = guard.resign().await;
        });
    }
}

/// The current leader's candidate id, if any.
pub async fn current_leader(client: &Client, name: &str) -> ElectionResult<Option<String>> {
    let mut kv = client.kv_client();
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1);
    let response = request(kv.get(format!("{name}/"), Some(options))).await?;
    Ok(response
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
}

/// A granted lease and the task renewing it.
struct Lease {
    id: i64,
    interval: Duration,
    /// Cancelled when the lease may have expired or is known gone.
    lost: CancellationToken,
    _keeper: AbortOnDrop,
}

impl Lease {
    async fn grant(client: &Client, ttl_secs: i64) -> ElectionResult<Self> {
        let mut leases = client.lease_client();
        let requested_at = Instant::now();
        let granted = request(leases.grant(ttl_secs, None)).await?;
        if !granted.error().is_empty() {
            return Err(ElectionError::Internal(format!(
                "lease grant failed: {}",
                granted.error()
            )));
        }
        let ttl = Duration::from_secs(u64::try_from(granted.ttl()).unwrap_or(0).max(1));
        let interval = ttl / 3;
        let lost = CancellationToken::new();
        let keeper = AbortOnDrop(tokio::spawn(keep_alive(
            client.clone(),
            granted.id(),
            ttl,
            requested_at,
            lost.clone(),
        )));
        Ok(Self {
            id: granted.id(),
            interval,
            lost,
            _keeper: keeper,
        })
    }
}

/// Renews the lease every third of its TTL. Cancels `lost` when the lease
/// is gone, or when it was last renewed (counting from the request's send
/// time, which is earlier than etcd's view) more than four fifths of the
/// TTL ago — before etcd can expire it.
async fn keep_alive(
    client: Client,
    id: i64,
    ttl: Duration,
    mut renewed_at: Instant,
    lost: CancellationToken,
) {
    let safe_for = ttl * 4 / 5;
    let interval = ttl / 3;
    let mut next = renewed_at + interval;
    loop {
        let deadline = renewed_at + safe_for;
        tokio::select! {
            () = tokio::time::sleep_until(next.min(deadline)) => {}
            () = lost.cancelled() => return,
        }
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(
                lease_id = id,
                "election lease not renewed in time, giving up leadership"
            );
            lost.cancel();
            return;
        }
        let mut leases = client.lease_client();
        match tokio::time::timeout(deadline - now, leases.keep_alive(id)).await {
            Ok(Ok(_)) => {
                renewed_at = now;
                next = now + interval;
            }
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(e))) => {
                tracing::warn!(lease_id = id, error = %e, "election lease gone");
                lost.cancel();
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(lease_id = id, error = %e, "lease keep-alive failed, retrying");
                next = Instant::now() + RETRY_DELAY;
            }
            Err(_) => next = Instant::now(),
        }
    }
}

/// Checks every `interval` that the leader key still exists under our lease
/// (an operator may delete it); cancels `lost` if not.
fn spawn_key_checker(
    client: Client,
    key: Vec<u8>,
    lease_id: i64,
    interval: Duration,
    lost: CancellationToken,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = lost.cancelled() => return,
            }
            if let Ok(false) = key_held(&client, &key, lease_id).await {
                tracing::warn!(
                    lease_id,
                    "leader key deleted or replaced, giving up leadership"
                );
                lost.cancel();
                return;
            }
        }
    }))
}

/// Whether `key` exists and is attached to `lease_id`.
async fn key_held(client: &Client, key: &[u8], lease_id: i64) -> ElectionResult<bool> {
    let mut kv = client.kv_client();
    let response = request(kv.get(key, None)).await?;
    Ok(response
        .kvs()
        .first()
        .is_some_and(|kv| kv.lease() == lease_id))
}

async fn request<T>(
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> ElectionResult<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(result) => result.map_err(map_error),
        Err(_) => Err(ElectionError::Unavailable(format!(
            "etcd request timed out after {REQUEST_TIMEOUT:?}"
        ))),
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn map_error(error: etcd_client::Error) -> ElectionError {
    if is_retryable(&error) {
        ElectionError::Unavailable(describe_error(&error))
    } else {
        ElectionError::Internal(describe_error(&error))
    }
}
