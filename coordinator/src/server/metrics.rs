//! Prometheus metrics at `GET /metrics` over plain HTTP/1.1 (hyper), in the
//! OpenMetrics text format (prometheus-client).
//!
//! Every value is read from the [`LeaderSlot`] when scraped; a standby
//! reports `sigsweep_leader 0` and no sweep gauges. With a token configured
//! a scrape must send it (`Authorization: Bearer …`, [`Auth::check_scrape`]):
//! the counts are state like any other.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{Auth, LeaderSlot};
use crate::service::{SweepProgress, SweepRunState};

/// Largest request head read (hyper's smallest buffer limit).
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A client must send its request head within this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this long, answered or not (a client that
/// does not read its answer holds nothing longer).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// Most requests answered at once (a Prometheus scrapes one at a time).
const MAX_SCRAPES: usize = 64;
/// The exposition's content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The gauges, read from the slot at each scrape.
struct Gauges {
    slot: LeaderSlot,
}

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gauges").finish_non_exhaustive()
    }
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let mut gauge = |name: &str, help: &str, value: usize| {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
        };
        let coordinator = self.slot.get();
        gauge(
            "leader",
            "1 if this coordinator leads (serves requests), 0 while standby.",
            usize::from(coordinator.is_some()),
        )?;
        let Some(c) = coordinator else {
            return Ok(());
        };
        let sweeps = c.list();
        let sum =
            |f: fn(&SweepProgress) -> u32| -> usize { sweeps.iter().map(|p| f(p) as usize).sum() };
        gauge(
            "trials_completed",
            "Trials completed, over the sweeps this coordinator knows.",
            sum(|p| p.completed),
        )?;
        gauge(
            "trials_failed",
            "Trials failed for good (retries exhausted).",
            sum(|p| p.failed),
        )?;
        gauge(
            "trials_running",
            "Trials leased to a worker now.",
            sum(|p| p.running),
        )?;
        gauge(
            "trials_queued",
            "Trials waiting for a worker.",
            sum(|p| p.queued),
        )?;
        gauge(
            "sweeps_running",
            "Sweeps still running.",
            sweeps
                .iter()
                .filter(|p| p.state == SweepRunState::Running)
                .count(),
        )?;
        gauge(
            "workers_live",
            "Workers seen within the last lease TTL.",
            c.live_workers(),
        )
    }
}

/// The registry of the coordinator's metrics (names prefixed `sigsweep_`).
fn registry(slot: &LeaderSlot) -> Registry {
    let mut registry = Registry::with_prefix("sigsweep");
    registry.register_collector(Box::new(Gauges { slot: slot.clone() }));
    registry
}

fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the collector does not either.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::warn!(error = %e, "metrics: encoding failed");
    }
    out
}

/// Serves `GET /metrics` on `listener` until `shutdown`; `auth` decides who
/// may read it.
pub async fn serve_metrics(
    listener: TcpListener,
    slot: LeaderSlot,
    auth: Auth,
    shutdown: CancellationToken,
) {
    let registry = Arc::new(registry(&slot));
    let auth = Arc::new(auth);
    let scrapes = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
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
        let (registry, auth) = (registry.clone(), auth.clone());
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, registry, auth).await;
        });
    }
}

/// One connection: one request (no keep-alive), its head bounded in size
/// and time, the whole connection in time.
async fn serve_connection(stream: TcpStream, registry: Arc<Registry>, auth: Arc<Auth>) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let response = respond(&request, &registry, &auth);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BYTES)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics: request failed"),
        Err(_) => tracing::debug!("metrics: connection timed out"),
    }
}

