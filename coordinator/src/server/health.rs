//! gRPC health: service "" serves while the process is up,
//! `sigsweep.v1.SweepService` and `WorkerService` only while it leads.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::leader::LeaderSlot;
use super::listen::incoming;

/// gRPC service names as the health service reports them.
pub const SWEEP_SERVICE: &str = "sigsweep.v1.SweepService";
pub const WORKER_SERVICE: &str = "sigsweep.v1.WorkerService";

/// The health service type [`tonic_health::server::health_reporter`] returns.
pub type HealthService =
    tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

/// A health service answering with `reporter`'s statuses.
pub fn health_service(reporter: &tonic_health::server::HealthReporter) -> HealthService {
    tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
    )
}

/// Serves only `grpc.health.v1` (plaintext) on `listener` until `shutdown`.
pub async fn serve_health(
    listener: TcpListener,
    health: HealthService,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    super::listen::server_builder()
        .add_service(health)
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await
}

/// Keeps the health status of the sigsweep services in line with `slot`:
/// serving while leading, not serving while standing by. Runs until
/// `shutdown`, then reports every service (`""` included) not serving.
pub async fn track_health(
    slot: LeaderSlot,
    reporter: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
) {
    use tonic_health::ServingStatus;
    let mut rx = slot.subscribe();
    loop {
        let status = if rx.borrow_and_update().is_some() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        reporter.set_service_status(SWEEP_SERVICE, status).await;
        reporter.set_service_status(WORKER_SERVICE, status).await;
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = rx.changed() => if changed.is_err() { break },
        }
    }
    for name in ["", SWEEP_SERVICE, WORKER_SERVICE] {
        reporter
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
}
