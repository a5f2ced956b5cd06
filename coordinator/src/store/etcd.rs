//! The etcd store, for distributed mode (a leader coordinator and standbys
//! sharing state).
//!
//! Mapping onto etcd v3:
//! - every key lives under a prefix (default `/sigsweep/`), so one etcd
//!   cluster can hold several installations;
//! - a key's [`Version`] is its etcd `mod_revision` (cluster-wide, so it only
//!   grows, also across delete and re-create);
//! - a precondition is a transaction compare: `Absent` is
//!   `create_revision == 0`, `Version(v)` is `mod_revision == v`; a failed
//!   compare is [`StoreError::Conflict`];
//! - [`Store::list`] reads in pages at one pinned revision, so a listing is
//!   a consistent snapshot however long it is.
//!
//! Failures: every call is bounded by the request timeout (5 s by default),
//! and connection errors, timeouts and "no leader" answers become
//! [`StoreError::Unavailable`], which callers may retry. Values larger than
//! [`MAX_VALUE_BYTES`] are refused before they reach etcd (its default
//! request limit is 1.5 MiB).
//!
//! TLS is not available in this build: etcd-client's `tls` feature is not
//! enabled, and [`EtcdStore::connect`] refuses [`EtcdOptions::tls`] with an
//! error saying so.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, SortOrder,
    SortTarget, Txn, TxnOp,
};

use super::{Precondition, Store, StoreError, StoreResult, Version, Versioned};

/// Largest value the etcd store accepts.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Keys read per page by [`Store::list`].
const LIST_PAGE: i64 = 128;
/// Largest gRPC response the store decodes (a full page of maximal values).
const MAX_DECODE_BYTES: usize = 256 * 1024 * 1024;

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
    /// TLS settings; not supported by this build (see the module docs).
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
    /// CA certificate (PEM) that signed the server certificates.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Client private key (PEM), for mutual TLS.
    pub key: Option<PathBuf>,
}

/// Durable state in etcd. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    kv: KvClient,
    endpoints: Vec<String>,
    prefix: String,
    timeout: Duration,
}

