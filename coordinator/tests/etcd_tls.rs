//! The etcd store over TLS against a real etcd serving clients over TLS,
//! with certificates made in the test: mutual TLS works (store and
//! election), and every way of getting it wrong fails with an error that
//! says what is wrong — bad files at `connect`, naming the file; a
//! handshake the server refuses (no client certificate, a certificate from
//! another CA, a server from another CA, plaintext) within the request
//! timeout, never hanging.

use sigsweep_testkit::etcd as etcd_harness;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use etcd_harness::{EtcdProcess, TestPki};
use sigsweep_coordinator::election::campaign;
use sigsweep_coordinator::store::{
    EtcdOptions, EtcdStore, EtcdTls, Precondition, Store, StoreError,
};

const TIMEOUT: Duration = Duration::from_secs(2);

fn options(ca: Option<&PathBuf>, identity: Option<(&PathBuf, &PathBuf)>) -> EtcdOptions {
    EtcdOptions {
        request_timeout: TIMEOUT,
        connect_timeout: Duration::from_secs(1),
        tls: Some(EtcdTls {
            ca: ca.cloned(),
            cert: identity.map(|(c, _)| c.clone()),
            key: identity.map(|(_, k)| k.clone()),
        }),
        ..EtcdOptions::default()
    }
}

fn mutual(pki: &TestPki) -> EtcdOptions {
    options(Some(&pki.ca), Some((&pki.client_cert, &pki.client_key)))
}

/// `ping` fails, not as a timeout, within the request timeout (plus slack
/// for a loaded machine), with an error containing all of `expected`.
async fn assert_refused(store: &EtcdStore, what: &str, expected: &[&str]) {
    let started = Instant::now();
    let err = store.ping().await.expect_err(what);
    let elapsed = started.elapsed();
    let text = err.to_string();
    eprintln!("{what}: {text} (after {elapsed:?})");
    assert!(
        elapsed < TIMEOUT + Duration::from_secs(3),
        "{what}: took {elapsed:?}"
    );
    assert!(
        expected.iter().all(|e| text.contains(e)),
        "{what}: expected all of {expected:?} in: {text}"
    );
}

#[tokio::test]
async fn mutual_tls_store_and_election_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(dir.path());
    let etcd = EtcdProcess::start_tls(pki.server_tls(true)).await;
    // `etcd://` with TLS settings uses TLS.
    let store = EtcdStore::connect(&etcd.url(), mutual(&pki))
        .await
        .expect("connect");
    assert!(
        store.describe().starts_with("etcds://"),
        "{}",
        store.describe()
    );
    store.ping().await.expect("ping");
    let v1 = store
        .put("sweeps/s", b"one".to_vec(), Precondition::Absent)
        .await
        .expect("put");
    let err = store
        .put("sweeps/s", b"two".to_vec(), Precondition::Absent)
        .await
        .expect_err("absent");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let v2 = store
        .put("sweeps/s", b"two".to_vec(), Precondition::Version(v1))
        .await
        .expect("cas");
    assert_eq!(
        store.get("sweeps/s").await.expect("get"),
        Some(sigsweep_coordinator::store::Versioned {
            version: v2,
            value: b"two".to_vec()
        })
    );
    assert_eq!(store.list("sweeps/").await.expect("list").len(), 1);

    // The election runs on the store's (TLS) client, and a fenced store
    // writes over it too.
    let guard = campaign(store.client(), "/sigsweep-test/tls", "a", TIMEOUT)
        .await
        .expect("campaign over TLS");
    let fenced = store.with_fence(guard.fence());
    fenced
        .put("sweeps/t", b"x".to_vec(), Precondition::Absent)
        .await
        .expect("fenced write over TLS");
    guard.resign().await.expect("resign");
}

/// Server-only TLS (no client certificates): the CA alone is enough, with
/// either scheme.
#[tokio::test]
async fn server_only_tls_needs_just_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(dir.path());
    let etcd = EtcdProcess::start_tls(pki.server_tls(false)).await;
    for url in [etcd.url(), format!("etcds://{}", etcd.endpoint())] {
        let store = EtcdStore::connect(&url, options(Some(&pki.ca), None))
            .await
            .expect("connect");
        store.ping().await.expect("ping");
    }
}

