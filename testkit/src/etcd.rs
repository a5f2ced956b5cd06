//! A real, single-node etcd for tests.
//!
//! [`EtcdProcess::start`] runs the `etcd` binary (`$SIGSWEEP_ETCD_BIN`, else
//! `etcd` on `PATH`, else `/usr/bin/etcd`) on free loopback ports with a
//! temporary data directory, waits until it answers, and kills it on drop.
//! A missing binary fails the test (it is never skipped): run
//! `.ci/install-deps.sh`. [`EtcdProcess::start_tls`] serves clients over
//! TLS instead (certificates made by the test), optionally requiring client
//! certificates.
//!
//! Used by the coordinator's etcd tests (unit and integration) and the root
//! package's `tests/distributed.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// Longest wait for etcd to answer after starting.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// PEM files for an etcd serving clients over TLS ([`EtcdProcess::start_tls`]).
#[derive(Debug, Clone)]
pub struct EtcdServerTls {
    /// CA of the client certificates (and, for the readiness probe, of the
    /// server certificate).
    pub ca: PathBuf,
    /// Server certificate (its names must cover 127.0.0.1) and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate and key signed by `ca`: set ⇒ etcd requires
    /// client certificates (`--client-cert-auth`), and the readiness probe
    /// presents this one.
    pub client: Option<(PathBuf, PathBuf)>,
}

pub struct EtcdProcess {
    child: Option<Child>,
    binary: PathBuf,
    root: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<EtcdServerTls>,
}

impl EtcdProcess {
    /// Starts etcd and waits until it serves requests.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts etcd serving clients over TLS only (`https://` client URL) and
    /// waits until it serves requests. Connect with the `etcd://` [`url`]
    /// (or `etcds://`) and TLS options.
    ///
    /// [`url`]: EtcdProcess::url
    pub async fn start_tls(tls: EtcdServerTls) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<EtcdServerTls>) -> Self {
        let binary = find_etcd();
        let root = tempfile::tempdir().expect("tempdir for etcd");
        let mut etcd = Self {
            child: None,
            binary,
            root,
            client_port: free_port(),
            peer_port: free_port(),
            tls,
        };
        etcd.spawn_and_wait().await;
        etcd
    }

    /// `http://127.0.0.1:PORT`, or `https://…` when serving TLS.
    pub fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.endpoint())
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `etcd://127.0.0.1:PORT`, as the coordinator's `--store` takes it.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoint())
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    ///
    /// Returns only once every thread of etcd is stopped. `kill` returns as
    /// soon as the signal is queued, and on a loaded machine etcd's other
    /// threads can go on answering requests until the thread that takes the
    /// signal is scheduled and stops the rest.
    pub fn pause(&self) {
        self.signal("STOP");
        let pid = self.child.as_ref().expect("etcd is running").id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            assert!(
                Instant::now() < deadline,
                "etcd (pid {pid}) did not stop within 10 s of SIGSTOP"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Kills the process (SIGKILL) and waits for it; the data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same data directory and ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn_and_wait().await;
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("etcd.log")
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("etcd is running");
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {}", child.id()))
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    async fn spawn_and_wait(&mut self) {
        let client = self.client_url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let mut command = Command::new(&self.binary);
        command
            .arg("--name=default")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"));
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.server_cert.display()))
                .arg(format!("--key-file={}", tls.server_key.display()));
            // etcd 3.4 requires client certificates whenever a trusted CA
            // is given, so server-only TLS passes none.
            if tls.client.is_some() {
                command
                    .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                    .arg("--client-cert-auth");
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; run `.ci/install-deps.sh` (installs `etcd-server`)",
                    self.binary.display()
                )
            });
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let endpoint = self.client_url();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("etcd exited with {status}:\n{}", self.log_tail());
            }
            let mut options = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_millis(500))
                .with_timeout(Duration::from_secs(1));
            if let Some(tls) = &self.tls {
                options = options.with_tls(probe_tls(tls));
            }
            let probe = async {
                let mut client = etcd_client::Client::connect([&endpoint], Some(options)).await?;
                client.get("health-probe", None).await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), probe).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become ready within {START_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            // A paused process still dies on SIGKILL; resume anyway so a
            // zombie never lingers stopped.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("kill -CONT {}", child.id()))
                .status();
        }
        self.kill();
    }
}

/// Whether every thread of `pid` is in the stopped state (`T` in
/// `/proc/PID/task/TID/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            // The thread exited while we looked.
            continue;
        };
        // `PID (COMM) STATE …`: COMM may hold spaces and parentheses.
        let state = stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next());
        if !matches!(state, Some("T")) {
            return false;
        }
        any = true;
    }
    any
}

/// A throwaway PKI for TLS tests (rcgen): a CA, a server certificate for
/// `127.0.0.1`/`localhost`, and a client certificate, as PEM files.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// Makes a fresh CA and certificates in `dir`; every call makes a
    /// different CA.
    pub fn generate(dir: &Path) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        std::fs::create_dir_all(dir).expect("pki dir");
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sigsweep etcd test CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params.extended_key_usages = usages;
            let cert = params.signed_by(&key, &issuer).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        // etcd also dials itself (its HTTP gateway) with the server
        // certificate, so it gets both usages.
        let (server_cert, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let (client_cert, client_key) = leaf(
            vec!["sigsweep-coordinator".into()],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write pem");
            path
        };
        Self {
            ca: write("ca.crt", &ca.pem()),
            server_cert: write("server.crt", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.crt", &client_cert),
            client_key: write("client.key", &client_key),
        }
    }

    /// Server settings for [`EtcdProcess::start_tls`]; `client_auth`:
    /// require client certificates signed by this CA.
    pub fn server_tls(&self, client_auth: bool) -> EtcdServerTls {
        EtcdServerTls {
            ca: self.ca.clone(),
            server_cert: self.server_cert.clone(),
            server_key: self.server_key.clone(),
            client: client_auth.then(|| (self.client_cert.clone(), self.client_key.clone())),
        }
    }
}

/// The readiness probe's TLS settings: trust `ca`, present the client
/// certificate if there is one.
fn probe_tls(tls: &EtcdServerTls) -> etcd_client::TlsOptions {
    let read = |path: &Path| {
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    };
    let mut options = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca)));
    if let Some((cert, key)) = &tls.client {
        options = options.identity(etcd_client::Identity::from_pem(read(cert), read(key)));
    }
    options
}

fn find_etcd() -> PathBuf {
    if let Some(bin) = std::env::var_os("SIGSWEEP_ETCD_BIN") {
        return PathBuf::from(bin);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    match on_path {
        Some(p) => p,
        None if Path::new("/usr/bin/etcd").is_file() => PathBuf::from("/usr/bin/etcd"),
        None => panic!(
            "etcd is not installed (no `etcd` on PATH, no /usr/bin/etcd, SIGSWEEP_ETCD_BIN unset): \
             run `.ci/install-deps.sh` (installs the `etcd-server` package)"
        ),
    }
}
