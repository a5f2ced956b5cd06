//! Distributed-mode tests with real processes: the `sigsweep` binary as
//! coordinator(s), workers and CLI client, a real etcd (`coordinator/tests/common/etcd.rs`),
//! TLS certificates made in the test (rcgen), faults injected with SIGKILL
//! and SIGSTOP. Sweeps are tiny (late-fusion, small synthetic data), so the
//! file runs in a few minutes on two cores.
//!
//! Every sweep test checks the invariant that matters: exactly one result
//! per (configuration, seed), none duplicated.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::etcd::EtcdProcess;
use common::proc::{BIN, Proc, free_port};
use sigsweep_proto::v1 as pb;
use sigsweep_proto::v1::sweep_service_client::SweepServiceClient;

/// A tiny sweep: `grid` × `seeds` trials of late-fusion on synthetic data.
fn sweep_file(
    dir: &Path,
    name: &str,
    seeds: u32,
    epochs: u32,
    n_train: u32,
    grid: &str,
    extra: &str,
) -> PathBuf {
    let baseline = if grid.starts_with("lr") {
        "lr = 0.005"
    } else {
        "modality_hidden = 8"
    };
    common::fixture::TinySweep {
        name: name.into(),
        seeds,
        epochs,
        n_train,
        grid: grid.into(),
        baseline: baseline.into(),
        report: r#"{ accuracy = "max" }"#.into(),
        tail: extra.into(),
    }
    .write(dir)
}

fn coordinator(dir: &Path, what: &str, port: u16, store: &str, extra: &[&str]) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "coordinator",
        "--listen",
        &listen,
        "--store",
        store,
        "--lease-ttl",
        "2s",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(what, dir, &args, &[])
}

fn worker(dir: &Path, name: &str, url: &str) -> Proc {
    Proc::spawn(
        name,
        dir,
        &["worker", "--coordinator", url, "--name", name],
        &[],
    )
}

fn sigsweep(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sigsweep")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn client(url: &str) -> SweepServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .expect("url")
        .connect_lazy();
    SweepServiceClient::new(channel)
}

