//! Reaching etcd: endpoints from a store URL, credentials, TLS files
//! (read and checked up front, errors naming the file), the client.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::errors::store_error;
use crate::store::{StoreError, StoreResult};

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Prefix of every key the store writes; a `/` is appended if missing.
    pub key_prefix: String,
    /// Bound on every request; a call that takes longer fails with
    /// [`StoreError::Unavailable`].
    pub request_timeout: Duration,
    /// Bound on establishing a connection to one endpoint.
    pub connect_timeout: Duration,
    /// etcd user authentication.
    pub credentials: Option<EtcdCredentials>,
    /// TLS settings: when set, endpoints are reached over `https`.
    pub tls: Option<EtcdTls>,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            key_prefix: "/sigsweep/".to_string(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            credentials: None,
            tls: None,
        }
    }
}

/// An etcd user name and password.
#[derive(Clone)]
pub struct EtcdCredentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for EtcdCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// TLS files for etcd connections.
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    /// CA certificate(s) (PEM) that signed the server certificates. Required:
    /// this build trusts no system roots.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS; needs `key`.
    pub cert: Option<PathBuf>,
    /// Client private key (PEM), for mutual TLS; needs `cert`.
    pub key: Option<PathBuf>,
}

impl EtcdTls {
    /// Reads and checks the files into a client TLS configuration; errors
    /// name the file at fault.
    fn load(&self) -> StoreResult<TlsOptions> {
        let ca = self.ca.as_ref().ok_or_else(|| {
            tls_error(
                "etcd TLS needs the CA certificate that signed the etcd server certificates \
                 (--etcd-ca / SIGSWEEP_ETCD_CA); this build trusts no system roots"
                    .to_string(),
            )
        })?;
        let ca_pem = read_tls_file("CA certificate", ca)?;
        check_certificates("CA certificate", ca, &ca_pem)?;
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(ca_pem));
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let cert_pem = read_tls_file("client certificate", cert)?;
                check_certificates("client certificate", cert, &cert_pem)?;
                let key_pem = read_tls_file("client key", key)?;
                if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
                    return Err(tls_error(format!(
                        "the etcd client key {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                        key.display()
                    )));
                }
                tls = tls.identity(Identity::from_pem(cert_pem, key_pem));
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(tls_error(
                    "an etcd client certificate (--etcd-cert) needs its key (--etcd-key)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(tls_error(
                    "an etcd client key (--etcd-key) needs its certificate (--etcd-cert)".into(),
                ));
            }
        }
        Ok(tls)
    }
}

fn read_tls_file(what: &str, path: &std::path::Path) -> StoreResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        tls_error(format!(
            "cannot read the etcd {what} {}: {e}",
            path.display()
        ))
    })
}

fn check_certificates(what: &str, path: &std::path::Path, pem: &[u8]) -> StoreResult<()> {
    let mut certs = CertificateDer::pem_slice_iter(pem);
    match certs.next() {
        Some(Ok(_)) if certs.all(|c| c.is_ok()) => Ok(()),
        Some(_) => Err(tls_error(format!(
            "the etcd {what} {} holds a malformed PEM certificate",
            path.display()
        ))),
        None => Err(tls_error(format!(
            "the etcd {what} {} holds no PEM certificate",
            path.display()
        ))),
    }
}

fn tls_error(message: String) -> StoreError {
    StoreError::Internal(message)
}

/// Parses `etcd://HOST:PORT[,HOST:PORT…]` into `http://HOST:PORT`
/// endpoints, and `etcds://…` into `https://HOST:PORT` endpoints.
pub fn parse_url(url: &str) -> StoreResult<Vec<String>> {
    let invalid = |why: &str| {
        StoreError::Internal(format!(
            "invalid etcd url `{url}`: {why} (expected etcd://HOST:PORT[,HOST:PORT...], \
             or etcds://... for TLS)"
        ))
    };
    let (rest, scheme) = match url.split_once("://") {
        Some(("etcd", rest)) => (rest, "http"),
        Some(("etcds", rest)) => (rest, "https"),
        _ => return Err(invalid("the scheme must be etcd:// or etcds://")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut endpoints = Vec::new();
    for part in rest.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(invalid("empty endpoint"));
        }
        if part.contains(['/', '@', '?', '#']) {
            return Err(invalid(&format!(
                "endpoint `{part}` must be HOST:PORT (credentials go in the options, not the url)"
            )));
        }
        let (host, port) = part
            .rsplit_once(':')
            .ok_or_else(|| invalid(&format!("endpoint `{part}` has no port")))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(invalid(&format!("endpoint `{part}` must be HOST:PORT")));
        }
        endpoints.push(format!("{scheme}://{part}"));
    }
    Ok(endpoints)
}

/// `HOST:PORT` of an `http://` or `https://` endpoint.
pub(crate) fn host_port(endpoint: &str) -> &str {
    endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
}

/// Connects an etcd client to `endpoints` (`http://HOST:PORT` or
/// `https://HOST:PORT`) with the timeouts, credentials and TLS settings of
/// `options`. With TLS settings every endpoint is reached over `https`;
/// `https` endpoints without them are refused.
pub async fn connect_client(endpoints: &[String], options: &EtcdOptions) -> StoreResult<Client> {
    let tls = options.tls.as_ref().map(EtcdTls::load).transpose()?;
    let endpoints: Vec<String> = match &tls {
        Some(_) => endpoints
            .iter()
            .map(|e| format!("https://{}", host_port(e)))
            .collect(),
        None if endpoints.iter().any(|e| e.starts_with("https://")) => {
            return Err(tls_error(
                "etcds:// needs TLS settings: at least the CA certificate of the etcd servers \
                 (--etcd-ca / SIGSWEEP_ETCD_CA)"
                    .to_string(),
            ));
        }
        None => endpoints.to_vec(),
    };
    let mut connect = ConnectOptions::new()
        .with_timeout(options.request_timeout)
        .with_connect_timeout(options.connect_timeout)
        .with_keep_alive(Duration::from_secs(10), options.request_timeout)
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if let Some(creds) = &options.credentials {
        connect = connect
            .with_user(creds.username.clone(), creds.password.clone())
            .with_auto_token_refresh(true);
    }
    let tls_on = tls.is_some();
    if let Some(tls) = tls {
        connect = connect.with_tls(tls);
    }
    let timeout = options.connect_timeout + options.request_timeout;
    match tokio::time::timeout(timeout, Client::connect(&endpoints, Some(connect))).await {
        Ok(result) => result.map_err(|e| store_error("connect", e, tls_on)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "connecting to etcd at {} timed out after {timeout:?}",
            endpoints.join(",")
        ))),
    }
}