#[tokio::test]
async fn refused_handshakes_fail_clearly_and_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(&dir.path().join("good"));
    let other = TestPki::generate(&dir.path().join("other"));
    let etcd = EtcdProcess::start_tls(pki.server_tls(true)).await;
    let url = etcd.url();

    // No client certificate: etcd ends the handshake.
    let store = EtcdStore::connect(&url, options(Some(&pki.ca), None))
        .await
        .expect("connect is lazy");
    assert_refused(&store, "without a client certificate", &["--etcd-cert"]).await;

    // A client certificate from another CA: etcd refuses it.
    let store = EtcdStore::connect(
        &url,
        options(Some(&pki.ca), Some((&other.client_cert, &other.client_key))),
    )
    .await
    .expect("connect is lazy");
    assert_refused(
        &store,
        "with a client certificate of another CA",
        &["--etcd-cert"],
    )
    .await;

    // Trusting the wrong CA: the server's certificate is refused here.
    let store = EtcdStore::connect(
        &url,
        options(Some(&other.ca), Some((&pki.client_cert, &pki.client_key))),
    )
    .await
    .expect("connect is lazy");
    assert_refused(
        &store,
        "trusting another CA",
        &["invalid peer certificate", "--etcd-ca"],
    )
    .await;

    // Plaintext to a TLS server.
    let plain = EtcdOptions {
        request_timeout: TIMEOUT,
        connect_timeout: Duration::from_secs(1),
        ..EtcdOptions::default()
    };
    let store = EtcdStore::connect(&url, plain)
        .await
        .expect("connect is lazy");
    let started = Instant::now();
    let err = store.ping().await.expect_err("plaintext to TLS");
    eprintln!("plaintext: {err} (after {:?})", started.elapsed());
    assert!(started.elapsed() < TIMEOUT + Duration::from_secs(3));
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("--etcd-ca"), "{err}");
}

/// Bad settings fail in `connect`, before any request, naming the file.
#[tokio::test]
async fn bad_tls_files_fail_at_connect_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(dir.path());
    let missing = dir.path().join("missing.key");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").expect("write");
    let url = "etcd://127.0.0.1:1";
    let cases: Vec<(EtcdOptions, Vec<&str>)> = vec![
        (
            options(Some(&pki.ca), Some((&pki.client_cert, &missing))),
            vec!["cannot read the etcd client key", "missing.key"],
        ),
        (
            options(Some(&pki.ca), Some((&missing, &pki.client_key))),
            vec!["cannot read the etcd client certificate", "missing.key"],
        ),
        (
            options(Some(&garbage), None),
            vec!["etcd CA certificate", "garbage.pem", "malformed"],
        ),
        (
            options(Some(&pki.ca), Some((&pki.client_cert, &pki.client_cert))),
            vec!["etcd client key", "client.crt", "no PEM private key"],
        ),
        (
            options(Some(&pki.ca), Some((&pki.client_key, &pki.client_key))),
            vec![
                "etcd client certificate",
                "client.key",
                "no PEM certificate",
            ],
        ),
        (
            EtcdOptions {
                tls: Some(EtcdTls {
                    ca: Some(pki.ca.clone()),
                    cert: Some(pki.client_cert.clone()),
                    key: None,
                }),
                ..EtcdOptions::default()
            },
            vec!["--etcd-cert", "needs its key"],
        ),
        (
            EtcdOptions {
                tls: Some(EtcdTls {
                    ca: Some(pki.ca.clone()),
                    cert: None,
                    key: Some(pki.client_key.clone()),
                }),
                ..EtcdOptions::default()
            },
            vec!["--etcd-key", "needs its certificate"],
        ),
    ];
    for (options, expected) in cases {
        let started = Instant::now();
        let err = EtcdStore::connect(url, options)
            .await
            .err()
            .expect("refused");
        assert!(started.elapsed() < Duration::from_secs(1));
        let text = err.to_string();
        assert!(matches!(err, StoreError::Internal(_)), "{text}");
        for part in expected {
            assert!(text.contains(part), "`{part}` missing from: {text}");
        }
    }
}

/// TLS to an etcd that serves plaintext fails at once, saying so.
#[tokio::test]
async fn tls_to_a_plaintext_etcd_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(dir.path());
    let etcd = EtcdProcess::start().await;
    let store = EtcdStore::connect(&etcd.url(), mutual(&pki))
        .await
        .expect("connect is lazy");
    assert_refused(&store, "TLS to plaintext", &["TLS (https)"]).await;
}
