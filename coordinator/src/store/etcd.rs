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
//! TLS: with [`EtcdOptions::tls`] set (a CA, and optionally a client
//! certificate and key for mutual TLS) every endpoint is reached over
//! `https` (rustls); `etcds://` URLs require it. The files are read and
//! checked in [`EtcdStore::connect`], so a missing or malformed file fails
//! at once with an error naming it; a handshake that fails (a server
//! certificate not signed by the CA, a client certificate etcd refuses or
//! does not get) fails each call at once, within the request timeout at
//! most, with an error that says which side refused and what to check.
//!
//! Fencing: a leader's store ([`EtcdStore::with_fence`]) makes every write
//! conditional on its election key still existing at the revision it was
//! created with. Once the leader is deposed (its lease expired, its key
//! deleted) etcd refuses its writes atomically, however late they arrive;
//! such a write fails with [`StoreError::Fenced`] and marks the fence
//! deposed, which ends the leader's term (see
//! [`crate::election::run_leader_loop`]).

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, KvClient, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse, TxnResponse,
};

use super::{Precondition, Store, StoreError, StoreResult, Version, Versioned};
use crate::etcd::Fence;
use crate::etcd::connect::host_port;
use crate::etcd::errors::store_error;

pub use crate::etcd::connect::{EtcdCredentials, EtcdOptions, EtcdTls, connect_client, parse_url};

/// Largest value the etcd store accepts.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Keys read per page by [`Store::list`].
const LIST_PAGE: i64 = 128;
/// Largest gRPC response the store decodes (a full page of maximal values).
const MAX_DECODE_BYTES: usize = 256 * 1024 * 1024;

/// Durable state in etcd. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    kv: KvClient,
    /// `HOST:PORT` of every endpoint.
    endpoints: Vec<String>,
    tls: bool,
    prefix: String,
    timeout: Duration,
    /// Set on a leader's store: every write requires the leader key.
    fence: Option<Fence>,
}

impl EtcdStore {
    /// Connects to `url`, `etcd://HOST:PORT[,HOST:PORT…]` (or `etcds://…`,
    /// which requires [`EtcdOptions::tls`]; with TLS options `etcd://` URLs
    /// use TLS as well).
    ///
    /// TLS files are read and checked here. Connections are made lazily
    /// (except to authenticate when credentials are given), so this
    /// succeeds while etcd is down; use [`EtcdStore::ping`] to check
    /// reachability.
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
        let tls = options.tls.is_some();
        let endpoints = endpoints.iter().map(|e| host_port(e).to_string()).collect();
        Ok(Self {
            client,
            kv,
            endpoints,
            tls,
            prefix,
            timeout: options.request_timeout,
            fence: None,
        })
    }

    /// This store with every write fenced by `fence` (a leader's term, see
    /// [`crate::election::LeaderGuard::fence`]): a write is applied only
    /// while the leader key exists at the fence's creation revision,
    /// otherwise it fails with [`StoreError::Fenced`] and the fence is
    /// marked deposed. Once the fence is deposed, writes fail without
    /// reaching etcd. Reads are not fenced. Clones share the connection.
    pub fn with_fence(&self, fence: Fence) -> Self {
        Self {
            fence: Some(fence),
            ..self.clone()
        }
    }

    /// The fence of this store's writes, if any.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
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

    /// One range request: at most `limit` keys in `[start, end)`, at
    /// `revision` when given; the pairs (keys without this store's prefix),
    /// whether more keys follow, and the revision read.
    async fn range(
        &self,
        start: Vec<u8>,
        end: &[u8],
        limit: i64,
        at_revision: Option<i64>,
    ) -> StoreResult<(Vec<(String, Versioned)>, bool, i64)> {
        let mut options = GetOptions::new()
            .with_range(end.to_vec())
            .with_limit(limit)
            .with_sort(SortTarget::Key, SortOrder::Ascend);
        if let Some(rev) = at_revision {
            options = options.with_revision(rev);
        }
        let mut kv = self.kv.clone();
        let response = self.call("list", kv.get(start, Some(options))).await?;
        let read_at = match at_revision {
            Some(rev) => rev,
            None => revision(response.header())? as i64,
        };
        let mut out = Vec::with_capacity(response.kvs().len());
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
        Ok((out, response.more(), read_at))
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
            Ok(result) => result.map_err(|e| store_error(what, e, self.tls)),
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
        let mut compares: Vec<Compare> = compare.into_iter().collect();
        if let Some(fence) = &self.fence {
            if fence.is_deposed() {
                return Err(fenced(key));
            }
            // The leader key exists at the revision it was created with:
            // neither deleted (lease expired, resigned) nor re-created.
            compares.push(Compare::create_revision(
                fence.key(),
                CompareOp::Equal,
                fence.revision(),
            ));
        }
        let txn = match (compares.is_empty(), &self.fence) {
            (true, _) => Txn::new().and_then([op]),
            (false, None) => Txn::new().when(compares).and_then([op]),
            // On failure, read the leader key to tell a lost fence from a
            // failed precondition (in the same transaction, so atomically).
            (false, Some(fence)) => Txn::new()
                .when(compares)
                .and_then([op])
                .or_else([TxnOp::get(fence.key(), None)]),
        };
        let mut kv = self.kv.clone();
        let response = self.call(what, kv.txn(txn)).await?;
        if !response.succeeded() {
            if let Some(fence) = &self.fence
                && !fence_holds(&response, fence)
            {
                tracing::warn!(
                    key,
                    leader_key = %String::from_utf8_lossy(fence.key()),
                    revision = fence.revision(),
                    "etcd refused a write: this coordinator is no longer the leader"
                );
                fence.depose();
                return Err(fenced(key));
            }
            return Err(conflict(key));
        }
        revision(response.header())
    }
}