fn respond(request: &Request<Incoming>, registry: &Registry, auth: &Auth) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    if request.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "see /metrics\n".into());
    }
    // A header that is not text is no token either.
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    if let Err(refusal) = auth.check_scrape(authorization) {
        let mut response = text(StatusCode::UNAUTHORIZED, format!("{refusal}\n"));
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="sigsweep""#),
        );
        return response;
    }
    let mut response = text(StatusCode::OK, encode(registry));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
    response
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

    use super::{Auth, LeaderSlot, MAX_SCRAPES, serve_metrics};
    use crate::service::{Coordinator, CoordinatorConfig};
    use crate::store::{Catalog, EmbeddedStore};

    /// A metrics port on loopback serving `slot` with `auth`.
    async fn serve(slot: LeaderSlot, auth: Auth) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_metrics(listener, slot, auth, shutdown.clone()));
        (addr, shutdown)
    }

    /// Sends `request` as it is and reads the answer until the server
    /// closes the connection.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            stream.read_to_end(&mut answer),
        )
        .await
        .expect("the server closes the connection");
        // A server that closes with the request unread may reset it.
        if let Err(e) = read {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        }
        String::from_utf8_lossy(&answer).into_owned()
    }

    async fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> String {
        let header = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{header}\r\n");
        exchange(addr, request.as_bytes()).await
    }

    fn status(answer: &str) -> &str {
        answer.split("\r\n").next().unwrap_or_default()
    }

    async fn leading(dir: &std::path::Path) -> Coordinator {
        let store = EmbeddedStore::open(dir.join("state.redb")).expect("store");
        let c = Coordinator::start(Catalog::new(Arc::new(store)), CoordinatorConfig::default())
            .await
            .expect("start");
        // 2 configurations × 3 seeds: 6 queued trials.
        let sweep = sigsweep_testkit::fixture::TinySweep::default().toml();
        c.submit(&sweep, "tiny.toml").await.expect("submit");
        c
    }

    #[tokio::test]
    async fn a_scrape_reads_the_leaders_counts_and_a_standby_says_it_stands_by() {
        let dir = tempfile::tempdir().expect("tempdir");
        let slot = LeaderSlot::new();
        let (addr, _shutdown) = serve(slot.clone(), Auth::default()).await;

        let standby = get(addr, "/metrics", None).await;
        assert_eq!(status(&standby), "HTTP/1.1 200 OK", "{standby}");
        assert!(
            standby.contains("application/openmetrics-text"),
            "{standby}"
        );
        assert!(standby.contains("\nsigsweep_leader 0\n"), "{standby}");
        assert!(!standby.contains("sigsweep_trials"), "{standby}");

        slot.promote(leading(dir.path()).await);
        let leader = get(addr, "/metrics?x=1", None).await;
        assert_eq!(status(&leader), "HTTP/1.1 200 OK", "{leader}");
        for line in [
            "# TYPE sigsweep_trials_queued gauge",
            "sigsweep_leader 1",
            "sigsweep_trials_queued 6",
            "sigsweep_trials_running 0",
            "sigsweep_trials_completed 0",
            "sigsweep_sweeps_running 1",
            "sigsweep_workers_live 0",
            "# EOF",
        ] {
            assert!(leader.lines().any(|l| l == line), "{line}: {leader}");
        }
    }

    #[tokio::test]
    async fn with_a_token_a_scrape_without_it_reads_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let slot = LeaderSlot::leading(leading(dir.path()).await);
        let (addr, _shutdown) = serve(slot, Auth::with_token("s3cret\n")).await;
        for (authorization, why) in [
            (None, "missing bearer token"),
            (Some("Bearer s3cre"), "invalid bearer token"),
            (Some("Bearer s3cret2"), "invalid bearer token"),
            (Some("Bearer"), "invalid bearer token"),
            (Some("Bearer "), "invalid bearer token"),
            (Some("Basic czNjcmV0"), "invalid bearer token"),
            (Some("s3cret"), "invalid bearer token"),
        ] {
            let answer = get(addr, "/metrics", authorization).await;
            assert_eq!(status(&answer), "HTTP/1.1 401 Unauthorized", "{answer}");
            assert!(answer.contains("www-authenticate: Bearer"), "{answer}");
            assert!(answer.ends_with(&format!("\r\n\r\n{why}\n")), "{answer}");
            assert!(!answer.contains("sigsweep_"), "{answer}");
        }
        // The scheme is case-insensitive (RFC 9110).
        for authorization in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "] {
            let answer = get(addr, "/metrics", Some(authorization)).await;
            assert_eq!(status(&answer), "HTTP/1.1 200 OK", "{answer}");
            assert!(answer.contains("\nsigsweep_trials_queued 6\n"), "{answer}");
        }
    }

    #[tokio::test]
    async fn other_paths_methods_and_malformed_requests_get_an_error() {
        let (addr, _shutdown) = serve(LeaderSlot::new(), Auth::default()).await;
        let answer = get(addr, "/", None).await;
        assert_eq!(status(&answer), "HTTP/1.1 404 Not Found", "{answer}");
        let answer = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert_eq!(
            status(&answer),
            "HTTP/1.1 405 Method Not Allowed",
            "{answer}"
        );
        let answer = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status(&answer), "HTTP/1.1 200 OK", "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "no body: {answer}");
        let answer = exchange(addr, b"\x16\x03\x01 not http\r\n\r\n").await;
        assert_eq!(status(&answer), "HTTP/1.1 400 Bad Request", "{answer}");
        // A head larger than the limit is refused, not buffered.
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        let answer = exchange(addr, huge.as_bytes()).await;
        assert!(
            answer.is_empty() || status(&answer) == "HTTP/1.1 431 Request Header Fields Too Large",
            "{answer}"
        );
        // A client that sends nothing is closed (after REQUEST_TIMEOUT).
        let answer = exchange(addr, b"").await;
        assert!(
            answer.is_empty() || status(&answer).starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_at_once_and_scrapes_go_on() {
        let (addr, _shutdown) = serve(LeaderSlot::new(), Auth::default()).await;
        let mut silent = Vec::new();
        for _ in 0..MAX_SCRAPES {
            silent.push(TcpStream::connect(addr).await.expect("connect"));
        }
        // Give the server time to take each one (the permits are taken in
        // accept order).
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let answer = get(addr, "/metrics", None).await;
        assert_eq!(answer, "", "closed without an answer while full");
        drop(silent);
        let mut answer = String::new();
        for _ in 0..100 {
            answer = get(addr, "/metrics", None).await;
            if !answer.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(status(&answer), "HTTP/1.1 200 OK", "{answer}");
    }
}