impl EtcdStore {
    /// Connects to `url`, `etcd://HOST:PORT[,HOST:PORT…]`.
    ///
    /// Connections are made lazily (except to authenticate when
    /// credentials are given), so this succeeds while etcd is down; use
    /// [`EtcdStore::ping`] to check reachability.
    pub async fn connect(url: &str, options: EtcdOptions) -> StoreResult<Self> {
        let endpoints = parse_url(url)?;
        let client = connect_client(&endpoints, &options).await?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_DECODE_BYTES);
        let mut prefix = options.key_prefix;
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Self {
            client,
            kv,
            endpoints,
            prefix,
            timeout: options.request_timeout,
        })
    }

    /// The underlying client, e.g. for [`crate::election::campaign`].
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The key prefix, ending in `/` unless empty.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// Checks that etcd answers a read.
    pub async fn ping(&self) -> StoreResult<()> {
        let mut kv = self.kv.clone();
        let key = self.full_key("");
        self.call(
            "ping",
            kv.get(key, Some(GetOptions::new().with_count_only())),
        )
        .await
        .map(drop)
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs one request under the store's timeout, mapping its errors.
    async fn call<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> StoreResult<T> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result.map_err(|e| map_error(what, e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "etcd {what} timed out after {:?}",
                self.timeout
            ))),
        }
    }

    /// Runs a transaction guarded by `precondition` on `key`.
    async fn guarded(
        &self,
        what: &str,
        key: &str,
        full: &str,
        precondition: Precondition,
        op: TxnOp,
    ) -> StoreResult<Version> {
        let compare = match precondition {
            Precondition::None => None,
            Precondition::Absent => Some(Compare::create_revision(full, CompareOp::Equal, 0)),
            Precondition::Version(v) => {
                // No etcd revision exceeds i64::MAX, so such a version never matches.
                let v = i64::try_from(v).map_err(|_| conflict(key))?;
                Some(Compare::mod_revision(full, CompareOp::Equal, v))
            }
        };
        let txn = match compare {
            Some(c) => Txn::new().when([c]).and_then([op]),
            None => Txn::new().and_then([op]),
        };
        let mut kv = self.kv.clone();
        let response = self.call(what, kv.txn(txn)).await?;
        if !response.succeeded() {
            return Err(conflict(key));
        }
        revision(response.header())
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> StoreResult<Option<Versioned>> {
        let mut kv = self.kv.clone();
        let response = self.call("get", kv.get(self.full_key(key), None)).await?;
        response
            .kvs()
            .first()
            .map(|kv| {
                Ok(Versioned {
                    version: to_version(kv.mod_revision())?,
                    value: kv.value().to_vec(),
                })
            })
            .transpose()
    }

    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        precondition: Precondition,
    ) -> StoreResult<Version> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(StoreError::Internal(format!(
                "value for key `{key}` is {} bytes; the etcd store accepts at most {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        let full = self.full_key(key);
        let op = TxnOp::put(full.as_str(), value, None);
        self.guarded("put", key, &full, precondition, op).await
    }

    async fn delete(&self, key: &str, precondition: Precondition) -> StoreResult<()> {
        let full = self.full_key(key);
        let op = TxnOp::delete(full.as_str(), None::<DeleteOptions>);
        self.guarded("delete", key, &full, precondition, op)
            .await
            .map(drop)
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<(String, Versioned)>> {
        let full_prefix = self.full_key(prefix);
        let end = prefix_end(full_prefix.as_bytes());
        let mut start = full_prefix.into_bytes();
        let mut at_revision = None;
        let mut out = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE)
                .with_sort(SortTarget::Key, SortOrder::Ascend);
            if let Some(rev) = at_revision {
                options = options.with_revision(rev);
            }
            let mut kv = self.kv.clone();
            let response = self
                .call("list", kv.get(start.clone(), Some(options)))
                .await?;
            if at_revision.is_none() {
                at_revision = Some(revision(response.header())? as i64);
            }
            for entry in response.kvs() {
                let key = entry
                    .key_str()
                    .ok()
                    .and_then(|k| k.strip_prefix(self.prefix.as_str()))
                    .ok_or_else(|| {
                        StoreError::Internal(format!(
                            "unexpected key {:?} under prefix `{}`",
                            String::from_utf8_lossy(entry.key()),
                            self.prefix
                        ))
                    })?;
                out.push((
                    key.to_string(),
                    Versioned {
                        version: to_version(entry.mod_revision())?,
                        value: entry.value().to_vec(),
                    },
                ));
            }
            match response.kvs().last() {
                Some(last) if response.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "etcd://{} (prefix {})",
            self.endpoints.join(","),
            self.prefix
        )
    }
}

/// Parses `etcd://HOST:PORT[,HOST:PORT…]` into `http://HOST:PORT` endpoints.
pub fn parse_url(url: &str) -> StoreResult<Vec<String>> {
    let invalid = |why: &str| {
        StoreError::Internal(format!(
            "invalid etcd url `{url}`: {why} (expected etcd://HOST:PORT[,HOST:PORT...])"
        ))
    };
    let rest = match url.split_once("://") {
        Some(("etcd", rest)) => rest,
        Some(("etcds", _)) => return Err(tls_unsupported()),
        _ => return Err(invalid("the scheme must be etcd://")),
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
        endpoints.push(format!("http://{part}"));
    }
    Ok(endpoints)
}

/// Connects an etcd client to `endpoints` (`http://HOST:PORT`) with the
/// timeouts, credentials and TLS settings of `options`.
pub async fn connect_client(endpoints: &[String], options: &EtcdOptions) -> StoreResult<Client> {
    if options.tls.is_some() {
        return Err(tls_unsupported());
    }
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
    let timeout = options.connect_timeout + options.request_timeout;
    match tokio::time::timeout(timeout, Client::connect(endpoints, Some(connect))).await {
        Ok(result) => result.map_err(|e| map_error("connect", e)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "connecting to etcd at {} timed out after {timeout:?}",
            endpoints.join(",")
        ))),
    }
}

fn tls_unsupported() -> StoreError {
    StoreError::Internal(
        "TLS connections to etcd are not supported by this build (etcd-client's `tls` feature \
         is not enabled); use a plain etcd://HOST:PORT endpoint"
            .to_string(),
    )
}