/// Whether the failed transaction's read of the leader key (its `or_else`)
/// found it at the fence's revision.
fn fence_holds(response: &TxnResponse, fence: &Fence) -> bool {
    response.op_responses().iter().any(|op| match op {
        TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .is_some_and(|kv| kv.create_revision() == fence.revision()),
        _ => false,
    })
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
            let (page, more, revision) = self.range(start, &end, LIST_PAGE, at_revision).await?;
            at_revision = Some(revision);
            let last = page.last().map(|(k, _)| self.full_key(k).into_bytes());
            out.extend(page);
            match last {
                Some(mut last) if more => {
                    last.push(0);
                    start = last;
                }
                _ => return Ok(out),
            }
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Versioned)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let full_prefix = self.full_key(prefix);
        let end = prefix_end(full_prefix.as_bytes());
        let start = match after {
            // The first key after `after` is `after` followed by a zero byte.
            Some(a) if a > prefix => {
                let mut k = self.full_key(a).into_bytes();
                k.push(0);
                k
            }
            _ => full_prefix.into_bytes(),
        };
        if start >= end {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self.range(start, &end, limit, None).await?.0)
    }

    fn describe(&self) -> String {
        format!(
            "{}://{} (prefix {})",
            if self.tls { "etcds" } else { "etcd" },
            self.endpoints.join(","),
            self.prefix
        )
    }
}

fn conflict(key: &str) -> StoreError {
    StoreError::Conflict {
        key: key.to_string(),
    }
}

fn fenced(key: &str) -> StoreError {
    StoreError::Fenced {
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

#[cfg(test)]
pub(crate) use sigsweep_testkit::etcd as test_etcd;

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
        assert_eq!(
            parse_url("etcds://a:1,b:2").expect("valid"),
            vec!["https://a:1", "https://b:2"]
        );
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    /// Bad TLS settings fail in `connect`, before any request, naming the
    /// file at fault.
    #[tokio::test]
    async fn tls_settings_are_checked_with_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let garbage = write("garbage.pem", "not a certificate\n");
        let missing = dir.path().join("missing.pem");
        let connect = |url: &'static str, tls: Option<EtcdTls>| {
            EtcdStore::connect(
                url,
                EtcdOptions {
                    tls,
                    ..EtcdOptions::default()
                },
            )
        };
        let tls = |ca: Option<&std::path::Path>,
                   cert: Option<&std::path::Path>,
                   key: Option<&std::path::Path>| EtcdTls {
            ca: ca.map(Into::into),
            cert: cert.map(Into::into),
            key: key.map(Into::into),
        };
        let cases = [
            (
                "etcds://127.0.0.1:1",
                None,
                vec!["etcds:// needs TLS settings", "--etcd-ca"],
            ),
            (
                "etcd://127.0.0.1:1",
                Some(tls(None, None, None)),
                vec!["needs the CA certificate", "--etcd-ca"],
            ),
            (
                "etcd://127.0.0.1:1",
                Some(tls(Some(&missing), None, None)),
                vec!["cannot read the etcd CA certificate", "missing.pem"],
            ),
            (
                "etcd://127.0.0.1:1",
                Some(tls(Some(&garbage), None, None)),
                vec!["CA certificate", "garbage.pem", "no PEM certificate"],
            ),
        ];
        for (url, settings, expected) in cases {
            let err = connect(url, settings).await.err().expect("refused");
            let text = err.to_string();
            assert!(matches!(err, StoreError::Internal(_)), "{text}");
            for part in expected {
                assert!(text.contains(part), "`{part}` missing from: {text}");
            }
        }
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

    /// The whole conformance suite over mutual TLS (etcd requires client
    /// certificates), with the `etcds://` scheme.
    #[tokio::test]
    async fn etcd_store_conforms_over_mutual_tls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = test_etcd::TestPki::generate(dir.path());
        let etcd = EtcdProcess::start_tls(pki.server_tls(true)).await;
        let options = EtcdOptions {
            tls: Some(EtcdTls {
                ca: Some(pki.ca.clone()),
                cert: Some(pki.client_cert.clone()),
                key: Some(pki.client_key.clone()),
            }),
            ..EtcdOptions::default()
        };
        let url = format!("etcds://{}", etcd.endpoint());
        let store = EtcdStore::connect(&url, options).await.expect("connect");
        assert!(store.describe().starts_with("etcds://127.0.0.1:"));
        store.ping().await.expect("ping over mutual TLS");
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
