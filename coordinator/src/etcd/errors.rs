//! What an etcd client error means, decided once for the store and the
//! election: whether a retry may succeed ([`is_retryable`]), and a message
//! with its causes and, when TLS is what failed, what to check.

use crate::store::StoreError;

/// Connection problems, timeouts and a cluster without leader are
/// retryable; everything else is not.
pub fn is_retryable(error: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    use tonic::Code;
    match error {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Aborted
                | Code::ResourceExhausted
                | Code::Unknown
        ),
        _ => false,
    }
}

/// A store error for a failed etcd call ([`is_retryable`] decides
/// `Unavailable` or `Internal`). `tls`: the connection uses TLS (a
/// connection closed under it may be etcd refusing the client certificate).
pub(crate) fn store_error(what: &str, error: etcd_client::Error, tls: bool) -> StoreError {
    let retryable = is_retryable(&error);
    let mut message = describe_error(&error);
    // With TLS 1.3 the server checks the client certificate after the
    // client's side of the handshake is done, so its refusal may arrive
    // as an alert (hinted above) or as a plain closed connection; so may
    // TLS to a plaintext endpoint, and plaintext to a TLS endpoint.
    let lower = message.to_lowercase();
    let closed = ["connection closed", "connection reset", "broken pipe"]
        .iter()
        .any(|c| lower.contains(c));
    if closed && tls_hint(&message).is_none() {
        message.push_str(if tls {
            " (etcd closed the TLS connection: if this persists, check that the endpoint serves \
             TLS (https) and that etcd accepts this client's certificate: etcd started with \
             --client-cert-auth needs --etcd-cert/--etcd-key signed by a CA it trusts)"
        } else {
            " (etcd closed the connection: if this persists and etcd serves TLS, give its CA \
             with --etcd-ca, and --etcd-cert/--etcd-key if it requires client certificates)"
        });
    }
    if retryable {
        StoreError::Unavailable(format!("etcd {what}: {message}"))
    } else {
        StoreError::Internal(format!("etcd {what}: {message}"))
    }
}

/// An etcd client error with its causes, and a hint when TLS is what
/// failed: `Unknown error: transport error: …: received fatal alert:
/// BadCertificate (etcd refused this client's certificate: …)` rather than
/// just `transport error`.
pub fn describe_error(error: &etcd_client::Error) -> String {
    let message = match error {
        etcd_client::Error::GRpcStatus(status) => {
            let mut message = format!("{}: {}", status.code(), status.message());
            append_causes(&mut message, std::error::Error::source(status));
            message
        }
        _ => {
            let mut message = error.to_string();
            append_causes(&mut message, std::error::Error::source(error));
            message
        }
    };
    match tls_hint(&message) {
        Some(hint) => format!("{message} ({hint})"),
        None => message,
    }
}

fn append_causes(message: &mut String, mut source: Option<&(dyn std::error::Error + 'static)>) {
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
}

/// What a TLS failure most likely means, from rustls' wording.
pub fn tls_hint(message: &str) -> Option<&'static str> {
    let has = |needle: &str| message.contains(needle);
    if has("BadCertificate") || has("CertificateRequired") || has("UnknownCA") {
        Some(
            "etcd refused this client's TLS certificate: give --etcd-cert/--etcd-key \
             signed by a CA etcd trusts (its --trusted-ca-file)",
        )
    } else if has("UnknownIssuer") || has("NotValidForName") || has("invalid peer certificate") {
        Some(
            "etcd's server certificate is not trusted: --etcd-ca must be the CA that signed it, \
             and it must name the host in the store URL",
        )
    } else if has("tls handshake eof")
        || has("InvalidContentType")
        || has("CorruptMessage")
        || has("HandshakeFailure")
    {
        Some("TLS handshake failed: does this etcd endpoint serve TLS (https)?")
    } else {
        None
    }
}