fn conflict(key: &str) -> StoreError {
    StoreError::Conflict {
        key: key.to_string(),
    }
}

fn revision(header: Option<&etcd_client::ResponseHeader>) -> StoreResult<Version> {
    let header =
        header.ok_or_else(|| StoreError::Internal("etcd response without header".into()))?;
    to_version(header.revision())
}

fn to_version(revision: i64) -> StoreResult<Version> {
    u64::try_from(revision)
        .ok()
        .filter(|&r| r > 0)
        .ok_or_else(|| StoreError::Internal(format!("etcd returned revision {revision}")))
}

/// The smallest key greater than every key starting with `prefix`, or
/// `[0]` (etcd's "to the end") when there is none.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Connection problems, timeouts and a cluster without leader are
/// retryable; everything else is not.
fn map_error(what: &str, error: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    use tonic::Code;
    let retryable = match &error {
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
    };
    if retryable {
        StoreError::Unavailable(format!("etcd {what}: {error}"))
    } else {
        StoreError::Internal(format!("etcd {what}: {error}"))
    }
}

#[cfg(test)]
#[path = "../../tests/common/etcd.rs"]
pub(crate) mod test_etcd;

#[cfg(test)]
mod tests {
    use super::*;
    use test_etcd::EtcdProcess;

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse_url("etcd://a:2379,b:2380").expect("valid"),
            vec!["http://a:2379", "http://b:2380"]
        );
        assert_eq!(
            parse_url("etcd://[::1]:2379/").expect("valid"),
            vec!["http://[::1]:2379"]
        );
        for bad in [
            "http://a:1",
            "etcd://",
            "etcd://a",
            "etcd://a:x",
            "etcd://a:1,",
            "etcd://u:p@a:1",
            "etcd://a:1/prefix",
        ] {
            let err = parse_url(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid etcd url"), "{err}");
        }
        let err = parse_url("etcds://a:1").expect_err("tls");
        assert!(err.to_string().contains("TLS"), "{err}");
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[tokio::test]
    async fn tls_is_refused_clearly() {
        let options = EtcdOptions {
            tls: Some(EtcdTls::default()),
            ..EtcdOptions::default()
        };
        let err = EtcdStore::connect("etcd://127.0.0.1:1", options)
            .await
            .err()
            .expect("tls refused");
        assert!(err.to_string().contains("TLS"), "{err}");
    }

    #[tokio::test]
    async fn etcd_store_conforms() {
        let etcd = EtcdProcess::start().await;
        let store = EtcdStore::connect(&etcd.url(), EtcdOptions::default())
            .await
            .expect("connect");
        store.ping().await.expect("ping");
        crate::store::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn prefixes_isolate_and_large_values_are_refused() {
        let etcd = EtcdProcess::start().await;
        let url = etcd.url();
        let connect = |prefix: &str| {
            EtcdStore::connect(
                &url,
                EtcdOptions {
                    key_prefix: prefix.to_string(),
                    ..EtcdOptions::default()
                },
            )
        };
        let a = connect("/a").await.expect("connect");
        let b = connect("/b/").await.expect("connect");
        assert_eq!(a.key_prefix(), "/a/");
        a.put("k", b"from a".to_vec(), Precondition::Absent)
            .await
            .expect("put");
        assert!(b.get("k").await.expect("get").is_none());
        assert!(b.list("").await.expect("list").is_empty());
        let listed = a.list("").await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, "k");

        let err = a
            .put("big", vec![0; MAX_VALUE_BYTES + 1], Precondition::None)
            .await
            .expect_err("too large");
        assert!(err.to_string().contains("at most"), "{err}");
        a.put("max", vec![7; MAX_VALUE_BYTES], Precondition::None)
            .await
            .expect("a value at the limit fits");

        // Listings span pages and stay in key order.
        for i in 0..(LIST_PAGE * 2 + 5) {
            b.put(&format!("many/{i:04}"), vec![1], Precondition::None)
                .await
                .expect("put");
        }
        let keys: Vec<String> = b
            .list("many/")
            .await
            .expect("list")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let expected: Vec<String> = (0..(LIST_PAGE * 2 + 5))
            .map(|i| format!("many/{i:04}"))
            .collect();
        assert_eq!(keys, expected);
    }
}
