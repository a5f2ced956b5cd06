//! Helpers of the distributed-mode tests (`tests/distributed.rs`,
//! `tests/security.rs`): coordinators, workers and the CLI as real
//! processes, sweeps submitted and watched over gRPC, a self-signed PKI, a
//! TCP proxy in front of the leader.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::proc::{BIN, Proc, free_port};
use sigsweep_proto::v1 as pb;
use sigsweep_proto::v1::sweep_service_client::SweepServiceClient;

/// A tiny sweep: `grid` × `seeds` trials of late-fusion on synthetic data.
pub fn sweep_file(
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
    super::fixture::TinySweep {
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

pub fn coordinator(dir: &Path, what: &str, port: u16, store: &str, extra: &[&str]) -> Proc {
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

/// A coordinator on a fresh embedded store in `dir/state`, on a free
/// port; its URL.
pub fn embedded_coordinator(dir: &Path) -> (Proc, String) {
    let port = free_port();
    let store = format!("embedded:{}", dir.join("state").display());
    let coord = coordinator(dir, "coordinator", port, &store, &[]);
    (coord, format!("http://127.0.0.1:{port}"))
}

pub fn worker(dir: &Path, name: &str, url: &str) -> Proc {
    Proc::spawn(
        name,
        dir,
        &["worker", "--coordinator", url, "--name", name],
        &[],
    )
}

pub fn sigsweep(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sigsweep")
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub async fn client(url: &str) -> SweepServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .expect("url")
        .connect_lazy();
    SweepServiceClient::new(channel)
}

/// Submits once the coordinator answers; returns the sweep id.
pub async fn submit(url: &str, sweep: &Path, procs: &[&Proc]) -> String {
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

pub fn logs(procs: &[&Proc]) -> String {
    procs.iter().map(|p| p.log()).collect::<Vec<_>>().join("\n")
}

pub async fn status(url: &str, sweep_id: &str) -> Result<pb::SweepStatus, tonic::Status> {
    let mut c = client(url).await;
    c.get_sweep(pb::GetSweepRequest {
        sweep_id: sweep_id.to_string(),
    })
    .await
    .map(tonic::Response::into_inner)
}

/// Waits until `done(status)` holds.
pub async fn wait_for(
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

pub async fn wait_finished(
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

/// Every sweep the coordinator at `url` knows.
pub async fn list_sweeps(url: &str) -> Vec<pb::SweepStatus> {
    client(url)
        .await
        .list_sweeps(pb::ListSweepsRequest {})
        .await
        .expect("list")
        .into_inner()
        .sweeps
}

/// Every result of the sweep, three per page (so that paging runs), and
/// the same as one unpaged answer.
pub async fn results(url: &str, sweep_id: &str) -> Vec<pb::TrialResult> {
    let mut c = client(url).await;
    let mut paged = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .list_results(pb::ListResultsRequest {
                sweep_id: sweep_id.to_string(),
                page_size: 3,
                page_token,
            })
            .await
            .expect("results")
            .into_inner();
        assert!(page.results.len() <= 3);
        paged.extend(page.results);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let whole = c
        .list_results(pb::ListResultsRequest {
            sweep_id: sweep_id.to_string(),
            ..Default::default()
        })
        .await
        .expect("results")
        .into_inner()
        .results;
    assert_eq!(paged, whole, "pages hold every result once, in order");
    paged
}

/// Exactly one result per (configuration, seed), `expected` in all.
pub fn assert_one_result_per_trial(rows: &[pb::TrialResult], expected: usize) {
    assert_eq!(rows.len(), expected, "one result per trial: {rows:#?}");
    let ids: HashSet<&str> = rows.iter().map(|r| r.trial_id.as_str()).collect();
    assert_eq!(ids.len(), expected, "no trial id repeats");
    let pairs: HashSet<(&str, u64)> = rows
        .iter()
        .map(|r| (r.config_key.as_str(), r.seed))
        .collect();
    assert_eq!(pairs.len(), expected, "no (configuration, seed) repeats");
}

pub fn assert_all_completed(rows: &[pb::TrialResult]) {
    for r in rows {
        assert_eq!(r.outcome, pb::TrialOutcome::Completed as i32, "{r:?}");
    }
}

/// GET `path` over plain HTTP/1.1; the body.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    http_get_as(addr, path, None)
}

/// `GET path` sending `authorization` as the `Authorization` header.
pub fn http_get_as(addr: &str, path: &str, authorization: Option<&str>) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let header = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{header}\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

pub async fn health(addr: &str, service: &str) -> Result<i32, tonic::Status> {
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

pub const SERVING: i32 = 1;
pub const NOT_SERVING: i32 = 2;

// ---------------------------------------------------------------- security

pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn make_pki(dir: &Path) -> Pki {
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
pub fn status_until_ok(args: &[&str], limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        let out = sigsweep(args);
        if out.status.success() || Instant::now() >= deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A TCP proxy standing in for a Kubernetes Service whose readiness probe
/// keeps only the leader: each connection goes to the backend whose metrics
/// say `sigsweep_leader 1` (or, if none does, the first that accepts).
pub struct LeaderProxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl LeaderProxy {
    pub async fn start(backends: Vec<(u16, String)>) -> Self {
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

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for LeaderProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
