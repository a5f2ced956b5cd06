//! Reporting finished trials: complete, fail or release, retried through
//! coordinator outages.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic::Status;

use sigsweep_proto::v1 as pb;

use crate::backend::BackendKind;
use crate::trial::{Prediction, TrainError, TrialOutcome};

use sigsweep_client::{ErrorCode, is_transient};

use super::config::{AgentConfig, AgentError};
use super::convert::metrics;
use super::session::{Finished, Session, register, send_acquire};

/// Most bytes of a training program's output sent to the coordinator (the
/// coordinator's limit).
const MAX_LOG: usize = 64 * 1024;

/// Reports a finished group's outcomes; `next`, when given, rides on the
/// last completion (or goes on its own after a failure) and its answer is
/// returned.
pub(super) async fn report_finished(
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
        // A training program's output: its end goes to the coordinator, so
        // that `sigsweep logs` shows it from anywhere.
        let log = if spec.command.is_some() {
            let path = super::convert::program_paths(config, &spec.trial_id).1;
            tokio::task::spawn_blocking(move || {
                crate::models::command::log_tail(&path, MAX_LOG).unwrap_or_default()
            })
            .await
            .unwrap_or_default()
        } else {
            String::new()
        };
        carried = report_outcome(
            session,
            config,
            shutdown,
            (lease_id, &spec.trial_id),
            (result, log),
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
pub(super) async fn report_outcome(
    session: &mut Session,
    config: &AgentConfig,
    shutdown: &CancellationToken,
    (lease_id, trial_id): (&str, &str),
    (result, log): (Result<TrialOutcome, TrainError>, String),
    released: bool,
    next: Option<pb::AcquireTrialRequest>,
) -> Result<Option<pb::AcquireTrialResponse>, AgentError> {
    // Predictions and weights go to the artifacts directory; the
    // completion names them.
    let (result, predictions, weights) = match result {
        Ok(mut outcome) if outcome.predictions.is_some() || outcome.weights.is_some() => {
            let (p, w) = (outcome.predictions.take(), outcome.weights.take());
            // File I/O stays off the async runtime.
            let (artifacts, id) = (config.artifacts.clone(), trial_id.to_string());
            let written = tokio::task::spawn_blocking(move || {
                write_artifacts(artifacts.as_deref(), &id, p.as_deref(), w.as_ref())
            })
            .await
            .unwrap_or_else(|e| Err(TrainError::Backend(format!("writing artifacts: {e}"))));
            match written {
                Ok((p, w)) => (Ok(outcome), p, w),
                Err(e) => (Err(e), String::new(), String::new()),
            }
        }
        other => (other, String::new(), String::new()),
    };
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
                predictions,
                weights,
                history: outcome.epochs.iter().map(pb::EpochMetrics::from).collect(),
                hardware: hardware(config, outcome.strategy.as_deref()),
                log: log.clone(),
                program_selected: outcome.program_selected,
            };
            let reply = report_with_retry(session, config, shutdown, |s| {
                let mut r = req.clone();
                r.worker_id = s.worker_id.clone();
                r.generation = s.generation;
                let mut c = s.client.clone();
                async move { c.complete_trial(r).await.map(|r| r.into_inner()) }
            })
            .await?;
            match reply {
                Ok(r) => Ok(r.next),
                // A result the coordinator cannot take (out of its bounds,
                // larger than a message): the same trial would give it again,
                // so it fails for good, saying why, rather than being dropped
                // and leased again until its worker counts as lost.
                Err(s) if refused_result(&s) => {
                    let e = TrainError::Refused(s.message().to_string());
                    Box::pin(report_outcome(
                        session,
                        config,
                        shutdown,
                        (lease_id, trial_id),
                        (Err(e), log),
                        released,
                        req.next.clone(),
                    ))
                    .await
                }
                Err(_) => Ok(None),
            }
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
                log: log.clone(),
            };
            // Rejected for good: the coordinator has moved on (logged).
            let _ = report_with_retry(session, config, shutdown, |s| {
                let mut r = req.clone();
                r.worker_id = s.worker_id.clone();
                r.generation = s.generation;
                let mut c = s.client.clone();
                async move { c.fail_trial(r).await.map(|_| ()) }
            })
            .await?;
            // A failure carries no piggybacked request: send it on its own
            // (the start of a reservation, the next reservation or trial).
            Ok(match next {
                Some(n) if !shutdown.is_cancelled() => send_acquire(session, n).await,
                _ => None,
            })
        }
    }
}

/// Whether the coordinator refused a completion for what it carries (a
/// result out of its bounds, or a message over its size limit), not for
/// who sent it (a stale generation, a trial leased elsewhere).
fn refused_result(s: &Status) -> bool {
    ErrorCode::of(s) == Some(ErrorCode::Invalid) || s.code() == tonic::Code::OutOfRange
}

/// Sends a final report, retrying through coordinator outages (and a
/// re-registration if the coordinator restarted meanwhile). `Err` with the
/// status when the coordinator rejected it for good.
pub(super) async fn report_with_retry<F, Fut, T>(
    session: &mut Session,
    config: &AgentConfig,
    shutdown: &CancellationToken,
    mut send: F,
) -> Result<Result<T, Status>, AgentError>
where
    F: FnMut(&Session) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let start = Instant::now();
    loop {
        match send(session).await {
            Ok(reply) => return Ok(Ok(reply)),
            Err(s) if ErrorCode::of(&s) == Some(ErrorCode::UnknownWorker) => {
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
                return Ok(Err(s));
            }
        }
    }
}

