//! A real, single-node etcd for tests.
//!
//! [`EtcdProcess::start`] runs the `etcd` binary (`$SIGSWEEP_ETCD_BIN`, else
//! `etcd` on `PATH`, else `/usr/bin/etcd`) on free loopback ports with a
//! temporary data directory, waits until it answers, and kills it on drop.
//! A missing binary fails the test (it is never skipped): run
//! `.ci/install-deps.sh`.
//!
//! Shared by the unit tests in `src/store/etcd.rs` (through `#[path]`) and
//! the `tests/etcd_*.rs` integration tests, and by the root package's
//! `tests/distributed.rs`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for etcd to answer after starting.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct EtcdProcess {
    child: Option<Child>,
    binary: PathBuf,
    root: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl EtcdProcess {
    /// Starts etcd and waits until it serves requests.
    pub async fn start() -> Self {
        let binary = find_etcd();
        let root = tempfile::tempdir().expect("tempdir for etcd");
        let mut etcd = Self {
            child: None,
            binary,
            root,
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.spawn_and_wait().await;
        etcd
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
    pub fn pause(&self) {
        self.signal("STOP");
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
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let child = Command::new(&self.binary)
            .arg("--name=default")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
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
        let endpoint = self.endpoint();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("etcd exited with {status}:\n{}", self.log_tail());
            }
            let options = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_millis(500))
                .with_timeout(Duration::from_secs(1));
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}
