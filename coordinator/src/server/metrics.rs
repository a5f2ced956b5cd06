//! Prometheus metrics at `GET /metrics` (text exposition format 0.0.4) over
//! plain HTTP/1.1: a deliberately tiny responder (one request per
//! connection, bounded request size and time), enough for Prometheus and
//! `curl`, with no HTTP framework.
//!
//! Every value is read from the [`LeaderSlot`] when scraped; a standby
//! reports `sigsweep_leader 0` and no sweep gauges.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::LeaderSlot;
use crate::service::SweepRunState;

/// Largest request head read.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A client must send its request within this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most requests answered at once (a Prometheus scrapes one at a time).
const MAX_SCRAPES: usize = 64;

/// Renders the current metrics.
pub fn render(slot: &LeaderSlot) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {value}");
    };
    let coordinator = slot.get();
    gauge(
        "sigsweep_leader",
        "1 if this coordinator leads (serves requests), 0 while standby.",
        u64::from(coordinator.is_some()),
    );
    if let Some(c) = coordinator {
        let sweeps = c.list();
        let sum = |f: fn(&crate::service::SweepProgress) -> u32| -> u64 {
            sweeps.iter().map(|p| u64::from(f(p))).sum()
        };
        gauge(
            "sigsweep_trials_completed",
            "Trials completed, over the sweeps this coordinator knows.",
            sum(|p| p.completed),
        );
        gauge(
            "sigsweep_trials_failed",
            "Trials failed for good (retries exhausted).",
            sum(|p| p.failed),
        );
        gauge(
            "sigsweep_trials_running",
            "Trials leased to a worker now.",
            sum(|p| p.running),
        );
        gauge(
            "sigsweep_trials_queued",
            "Trials waiting for a worker.",
            sum(|p| p.queued),
        );
        gauge(
            "sigsweep_sweeps_running",
            "Sweeps still running.",
            sweeps
                .iter()
                .filter(|p| p.state == SweepRunState::Running)
                .count() as u64,
        );
        gauge(
            "sigsweep_workers_live",
            "Workers seen within the last lease TTL.",
            c.live_workers() as u64,
        );
    }
    out
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve_metrics(listener: TcpListener, slot: LeaderSlot, shutdown: CancellationToken) {
    let scrapes = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Past the limit a connection is closed at once: a flood of slow
        // requests holds at most MAX_SCRAPES descriptors, not the ones the
        // gRPC server needs.
        let Ok(permit) = scrapes.clone().try_acquire_owned() else {
            continue;
        };
        let slot = slot.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = respond(stream, &slot).await {
                tracing::debug!(error = %e, "metrics: request failed");
            }
        });
    }
}

async fn respond(mut stream: TcpStream, slot: &LeaderSlot) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let head = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(false);
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if buf.len() > MAX_REQUEST_BYTES {
                return Ok(false);
            }
        }
    })
    .await;
    let complete = matches!(head, Ok(Ok(true)));
    let line = String::from_utf8_lossy(buf.split(|&b| b == b'\n').next().unwrap_or_default())
        .trim()
        .to_string();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = if !complete {
        ("400 Bad Request", "text/plain", "bad request\n".to_string())
    } else if method != "GET" && method != "HEAD" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        )
    } else if path == "/metrics" {
        (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(slot),
        )
    } else {
        ("404 Not Found", "text/plain", "see /metrics\n".to_string())
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
