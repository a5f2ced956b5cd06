//! The client side of the coordinator's gRPC API, shared by the worker agent
//! and the CLI so that both reach the coordinator the same way:
//!
//! - [`Connection`]: the endpoint with its TLS settings and the bearer token
//!   ([`BearerAuth`]); plaintext to a non-loopback host only when asked;
//! - [`call`]: one request, retried with backoff while the coordinator is
//!   unavailable (restarting, or a standby while the leader changes);
//! - [`SweepApi`]: the sweep service's calls with typed answers (results as
//!   the one [`sigsweep_types::ResultRecord`]);
//! - [`ErrorCode`]: the typed reason a coordinator attaches to its errors,
//!   so callers never match message text.

mod auth;
mod connection;
mod retry;
mod sweeps;

pub use auth::BearerAuth;
pub use connection::{Connection, SweepClient, TlsFiles, WorkerClient};
pub use retry::{RETRY_FOR, call, is_transient};
pub use sigsweep_proto::ErrorCode;
pub use sweeps::SweepApi;

/// Why a client could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The settings are wrong (URL, TLS files, token file): nothing was sent.
    #[error("{0}")]
    Config(String),
    /// The coordinator stayed unavailable for the whole retry window.
    #[error("cannot reach the coordinator at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The coordinator answered with an error.
    #[error("{}", .0.message())]
    Rejected(tonic::Status),
}
