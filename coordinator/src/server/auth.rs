//! Who may call: the interceptor in front of the sweep service, the worker
//! service and reflection (verified client certificate, or the bearer
//! token; loopback only without either unless allowed), and the endpoint's
//! TLS settings.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// Who may call the sweep and worker services (every RPC but the gRPC
/// health service, which is served on its own port).
///
/// - A caller that presented a client certificate the server verified
///   (mutual TLS) is authenticated by it.
/// - With a token, every other caller must send it
///   (`authorization: Bearer …`, compared in constant time, never logged).
/// - Without a token, loopback callers are accepted and others refused,
///   unless the operator chose [`Auth::allow_unauthenticated`] (`--insecure`).
#[derive(Clone, Default)]
pub struct Auth {
    token: Option<Arc<str>>,
    allow_unauthenticated: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .finish()
    }
}

impl Auth {
    /// Requires `token` (surrounding whitespace is ignored; must not be empty).
    pub fn with_token(token: &str) -> Self {
        let token = token.trim();
        Self {
            token: (!token.is_empty()).then(|| Arc::from(token)),
            allow_unauthenticated: false,
        }
    }

    /// Without a token, also accepts unauthenticated non-loopback callers
    /// (the operator's `--insecure`). Has no effect when a token is set.
    pub fn allow_unauthenticated(mut self, allow: bool) -> Self {
        self.allow_unauthenticated = allow;
        self
    }

    /// Whether callers may authenticate with a bearer token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Checks the caller of any sweep or worker call.
    #[allow(clippy::result_large_err)]
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if request.peer_certs().is_some_and(|certs| !certs.is_empty()) {
            // tonic only hands over certificates its verifier accepted
            // against the configured client CA.
            return Ok(());
        }
        match &self.token {
            Some(token) => {
                let sent = request
                    .metadata()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap_or(""));
                bearer(token, sent).map_err(|refusal| match refusal {
                    Refusal::Invalid => Status::unauthenticated(refusal.to_string()),
                    Refusal::Missing => Status::unauthenticated(format!(
                        "{refusal} (send `authorization: Bearer <token>`; the CLI and workers take --token-file or SIGSWEEP_TOKEN_FILE)"
                    )),
                })
            }
            None if self.allow_unauthenticated => Ok(()),
            None => match request.remote_addr() {
                Some(addr) if addr.ip().is_loopback() => Ok(()),
                _ => Err(Status::unauthenticated(
                    "no token is configured on the coordinator: only loopback clients are served (configure --token-file or mutual TLS, or start the coordinator with --insecure to serve unauthenticated clients)",
                )),
            },
        }
    }

    /// Checks a scrape of the metrics port (plain HTTP, `authorization`
    /// its `Authorization` header): with a token, the scraper must send it
    /// like any other caller; without one, whoever reaches the port (which
    /// the operator opened with `--metrics-listen`) may read the counts.
    pub fn check_scrape(&self, authorization: Option<&str>) -> Result<(), Refusal> {
        match &self.token {
            Some(token) => bearer(token, authorization),
            None => Ok(()),
        }
    }
}

/// Why a caller's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
}

/// Whether `authorization` (the header's value, if sent) is `Bearer
/// <token>` (the scheme in any case, as RFC 9110 has it): the one
/// comparison of a sent token, in constant time.
fn bearer(token: &str, authorization: Option<&str>) -> Result<(), Refusal> {
    let (scheme, sent) = authorization
        .ok_or(Refusal::Missing)?
        .trim_start()
        .split_once(' ')
        .ok_or(Refusal::Invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Invalid);
    }
    let sent = sent.trim();
    // `subtle` keeps the comparison's time independent of where the bytes
    // differ (a length mismatch is refused at once: the length is no secret).
    if bool::from(sent.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(Refusal::Invalid)
    }
}

/// TLS for the gRPC endpoint, as PEM bytes.
#[derive(Clone)]
pub struct TlsSettings {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// With a CA, clients must present a certificate it signed (mutual TLS).
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Options of [`serve_slot`](super::serve_slot).
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub tls: Option<TlsSettings>,
    pub auth: Auth,
}
