//! One leased group from start to end: train it on its own thread while
//! heartbeating, and react to cancellation, lost leases and drains.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use sigsweep_proto::v1 as pb;

use crate::trial::{EpochReport, TrainError, TrialOutcome, TrialRequest};

use super::config::{AgentConfig, AgentError};
use super::convert::{metrics, trial_request, with_checkpoint, with_program};
use super::report::report_finished;
use super::session::{
    Finished, Group, Session, group_of, register, release_group, renew_reservation, send_acquire,
};

pub(super) enum Ending {
    Finished(Vec<Result<TrialOutcome, TrainError>>),
    LeaseLost,
}

/// Trains `group` while heartbeating its leases (and the reservation's).
/// Once training has started, reports `previous` and reserves the next
/// group into `reserved` in the same call. Returns the group's outcomes,
/// unreported (None when its leases were lost).
pub(super) async fn run_assignments(
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
    // A training program has side effects (its output directory, its
    // metrics file): a reservation another worker may have taken over is
    // confirmed started before the program runs, not after.
    let mut previous = previous;
    let confirm_first = from_reservation && leases.iter().any(|(_, spec)| spec.command.is_some());
    if confirm_first
        && let Err(lost) = confirm_start(
            session,
            config,
            shutdown,
            previous.take(),
            &leases,
            true,
            reserved,
        )
        .await?
    {
        tracing::info!(trial = %label, "reservation was taken over before its program started");
        if let Some(g) = lost {
            release_group(session, &g).await;
        }
        return Ok(None);
    }

    let cancel = Arc::new(AtomicBool::new(false));
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<(usize, EpochReport)>();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let backend = config.backend;
    let thread_cancel = cancel.clone();
    let artifacts = config.artifacts.clone();
    let requests: Vec<Result<TrialRequest, TrainError>> = leases
        .iter()
        .map(|(_, spec)| {
            trial_request(spec)
                .and_then(|r| with_checkpoint(r, artifacts.as_deref()))
                .map(|r| with_program(r, spec, config))
        })
        .collect();
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
    if !confirm_first
        && let Err(lost) = confirm_start(
            session,
            config,
            shutdown,
            previous.take(),
            &leases,
            from_reservation,
            reserved,
        )
        .await?
    {
        // Taken over before it started: the other worker runs it.
        tracing::info!(trial = %label, "reservation was taken over; stopping");
        cancel.store(true, Ordering::Relaxed);
        let _ = done_rx.await;
        if let Some(g) = lost {
            release_group(session, &g).await;
        }
        return Ok(None);
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

/// Reports `previous` (when given), tells the coordinator that `leases`
/// started (when they were a reservation) and reserves the next group into
/// `reserved` (when none is held), in one call. `Err` when this group's
/// reservation was taken over by another worker, with the group the answer
/// leased (to hand back).
async fn confirm_start(
    session: &mut Session,
    config: &AgentConfig,
    shutdown: &CancellationToken,
    previous: Option<Finished>,
    leases: &[(String, pb::TrialSpec)],
    from_reservation: bool,
    reserved: &mut Option<Group>,
) -> Result<Result<(), Option<Group>>, AgentError> {
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
            return Ok(Err(group_of(reply)));
        }
        if reserved.is_none() {
            *reserved = group_of(reply);
        }
    }
    Ok(Ok(()))
}
