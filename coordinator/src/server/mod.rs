//! The gRPC edge: tonic services over a [`Coordinator`], conversion between
//! wire and domain types, and the one place where domain errors become
//! `tonic::Status` codes.
//!
//! - [`serve`]: one coordinator, plaintext, no token (local runs, tests);
//! - [`serve_slot`]: the long-running server: the services answer through a
//!   [`LeaderSlot`] that holds the coordinator while this process leads and is
//!   empty while it stands by (requests then fail with `UNAVAILABLE`, so
//!   clients reconnect and a load balancer lands them on the leader), with
//!   optional TLS ([`ServerOptions::tls`]) and [`Auth`] on every call
//!   ([`ServerOptions::auth`]: a bearer token or a verified client
//!   certificate; without either, loopback callers only);
//! - [`serve_health`]: plaintext `grpc.health.v1` on its own port for
//!   Kubernetes probes (service `""` serving while the process is up,
//!   `sigsweep.v1.SweepService` only on the leader);
//! - [`metrics`]: Prometheus text at `GET /metrics`.

mod auth;
mod convert;
mod error;
mod health;
mod leader;
mod listen;
pub mod metrics;
mod sweep_api;
mod worker_api;

pub use auth::{Auth, Refusal, ServerOptions, TlsSettings};
pub use health::{
    HealthService, SWEEP_SERVICE, WORKER_SERVICE, health_service, serve_health, track_health,
};
pub use leader::LeaderSlot;
use listen::incoming;
pub use listen::{LISTEN_BACKLOG, bind, raise_open_files_limit};
pub use sweep_api::SweepApi;
pub use worker_api::WorkerApi;

pub use tonic_health::server::HealthReporter;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::service::interceptor::InterceptedService;

use sigsweep_proto::v1::sweep_service_server::SweepServiceServer;
use sigsweep_proto::v1::worker_service_server::WorkerServiceServer;

use crate::service::Coordinator;

/// Largest gRPC message of the sweep service (sweep files and result lists
/// stay far below).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest gRPC message a worker may send (a completion carries at most
/// [`crate::service::MAX_METRICS`] metrics per split); tonic refuses larger
/// ones with `OUT_OF_RANGE` naming this limit.
pub const MAX_WORKER_MESSAGE_BYTES: usize = 1024 * 1024;

/// Serves the sweep and worker services, gRPC health and reflection on
/// `listener` until `shutdown` is cancelled, for one coordinator, with
/// `options` (who may call), and runs its lease expiry.
pub async fn serve(
    listener: TcpListener,
    coordinator: Coordinator,
    options: ServerOptions,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let health_reporter = tonic_health::server::HealthReporter::new();
    let health_service = health_service(&health_reporter);
    health_reporter
        .set_serving::<SweepServiceServer<SweepApi>>()
        .await;
    health_reporter
        .set_serving::<WorkerServiceServer<WorkerApi>>()
        .await;
    let expiry = tokio::spawn(coordinator.clone().run_expiry(shutdown.clone()));
    let result = serve_slot(
        listener,
        LeaderSlot::leading(coordinator),
        options,
        health_service,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    let _ = expiry.await;
    result
}

/// Serves the sweep and worker services (through `slot`), `health` and
/// reflection on `listener` until `shutdown` is cancelled. Runs no lease
/// expiry: whoever fills the slot runs it.
pub async fn serve_slot(
    listener: TcpListener,
    slot: LeaderSlot,
    options: ServerOptions,
    health: HealthService,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sigsweep_proto::v1::FILE_DESCRIPTOR_SET)
        .build_v1()
        .ok();

    // One check in front of every service but health: the sweep and worker
    // services and reflection.
    let auth = options.auth.clone();
    let check = move |request: Request<()>| auth.check(&request).map(|()| request);
    let sweep = InterceptedService::new(
        SweepServiceServer::new(SweepApi { slot: slot.clone() })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        check.clone(),
    );
    let worker = InterceptedService::new(
        WorkerServiceServer::new(WorkerApi { slot })
            .max_decoding_message_size(MAX_WORKER_MESSAGE_BYTES),
        check.clone(),
    );
    let reflection = reflection.map(|r| InterceptedService::new(r, check));

    let mut builder = listen::server_builder();
    if let Some(tls) = &options.tls {
        let mut config = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem),
        );
        if let Some(ca) = &tls.client_ca_pem {
            // A verified client certificate authenticates its caller. With a
            // token as well, a client may present either: the certificate
            // becomes optional at the handshake and [`Auth`] asks for the
            // token from callers without one.
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(options.auth.has_token());
        }
        builder = builder.tls_config(config)?;
    }
    builder
        .add_service(health)
        .add_service(sweep)
        .add_service(worker)
        .add_optional_service(reflection)
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::Auth;
    use tonic::transport::server::TcpConnectInfo;
    use tonic::{Code, Request};

    fn from(addr: &str, token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        r.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(addr.parse().expect("addr")),
        });
        if let Some(t) = token {
            r.metadata_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        r
    }

    fn code(r: Result<(), tonic::Status>) -> Option<Code> {
        r.err().map(|s| s.code())
    }

    #[test]
    fn without_a_token_only_loopback_callers_are_served_unless_insecure() {
        let open = Auth::default();
        assert_eq!(code(open.check(&from("127.0.0.1:9", None))), None);
        assert_eq!(code(open.check(&from("[::1]:9", None))), None);
        assert_eq!(
            code(open.check(&from("10.1.2.3:9", None))),
            Some(Code::Unauthenticated)
        );
        // No peer address at all (e.g. a transport we do not know) is not
        // loopback either.
        assert_eq!(
            code(open.check(&Request::new(()))),
            Some(Code::Unauthenticated)
        );
        let insecure = Auth::default().allow_unauthenticated(true);
        assert_eq!(code(insecure.check(&from("10.1.2.3:9", None))), None);
    }

    #[test]
    fn with_a_token_every_caller_needs_it_loopback_included() {
        let auth = Auth::with_token(" s3cret\n").allow_unauthenticated(true);
        assert_eq!(code(auth.check(&from("127.0.0.1:9", Some("s3cret")))), None);
        assert_eq!(code(auth.check(&from("10.1.2.3:9", Some("s3cret")))), None);
        for (addr, token) in [
            ("127.0.0.1:9", None),
            ("127.0.0.1:9", Some("s3cre")),
            ("127.0.0.1:9", Some("s3cret2")),
            ("10.1.2.3:9", None),
        ] {
            assert_eq!(
                code(auth.check(&from(addr, token))),
                Some(Code::Unauthenticated),
                "{addr} {token:?}"
            );
        }
        assert!(!format!("{auth:?}").contains("s3cret"), "never printed");
    }
}