/// Submits once the coordinator answers; returns the sweep id.
async fn submit(url: &str, sweep: &Path, procs: &[&Proc]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let source = std::fs::read_to_string(sweep).expect("sweep");
    loop {
        let mut c = client(url).await;
        match c
            .submit_sweep(pb::SubmitSweepRequest {
                sweep_toml: source.clone(),
                source_name: sweep.display().to_string(),
            })
            .await
        {
            Ok(r) => return r.into_inner().sweep_id,
            Err(s) => assert!(
                s.code() == tonic::Code::Unavailable && Instant::now() < deadline,
                "submit failed: {s}\n{}",
                logs(procs)
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn logs(procs: &[&Proc]) -> String {
    procs.iter().map(|p| p.log()).collect::<Vec<_>>().join("\n")
}

async fn status(url: &str, sweep_id: &str) -> Result<pb::SweepStatus, tonic::Status> {
    let mut c = client(url).await;
    c.get_sweep(pb::GetSweepRequest {
        sweep_id: sweep_id.to_string(),
    })
    .await
    .map(tonic::Response::into_inner)
}

/// Waits until `done(status)` holds.
async fn wait_for(
    url: &str,
    sweep_id: &str,
    limit: Duration,
    procs: &[&Proc],
    what: &str,
    done: impl Fn(&pb::SweepStatus) -> bool,
) -> pb::SweepStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(s) = status(url, sweep_id).await
            && done(&s)
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            logs(procs)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_finished(
    url: &str,
    sweep_id: &str,
    limit: Duration,
    procs: &[&Proc],
) -> pb::SweepStatus {
    wait_for(url, sweep_id, limit, procs, "the sweep to finish", |s| {
        s.state == pb::SweepState::Finished as i32
    })
    .await
}

async fn results(url: &str, sweep_id: &str) -> Vec<pb::TrialResult> {
    let mut c = client(url).await;
    c.list_results(pb::ListResultsRequest {
        sweep_id: sweep_id.to_string(),
    })
    .await
    .expect("results")
    .into_inner()
    .results
}

/// Exactly one result per (configuration, seed), `expected` in all.
fn assert_one_result_per_trial(rows: &[pb::TrialResult], expected: usize) {
    assert_eq!(rows.len(), expected, "one result per trial: {rows:#?}");
    let ids: HashSet<&str> = rows.iter().map(|r| r.trial_id.as_str()).collect();
    assert_eq!(ids.len(), expected, "no trial id repeats");
    let pairs: HashSet<(&str, u64)> = rows
        .iter()
        .map(|r| (r.config_key.as_str(), r.seed))
        .collect();
    assert_eq!(pairs.len(), expected, "no (configuration, seed) repeats");
}

fn assert_all_completed(rows: &[pb::TrialResult]) {
    for r in rows {
        assert_eq!(r.outcome, pb::TrialOutcome::Completed as i32, "{r:?}");
    }
}

/// GET `path` over plain HTTP/1.1; the body.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn health(addr: &str, service: &str) -> Result<i32, tonic::Status> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect_lazy();
    let mut c = HealthClient::new(channel);
    c.check(HealthCheckRequest {
        service: service.to_string(),
    })
    .await
    .map(|r| r.into_inner().status)
}

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

// ---------------------------------------------------------------- security

struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sigsweep test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) =
        leaf(vec!["worker-0".into()], ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write pem");
        path
    };
    Pki {
        ca: write("ca.crt", &ca.pem()),
        server_cert: write("server.crt", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.crt", &client_cert),
        client_key: write("client.key", &client_key),
    }
}

/// Runs `sigsweep status` until the coordinator answers (it may still be
/// starting) or `limit` passes; returns the last output.
fn status_until_ok(args: &[&str], limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        let out = sigsweep(args);
        if out.status.success() || Instant::now() >= deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn mutual_tls_admits_clients_with_a_certificate_and_refuses_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let port = free_port();
    let store = format!("embedded:{}", dir.path().join("state").display());
    let p = |p: &PathBuf| p.to_str().expect("utf8").to_string();
    let (ca, cert, key, ccert, ckey) = (
        p(&pki.ca),
        p(&pki.server_cert),
        p(&pki.server_key),
        p(&pki.client_cert),
        p(&pki.client_key),
    );
    let coord = coordinator(
        dir.path(),
        "coordinator",
        port,
        &store,
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca],
    );
    let https = format!("https://localhost:{port}");
    let out = status_until_ok(
        &[
            "status",
            "--coordinator",
            &https,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &ccert,
            "--tls-key",
            &ckey,
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "TLS client with a certificate: {}\n{}",
        text(&out),
        coord.log()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no sweeps"),
        "{}",
        text(&out)
    );

    // No client certificate: the handshake fails (mutual TLS required).
    let out = sigsweep(&["status", "--coordinator", &https, "--tls-ca", &ca]);
    assert!(
        !out.status.success(),
        "TLS client without a certificate must fail: {}",
        text(&out)
    );
    // Plaintext to a TLS port fails.
    let out = sigsweep(&[
        "status",
        "--coordinator",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert!(
        !out.status.success(),
        "plaintext client must fail: {}",
        text(&out)
    );
    // https without a CA is refused up front, with a message saying why.
    let out = sigsweep(&["status", "--coordinator", &https]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--tls-ca"),
        "{}",
        text(&out)
    );
}

#[test]
fn plaintext_on_a_non_loopback_address_needs_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().join("state").display());
    let out = sigsweep(&["coordinator", "--listen", "0.0.0.0:0", "--store", &store]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--insecure"),
        "{}",
        text(&out)
    );
    // Clients refuse plaintext to a non-loopback host unless told otherwise.
    let out = sigsweep(&["status", "--coordinator", "http://192.0.2.1:50051"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--insecure"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_for_every_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("token");
    let wrong_file = dir.path().join("wrong");
    std::fs::write(&wrong_file, "not-it").expect("token");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let store = format!("embedded:{}", dir.path().join("state").display());
    let coord = coordinator(
        dir.path(),
        "coordinator",
        port,
        &store,
        &["--token-file", token_file.to_str().expect("utf8")],
    );
    let sweep = sweep_file(dir.path(), "tok", 1, 1, 64, "modality_hidden = [2, 8]", "");
    let source = std::fs::read_to_string(&sweep).expect("sweep");
    let request = || pb::SubmitSweepRequest {
        sweep_toml: source.clone(),
        source_name: "tok.toml".into(),
    };

    // Reads need the token too: sweep files name private data paths and
    // results are unpublished work.
    let token_s = token_file.to_str().expect("utf8");
    let out = status_until_ok(
        &["status", "--coordinator", &url, "--token-file", token_s],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}\n{}", text(&out), coord.log());
    let out = sigsweep(&["status", "--coordinator", &url]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bearer token"),
        "{}",
        text(&out)
    );

    let mut c = client(&url).await;
    let missing = c.submit_sweep(request()).await.expect_err("no token");
    assert_eq!(missing.code(), tonic::Code::Unauthenticated, "{missing}");
    let mut wrong = tonic::Request::new(request());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().expect("header"));
    let e = c.submit_sweep(wrong).await.expect_err("wrong token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let mut right = tonic::Request::new(request());
    right.metadata_mut().insert(
        "authorization",
        "Bearer s3cret-token".parse().expect("header"),
    );
    let id = c
        .submit_sweep(right)
        .await
        .expect("right token")
        .into_inner()
        .sweep_id;

    // The CLI sends the token from --token-file.
    let sweep_s = sweep.to_str().expect("utf8");
    let out = sigsweep(&["submit", sweep_s, "--coordinator", &url]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = sigsweep(&[
        "submit",
        sweep_s,
        "--coordinator",
        &url,
        "--token-file",
        wrong_file.to_str().expect("utf8"),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = sigsweep(&[
        "submit",
        sweep_s,
        "--coordinator",
        &url,
        "--token-file",
        token_file.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
    // Every reading command takes --token-file too.
    for args in [
        &["results", id.as_str(), "--coordinator", url.as_str()][..],
        &[
            "report",
            id.as_str(),
            "--coordinator",
            url.as_str(),
            "--format",
            "json",
        ][..],
    ] {
        let out = sigsweep(args);
        assert!(
            !out.status.success(),
            "{args:?} without the token: {}",
            text(&out)
        );
        let mut with = args.to_vec();
        with.extend(["--token-file", token_s]);
        let out = sigsweep(&with);
        assert!(out.status.success(), "{with:?}: {}", text(&out));
    }
    let e = c
        .cancel_sweep(pb::CancelSweepRequest {
            sweep_id: id.clone(),
        })
        .await
        .expect_err("cancel without token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let out = sigsweep(&[
        "cancel",
        &id,
        "--coordinator",
        &url,
        "--token-file",
        token_file.to_str().expect("utf8"),
    ]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("cancelled"),
        "{}",
        text(&out)
    );
    // The token never reaches the log.
    assert!(
        !std::fs::read_to_string(&coord.log_path)
            .unwrap_or_default()
            .contains("s3cret")
    );
}

// ------------------------------------------------- config, health, metrics

#[test]
fn print_config_layers_defaults_file_environment_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sigsweep.toml");
    std::fs::write(
        &file,
        "[coordinator]\nlisten = \"127.0.0.1:7001\"\nlease_ttl = \"5m\"\nstore = \"embedded:/from-file\"\nadvertise = \"file\"\n\n[worker]\nbackend = \"cpu\"\n",
    )
    .expect("config");
    let out = Command::new(BIN)
        .args([
            "coordinator",
            "--config",
            file.to_str().expect("utf8"),
            "--print-config",
            "--advertise",
            "flag",
        ])
        .env("SIGSWEEP_STORE", "embedded:/from-env")
        .env("SIGSWEEP_ADVERTISE", "env")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("listen = \"127.0.0.1:7001\""),
        "file: {printed}"
    );
    assert!(printed.contains("lease_ttl = \"5m\""), "file: {printed}");
    assert!(
        printed.contains("store = \"embedded:/from-env\""),
        "env over file: {printed}"
    );
    assert!(
        printed.contains("advertise = \"flag\""),
        "flag over env: {printed}"
    );
    assert!(
        printed.contains("election_ttl = \"10s\""),
        "default: {printed}"
    );

    std::fs::write(
        &file,
        "[coordinator]\nlisten = \"127.0.0.1:7001\"\n\nlease_tll = \"5m\"\n",
    )
    .expect("config");
    let out = sigsweep(&[
        "coordinator",
        "--config",
        file.to_str().expect("utf8"),
        "--print-config",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("sigsweep.toml")
            && err.contains("line 4")
            && err.contains("lease_tll"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_answers_unavailable_and_takes_over_when_the_leader_dies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = EtcdProcess::start().await;
    let (pa, pb_) = (free_port(), free_port());
    let (ha, hb) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let (ma, mb) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut a = coordinator(
        dir.path(),
        "coord-a",
        pa,
        &etcd.url(),
        &[
            "--advertise",
            "a",
            "--election-ttl",
            "3s",
            "--health-listen",
            &ha,
            "--metrics-listen",
            &ma,
        ],
    );
    let url_a = format!("http://127.0.0.1:{pa}");
    let url_b = format!("http://127.0.0.1:{pb_}");
    // A leads (it is alone); then B starts and stands by.
    let deadline = Instant::now() + Duration::from_secs(30);
    while health(&ha, "sigsweep.v1.SweepService").await.ok() != Some(SERVING) {
        assert!(Instant::now() < deadline, "A never led\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b = coordinator(
        dir.path(),
        "coord-b",
        pb_,
        &etcd.url(),
        &[
            "--advertise",
            "b",
            "--election-ttl",
            "3s",
            "--health-listen",
            &hb,
            "--metrics-listen",
            &mb,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while health(&hb, "").await.ok() != Some(SERVING) {
        assert!(Instant::now() < deadline, "B never came up\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        health(&hb, "sigsweep.v1.SweepService").await.ok(),
        Some(NOT_SERVING)
    );
    let e = client(&url_b)
        .await
        .list_sweeps(pb::ListSweepsRequest {})
        .await
        .expect_err("standby");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
    let metrics_b = http_get(&mb, "/metrics").expect("metrics B");
    assert_eq!(
        metric(&metrics_b, "sigsweep_leader"),
        Some(0.0),
        "{metrics_b}"
    );

    let sweep = sweep_file(
        dir.path(),
        "failover",
        2,
        20,
        20000,
        "modality_hidden = [2, 8]",
        "",
    );
    let id = submit(&url_a, &sweep, &[&a, &b]).await;
    // One worker per coordinator address: the one pointed at A must move.
    let proxy = LeaderProxy::start(vec![(pa, ma.clone()), (pb_, mb.clone())]).await;
    let wa = worker(dir.path(), "w-a", &proxy.url());
    let w2 = worker(dir.path(), "w-b", &proxy.url());
    wait_for(
        &url_a,
        &id,
        Duration::from_secs(60),
        &[&a, &wa, &w2],
        "a trial to complete",
        |s| s.completed >= 1,
    )
    .await;
    let metrics_a = http_get(&ma, "/metrics").expect("metrics A");
    assert_eq!(
        metric(&metrics_a, "sigsweep_leader"),
        Some(1.0),
        "{metrics_a}"
    );
    assert!(
        metric(&metrics_a, "sigsweep_trials_completed").unwrap_or(0.0) >= 1.0,
        "{metrics_a}"
    );
    assert!(
        metric(&metrics_a, "sigsweep_workers_live").is_some(),
        "{metrics_a}"
    );

    a.kill9();
    let s = wait_finished(&url_b, &id, Duration::from_secs(120), &[&b, &wa, &w2]).await;
    assert_eq!(s.completed, 4, "{s:?}");
    assert_eq!(
        health(&hb, "sigsweep.v1.SweepService").await.ok(),
        Some(SERVING)
    );
    let rows = results(&url_b, &id).await;
    assert_one_result_per_trial(&rows, 4);
    assert_all_completed(&rows);
    drop(proxy);
}

// ------------------------------------------------------------ fault tolerance

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_trial_is_leased_again_and_completes_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let store = format!("embedded:{}", dir.path().join("state").display());
    let coord = coordinator(dir.path(), "coordinator", port, &store, &[]);
    let sweep = sweep_file(
        dir.path(),
        "killw",
        2,
        20,
        20000,
        "modality_hidden = [2, 8]",
        "",
    );
    let id = submit(&url, &sweep, &[&coord]).await;
    let mut doomed = worker(dir.path(), "doomed", &url);
    wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        &[&coord, &doomed],
        "a running trial",
        |s| s.running >= 1,
    )
    .await;
    doomed.kill9();
    let survivor = worker(dir.path(), "survivor", &url);
    let s = wait_finished(&url, &id, Duration::from_secs(120), &[&coord, &survivor]).await;
    assert_eq!((s.completed, s.failed), (4, 0), "{s:?}");
    let rows = results(&url, &id).await;
    assert_one_result_per_trial(&rows, 4);
    assert_all_completed(&rows);
    assert!(
        rows.iter().any(|r| r.worker.contains("survivor")),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_coordinator_restarted_on_its_store_finishes_the_sweep() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = EtcdProcess::start().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut first = coordinator(
        dir.path(),
        "coord-1",
        port,
        &etcd.url(),
        &["--election-ttl", "2s"],
    );
    let sweep = sweep_file(
        dir.path(),
        "killc",
        2,
        20,
        20000,
        "modality_hidden = [2, 8]",
        "",
    );
    let id = submit(&url, &sweep, &[&first]).await;
    let w = worker(dir.path(), "w", &url);
    wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        &[&first, &w],
        "a completed trial",
        |s| s.completed >= 1,
    )
    .await;
    first.kill9();
    let second = coordinator(
        dir.path(),
        "coord-2",
        port,
        &etcd.url(),
        &["--election-ttl", "2s"],
    );
    let s = wait_finished(&url, &id, Duration::from_secs(120), &[&second, &w]).await;
    assert_eq!(s.completed, 4, "{s:?}");
    let rows = results(&url, &id).await;
    assert_one_result_per_trial(&rows, 4);
    assert_all_completed(&rows);

    // Once more, with the sweep finished: the restarted coordinator still
    // serves it (status, list, results), exactly one result per trial.
    let mut second = second;
    second.kill9();
    let third = coordinator(
        dir.path(),
        "coord-3",
        port,
        &etcd.url(),
        &["--election-ttl", "2s"],
    );
    let s = wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        &[&third],
        "the finished sweep served after a restart",
        |s| s.completed == 4,
    )
    .await;
    assert_eq!((s.total, s.completed, s.failed), (4, 4, 0), "{s:?}");
    assert_eq!(s.state, pb::SweepState::Finished as i32, "{s:?}");
    let listed = client(&url)
        .await
        .list_sweeps(pb::ListSweepsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert!(listed.sweeps.iter().any(|s| s.sweep_id == id), "{listed:?}");
    let rows = results(&url, &id).await;
    assert_one_result_per_trial(&rows, 4);
    assert_all_completed(&rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_and_workers_recover_from_a_frozen_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = EtcdProcess::start().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut coord = coordinator(
        dir.path(),
        "coordinator",
        port,
        &etcd.url(),
        &["--election-ttl", "3s"],
    );
    let sweep = sweep_file(
        dir.path(),
        "freeze",
        2,
        20,
        20000,
        "modality_hidden = [2, 8]",
        "",
    );
    let id = submit(&url, &sweep, &[&coord]).await;
    let w = worker(dir.path(), "w", &url);
    wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        &[&coord, &w],
        "a running trial",
        |s| s.running >= 1,
    )
    .await;
    etcd.pause();
    tokio::time::sleep(Duration::from_secs(10)).await;
    etcd.resume();
    let s = wait_finished(&url, &id, Duration::from_secs(120), &[&coord, &w]).await;
    assert_eq!(s.completed, 4, "{s:?}");
    assert!(
        coord.exited().is_none(),
        "the coordinator survived\n{}",
        coord.log()
    );
    let log = std::fs::read_to_string(&coord.log_path).unwrap_or_default();
    assert!(
        log.contains("back to standby"),
        "leadership was lost while etcd was frozen\n{}",
        coord.log()
    );
    let rows = results(&url, &id).await;
    assert_one_result_per_trial(&rows, 4);
    assert_all_completed(&rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deterministic_failure_is_retried_max_retries_times_then_failed_and_left_unpaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let store = format!("embedded:{}", dir.path().join("state").display());
    let coord = coordinator(dir.path(), "coordinator", port, &store, &[]);
    // lr = 1e30 makes the loss non-finite in the first epoch.
    let sweep = sweep_file(
        dir.path(),
        "nan",
        2,
        2,
        128,
        "lr = [0.005, 1e30]",
        "[resources]\nmax_retries = 1\n",
    );
    let id = submit(&url, &sweep, &[&coord]).await;
    let w = worker(dir.path(), "w", &url);
    let s = wait_finished(&url, &id, Duration::from_secs(120), &[&coord, &w]).await;
    assert_eq!((s.completed, s.failed), (2, 2), "{s:?}");
    let rows = results(&url, &id).await;
    assert_one_result_per_trial(&rows, 4);
    for r in &rows {
        let huge_lr = r.config.iter().any(|p| {
            p.name == "lr" && matches!(p.value.as_ref().and_then(|v| v.kind.as_ref()), Some(pb::param_value::Kind::Float(x)) if *x > 1.0)
        });
        if huge_lr {
            assert_eq!(r.outcome, pb::TrialOutcome::Failed as i32, "{r:?}");
            assert!(r.attempts <= 2, "at most 1 + max_retries attempts: {r:?}");
            assert!(
                r.failure.to_lowercase().contains("finite")
                    || r.failure.to_lowercase().contains("nan"),
                "{r:?}"
            );
        } else {
            assert_eq!(r.outcome, pb::TrialOutcome::Completed as i32, "{r:?}");
        }
    }
    // The report only pairs seeds present on both sides: the failed
    // configuration has none, so it is reported without a paired test.
    let out = sigsweep(&["report", &id, "--coordinator", &url, "--format", "json"]);
    assert!(out.status.success(), "{}\n{}", text(&out), coord.log());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report json");
    let rows = report["tables"][0]["rows"].as_array().expect("report rows");
    let failed_row = rows
        .iter()
        .find(|r| {
            r["config_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("lr=1e"))
        })
        .expect("the failed configuration has a row");
    assert_eq!(failed_row["comparison"]["n_pairs"], 0, "{failed_row}");
    assert_eq!(
        failed_row["comparison"]["excluded_seeds"],
        serde_json::json!([0, 1]),
        "{failed_row}"
    );
    let failures = report["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures.iter().all(|f| f["reason"]
            .as_str()
            .is_some_and(|r| r.contains("NaN") || r.contains("finite"))),
        "{failures:?}"
    );
}

// --------------------------------------------------------------- helpers

/// A TCP proxy standing in for a Kubernetes Service whose readiness probe
/// keeps only the leader: each connection goes to the backend whose metrics
/// say `sigsweep_leader 1` (or, if none does, the first that accepts).
struct LeaderProxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl LeaderProxy {
    async fn start(backends: Vec<(u16, String)>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let backends = backends.clone();
                tokio::spawn(async move {
                    let leader = tokio::task::spawn_blocking(move || {
                        backends
                            .iter()
                            .find(|(_, m)| {
                                http_get(m, "/metrics")
                                    .ok()
                                    .and_then(|b| metric(&b, "sigsweep_leader"))
                                    == Some(1.0)
                            })
                            .or_else(|| backends.first())
                            .map(|(p, _)| *p)
                    })
                    .await
                    .ok()
                    .flatten();
                    let Some(port) = leader else { return };
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { port, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for LeaderProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
