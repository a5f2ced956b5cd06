//! How to reach the coordinator: endpoint, TLS and token.

use std::path::Path;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use sigsweep_proto::v1::sweep_service_client::SweepServiceClient;
use sigsweep_proto::v1::worker_service_client::WorkerServiceClient;

use crate::{BearerAuth, ClientError};

/// A sweep-service client sending the bearer token, if any.
pub type SweepClient = SweepServiceClient<InterceptedService<Channel, BearerAuth>>;
/// A worker-service client sending the bearer token, if any.
pub type WorkerClient = WorkerServiceClient<InterceptedService<Channel, BearerAuth>>;

/// Largest message a client accepts (a sweep's results).
const MAX_DECODING: usize = 16 * 1024 * 1024;

/// PEM files for TLS: the CA that signed the coordinator's certificate, and
/// for mutual TLS the client's certificate and key.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsFiles<'a> {
    pub ca: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
}

/// How to reach the coordinator.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The coordinator endpoint, TLS settings included.
    pub endpoint: Endpoint,
    pub auth: BearerAuth,
    /// The URL as given, for messages.
    pub url: String,
}

fn config(message: impl Into<String>) -> ClientError {
    ClientError::Config(message.into())
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| config(format!("cannot read the {what} {}: {e}", path.display())))
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Connection {
    /// A plaintext connection to `url` without a token (loopback and tests).
    pub fn plain(url: &str) -> Result<Self, ClientError> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| config(format!("invalid coordinator URL `{url}`: {e}")))?;
        Ok(Self {
            endpoint,
            auth: BearerAuth::default(),
            url: url.to_string(),
        })
    }

    /// A connection to `url`: https:// needs the CA that signed the
    /// coordinator's certificate (and a client certificate and key for
    /// mutual TLS); plaintext http:// to a non-loopback host needs
    /// `insecure`. The token, if any, is read from `token_file`.
    pub fn new(
        url: &str,
        tls: TlsFiles<'_>,
        token_file: Option<&Path>,
        insecure: bool,
    ) -> Result<Self, ClientError> {
        let mut connection = Self::plain(url)?;
        let uri = connection.endpoint.uri().clone();
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        match uri.scheme_str() {
            Some("https") => {
                let Some(ca) = tls.ca else {
                    return Err(config(
                        "https:// needs the CA certificate that signed the coordinator's certificate (--tls-ca or SIGSWEEP_TLS_CA)",
                    ));
                };
                let mut tls_config = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(read("TLS CA", ca)?));
                match (tls.cert, tls.key) {
                    (Some(cert), Some(key)) => {
                        tls_config = tls_config.identity(Identity::from_pem(
                            read("TLS certificate", cert)?,
                            read("TLS key", key)?,
                        ));
                    }
                    (None, None) => {}
                    _ => return Err(config("mutual TLS needs both --tls-cert and --tls-key")),
                }
                connection.endpoint = connection
                    .endpoint
                    .tls_config(tls_config)
                    .map_err(|e| config(format!("invalid TLS settings: {e}")))?;
            }
            Some("http") => {
                if !insecure && !is_loopback_host(host) {
                    return Err(config(format!(
                        "refusing plaintext http:// to the non-loopback host `{host}`: use https:// with --tls-ca, or pass --insecure (SIGSWEEP_INSECURE=true)"
                    )));
                }
            }
            _ => {
                return Err(config(format!(
                    "invalid coordinator URL `{url}`: expected http:// or https://"
                )));
            }
        }
        if let Some(path) = token_file {
            let token = String::from_utf8(read("token file", path)?)
                .map_err(|_| config(format!("the token file {} is not UTF-8", path.display())))?;
            connection.auth = BearerAuth::new(Some(&token)).map_err(config)?;
        }
        Ok(connection)
    }

    fn channel(&self) -> Channel {
        self.endpoint
            .clone()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_lazy()
    }

    /// A sweep-service client over a fresh (lazily connected) channel.
    pub fn sweep_client(&self) -> SweepClient {
        SweepServiceClient::with_interceptor(self.channel(), self.auth.clone())
            .max_decoding_message_size(MAX_DECODING)
    }

    /// A worker-service client over a fresh (lazily connected) channel.
    pub fn worker_client(&self) -> WorkerClient {
        WorkerServiceClient::with_interceptor(self.channel(), self.auth.clone())
            .max_decoding_message_size(MAX_DECODING)
    }
}

#[cfg(test)]
mod tests {
    use super::{Connection, TlsFiles};

    #[test]
    fn plaintext_leaves_loopback_only_when_asked() {
        let none = TlsFiles::default();
        assert!(Connection::new("http://127.0.0.1:1", none, None, false).is_ok());
        assert!(Connection::new("http://[::1]:1", none, None, false).is_ok());
        assert!(Connection::new("http://localhost:1", none, None, false).is_ok());
        let e = Connection::new("http://10.0.0.1:1", none, None, false).unwrap_err();
        assert!(e.to_string().contains("non-loopback"), "{e}");
        assert!(Connection::new("http://10.0.0.1:1", none, None, true).is_ok());
        let e = Connection::new("https://10.0.0.1:1", none, None, false).unwrap_err();
        assert!(e.to_string().contains("CA certificate"), "{e}");
        let e = Connection::new("ftp://x", none, None, false).unwrap_err();
        assert!(e.to_string().contains("expected http"), "{e}");
    }
}