/// Writes a trial's predictions (one JSON line per test example, to
/// `ARTIFACTS/predictions/<trial_id>.jsonl`) and weights (to
/// `ARTIFACTS/weights/<trial_id>.safetensors`) and returns those paths
/// relative to `ARTIFACTS` (empty for what the trial did not save). A
/// worker without an artifacts directory cannot keep them: the trial fails,
/// retryably (another worker may have one).
fn write_artifacts(
    artifacts: Option<&std::path::Path>,
    trial_id: &str,
    predictions: Option<&[Prediction]>,
    weights: Option<&crate::trial::Weights>,
) -> Result<(String, String), TrainError> {
    let artifacts = artifacts.ok_or_else(|| {
        TrainError::Backend(
            "the sweep saves predictions or weights ([training] save) but this worker has no --artifacts directory".into(),
        )
    })?;
    if trial_id.is_empty()
        || !trial_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(TrainError::Backend(format!(
            "trial id `{trial_id}` is not a file name"
        )));
    }
    let mut paths = (String::new(), String::new());
    if let Some(predictions) = predictions {
        let text = crate::trial::predictions_jsonl(predictions)?;
        let relative = sigsweep_types::record::predictions_path(trial_id);
        write_atomically(artifacts, &relative, text.as_bytes())?;
        paths.0 = relative;
    }
    if let Some(weights) = weights {
        let relative = sigsweep_types::record::weights_path(trial_id);
        write_atomically(artifacts, &relative, &weights.to_safetensors()?)?;
        paths.1 = relative;
    }
    Ok(paths)
}

/// Writes `ARTIFACTS/relative` through a temporary file beside it, so a
/// reader never sees half a file.
fn write_atomically(
    artifacts: &std::path::Path,
    relative: &str,
    bytes: &[u8],
) -> Result<(), TrainError> {
    let path = artifacts.join(relative);
    let io =
        |e: std::io::Error| TrainError::Backend(format!("cannot write {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(artifacts);
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(())
}

/// What trained a trial, for the report's Reproducibility section: the
/// machine's CPU and GPU models (read once), the backend with its compute
/// threads or how this build computes on it, a GPU shared with other
/// trials' processes, and `strategy` (seed-fused, data parallel).
fn hardware(config: &AgentConfig, strategy: Option<&str>) -> String {
    static MACHINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let machine = MACHINE.get_or_init(sigsweep_types::host::hardware);
    sigsweep_types::host::bounded_hardware(&format!("{machine}; {}", compute(config, strategy)))
}

/// The part of [`hardware`] this worker decides, after the machine.
fn compute(config: &AgentConfig, strategy: Option<&str>) -> String {
    let mut parts = vec![match config.backend {
        BackendKind::Cpu => format!("trained on cpu, {} thread(s)", config.threads),
        BackendKind::Cuda => "trained on cuda".to_string(),
    }];
    parts.extend(config.backend.numerics().map(str::to_string));
    if config.backend == BackendKind::Cuda && config.trials_per_gpu > 1 {
        parts.push(format!(
            "its GPU shared by up to {} trial processes (times include the sharing)",
            config.trials_per_gpu
        ));
    }
    parts.extend(strategy.map(str::to_string));
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::{compute, refused_result};
    use crate::agent::config::AgentConfig;
    use crate::backend::BackendKind;
    use crate::execute::Plan;

    /// A trial's record says how it trained: alone on the CPU with its
    /// threads; on CUDA with this build's kernel choices and a shared GPU;
    /// seed-fused or data parallel when it was.
    #[test]
    fn the_record_says_how_a_trial_trained() {
        let cpu = AgentConfig {
            threads: 1,
            ..AgentConfig::default()
        };
        assert_eq!(compute(&cpu, None), "trained on cpu, 1 thread(s)");
        let fused = Plan::Fused { seeds: 10 }.describe();
        let text = compute(&cpu, fused.as_deref());
        assert!(
            text.starts_with("trained on cpu, 1 thread(s); seed-fused:")
                && text.contains("the numbers of the seed trained alone"),
            "{text}"
        );
        let shared = AgentConfig {
            backend: BackendKind::Cuda,
            trials_per_gpu: 8,
            ..AgentConfig::default()
        };
        let dp = Plan::DataParallel { devices: 2 }.describe();
        let text = compute(&shared, dp.as_deref());
        let fusion = if cfg!(feature = "cuda-fusion") {
            "kernel fusion on"
        } else {
            "no kernel fusion"
        };
        assert!(
            text.starts_with(
                "trained on cuda; burn-cuda kernels fixed at build time (no autotune)"
            ) && text.contains(fusion)
                && text.contains("shared by up to 8 trial processes")
                && text
                    .ends_with("data parallel over 2 devices (gradients all-reduced every step)"),
            "{text}"
        );
        assert_eq!(Plan::Plain.describe(), None);
    }

    /// A completion refused for what it carries fails its trial; one
    /// refused for who sent it (the trial moved on) is dropped.
    #[test]
    fn only_a_refused_result_fails_its_trial() {
        use sigsweep_client::ErrorCode;
        use tonic::Status;
        assert!(refused_result(
            &ErrorCode::Invalid.attach(Status::invalid_argument("history too large"))
        ));
        assert!(refused_result(&Status::out_of_range(
            "decoded message length too large"
        )));
        for moved_on in [
            ErrorCode::StaleGeneration.attach(Status::failed_precondition("stale")),
            ErrorCode::UnknownTrial.attach(Status::not_found("unknown trial")),
            Status::invalid_argument("no typed code: not ours to judge"),
        ] {
            assert!(!refused_result(&moved_on), "{moved_on:?}");
        }
    }
}
