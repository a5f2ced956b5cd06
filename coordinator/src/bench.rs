//! The scheduler benchmark (`sigsweep bench scheduler`): a real coordinator (embedded store or a local
//! etcd) on loopback and N simulated workers — real gRPC clients, one
//! connection each, that register, acquire, "train" by sleeping T ms and
//! complete. Prints trials/s and the makespan's overhead over M×T/N.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::store::{Catalog, EmbeddedStore, EtcdOptions, EtcdStore, Store};
use crate::{Coordinator, CoordinatorConfig};
use sigsweep_proto::v1 as pb;
use sigsweep_proto::v1::sweep_service_client::SweepServiceClient;
use sigsweep_proto::v1::worker_service_client::WorkerServiceClient;

/// How the simulated workers talk to the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The real worker's: report, start and reserve in one call while a
    /// trial trains.
    Reserve,
    /// Acquire after each trial, report in the background (for comparison).
    Acquire,
}

/// The scheduler benchmark's settings (`sigsweep bench scheduler`).
#[derive(Debug, Clone)]
pub struct SchedulerBench {
    pub workers: usize,
    pub trials: usize,
    /// Simulated training time per trial.
    pub trial_ms: u64,
    /// `embedded` or `etcd`.
    pub store: String,
    pub protocol: Protocol,
    /// An etcd to use (`store = etcd`); without one, a local etcd-server is
    /// started for the run.
    pub etcd_url: Option<String>,
}

/// A throw-away etcd on loopback for the benchmark (killed on drop). The
/// test harness (`sigsweep-testkit`) has the full launcher (TLS, pause,
/// restart); this one only starts and reports errors instead of panicking.
struct LocalEtcd {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_etcd() -> anyhow::Result<LocalEtcd> {
    let dir = tempfile::tempdir()?;
    let (client, peer) = (free_port()?, free_port()?);
    let child = std::process::Command::new("etcd")
        .args([
            "--name",
            "bench",
            "--data-dir",
            &dir.path().join("etcd").display().to_string(),
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-cluster",
            &format!("bench=http://127.0.0.1:{peer}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start etcd (install it with .ci/install-deps.sh)")?;
    Ok(LocalEtcd {
        child,
        url: format!("etcd://127.0.0.1:{client}"),
        _dir: dir,
    })
}

fn sweep_toml(trials: usize) -> (String, usize) {
    let configs = trials.div_ceil(10).max(1);
    // One learning rate per configuration (a declared, unbounded training
    // key; the simulated workers never train).
    let values: Vec<String> = (1..=configs).map(|i| format!("{i}e-6")).collect();
    let text = format!(
        r#"name = "bench-scheduler"
seeds = 10
baseline = {{ lr = 1e-6 }}
[model]
name = "late-fusion"
[dataset]
kind = "synthetic"
generator = "fusion"
[training]
epochs = 1
batch_size = 1
lr = 0.1
[grid]
lr = [{}]
[metrics]
select = "accuracy"
report = {{ accuracy = "max" }}
"#,
        values.join(", ")
    );
    (text, configs * 10)
}

/// What one simulated worker measured: its trials, the time it spent idle
/// waiting for an assignment and the time its "training" actually took.
#[derive(Debug, Default)]
struct WorkerStats {
    trials: u64,
    /// Trials started from a reservation (no wait for the coordinator).
    reserved: u64,
    acquire_s: f64,
    train_s: f64,
}

fn completion(
    reg: &pb::RegisterResponse,
    lease_id: String,
    trial_id: String,
    trial: Duration,
    next: Option<pb::AcquireTrialRequest>,
) -> pb::CompleteTrialRequest {
    let metrics = || {
        Some(pb::Metrics {
            values: [("accuracy".to_string(), 0.5)].into(),
        })
    };
    pb::CompleteTrialRequest {
        worker_id: reg.worker_id.clone(),
        generation: reg.generation,
        lease_id,
        trial_id,
        test_metrics: metrics(),
        valid_metrics: metrics(),
        selected_epoch: 1,
        seconds: trial.as_secs_f64(),
        next,
        predictions: String::new(),
        weights: String::new(),
        history: Vec::new(),
        hardware: String::new(),
        ..Default::default()
    }
}

/// Connects simulated worker `i` and registers it.
async fn register(
    url: String,
    i: usize,
) -> anyhow::Result<(
    WorkerServiceClient<tonic::transport::Channel>,
    pb::RegisterResponse,
)> {
    let channel = tonic::transport::Endpoint::from_shared(url)?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client = WorkerServiceClient::new(channel);
    let reg = client
        .register(pb::RegisterRequest {
            name: format!("sim-{i}"),
            capabilities: None,
        })
        .await?
        .into_inner();
    Ok((client, reg))
}

/// A simulated worker speaking the real worker's protocol (`worker/src/
/// agent.rs`): while a trial "trains" (a thread sleeping T ms), one call
/// reports the previous trial, marks a started reservation and reserves the
/// next trial; when idle, one call reports and acquires.
async fn simulated_worker(
    url: String,
    i: usize,
    trial: Duration,
    done: CancellationToken,
) -> anyhow::Result<WorkerStats> {
    let (mut client, reg) = register(url, i).await?;
    let mut stats = WorkerStats::default();
    let mut reserved: Option<pb::TrialAssignment> = None;
    let mut finished: Option<(String, String)> = None;
    while !done.is_cancelled() {
        let (a, from_reservation) = match reserved.take() {
            Some(a) => (a, true),
            None => {
                let asked = Instant::now();
                let acquire = pb::AcquireTrialRequest {
                    worker_id: reg.worker_id.clone(),
                    generation: reg.generation,
                    wait_ms: 200,
                    max_trials: 1,
                    ..Default::default()
                };
                let reply = match finished.take() {
                    Some((lease, id)) => client
                        .complete_trial(completion(&reg, lease, id, trial, Some(acquire)))
                        .await?
                        .into_inner()
                        .next
                        .unwrap_or_default(),
                    None => client.acquire_trial(acquire).await?.into_inner(),
                };
                match reply.assignment {
                    Some(a) => {
                        stats.acquire_s += asked.elapsed().as_secs_f64();
                        (a, false)
                    }
                    None => continue,
                }
            }
        };
        let Some(spec) = a.trial else { continue };
        let started = Instant::now();
        stats.reserved += u64::from(from_reservation);
        let training = async move {
            if !trial.is_zero() {
                tokio::task::spawn_blocking(move || std::thread::sleep(trial)).await?;
            }
            anyhow::Ok(())
        };
        tokio::pin!(training);
        let next = pb::AcquireTrialRequest {
            worker_id: reg.worker_id.clone(),
            generation: reg.generation,
            reserve: true,
            max_trials: 1,
            started: if from_reservation {
                vec![a.lease_id.clone()]
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        let report = async {
            anyhow::Ok(match finished.take() {
                Some((lease, id)) => client
                    .clone()
                    .complete_trial(completion(&reg, lease, id, trial, Some(next)))
                    .await?
                    .into_inner()
                    .next
                    .unwrap_or_default(),
                None => client.clone().acquire_trial(next).await?.into_inner(),
            })
        };
        // Training runs on its thread while the worker talks to the
        // coordinator.
        let (trained, reply) = tokio::join!(&mut training, report);
        trained?;
        let reply = reply?;
        if !from_reservation {
            // The real worker's first heartbeat of a trial it acquired.
            client
                .heartbeat(pb::HeartbeatRequest {
                    worker_id: reg.worker_id.clone(),
                    generation: reg.generation,
                    lease_id: a.lease_id.clone(),
                    progress: None,
                    trial_id: spec.trial_id.clone(),
                    reserved: false,
                })
                .await?;
        }
        stats.train_s += started.elapsed().as_secs_f64();
        reserved = reply.assignment;
        if !reply.lost.is_empty() {
            continue; // taken over before it started: another worker runs it
        }
        finished = Some((a.lease_id, spec.trial_id));
        stats.trials += 1;
    }
    if let Some((lease, id)) = finished {
        client
            .complete_trial(completion(&reg, lease, id, trial, None))
            .await?;
    }
    Ok(stats)
}

/// A simulated worker without reservations: acquires after each trial
/// (long poll) and reports in the background.
async fn acquiring_worker(
    url: String,
    i: usize,
    trial: Duration,
    done: CancellationToken,
) -> anyhow::Result<WorkerStats> {
    let (mut client, reg) = register(url, i).await?;
    let mut stats = WorkerStats::default();
    let mut reports = tokio::task::JoinSet::new();
    while !done.is_cancelled() {
        let asked = Instant::now();
        let a = client
            .acquire_trial(pb::AcquireTrialRequest {
                worker_id: reg.worker_id.clone(),
                generation: reg.generation,
                wait_ms: 200,
                max_trials: 1,
                ..Default::default()
            })
            .await?
            .into_inner();
        let Some(a) = a.assignment else { continue };
        let Some(spec) = a.trial else { continue };
        stats.acquire_s += asked.elapsed().as_secs_f64();
        let started = Instant::now();
        if !trial.is_zero() {
            tokio::task::spawn_blocking(move || std::thread::sleep(trial)).await?;
        }
        stats.train_s += started.elapsed().as_secs_f64();
        let mut reporter = client.clone();
        let request = completion(&reg, a.lease_id, spec.trial_id, trial, None);
        reports.spawn(async move { reporter.complete_trial(request).await });
        stats.trials += 1;
        while let Some(r) = reports.try_join_next() {
            r??;
        }
    }
    while let Some(r) = reports.join_next().await {
        r??;
    }
    Ok(stats)
}

/// Runs the benchmark and returns its report (several lines of text).
pub async fn run(args: &SchedulerBench) -> anyhow::Result<String> {
    if args.workers == 0 || args.trials == 0 {
        bail!("--workers and --trials must be positive");
    }
    let dir = tempfile::tempdir()?;
    let mut _etcd = None;
    let store: Arc<dyn Store> = match args.store.as_str() {
        "embedded" => Arc::new(EmbeddedStore::open(dir.path().join("state.redb"))?),
        "etcd" => {
            let url = match &args.etcd_url {
                Some(u) => u.clone(),
                None => {
                    let e = start_etcd()?;
                    let u = e.url.clone();
                    _etcd = Some(e);
                    u
                }
            };
            let store = EtcdStore::connect(&url, EtcdOptions::default()).await?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while store.ping().await.is_err() {
                if Instant::now() > deadline {
                    bail!("etcd at {url} did not become ready");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Arc::new(store)
        }
        other => bail!("unknown --store `{other}`: expected embedded or etcd"),
    };
    let description = store.describe();
    let coordinator = Coordinator::start(
        Catalog::new(store),
        CoordinatorConfig {
            lease_ttl: Duration::from_secs(60),
            max_acquire_wait: Duration::from_millis(200),
            allow_command: false,
            ..CoordinatorConfig::default()
        },
    )
    .await?;
    // The simulated workers' connections and the server's share this
    // process: two descriptors per worker.
    crate::server::raise_open_files_limit()?;
    let shutdown = CancellationToken::new();
    let listener = crate::server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}", listener.local_addr()?);
    // Its own simulated workers on loopback only: no token to send.
    let server = tokio::spawn(crate::server::serve(
        listener,
        coordinator.clone(),
        crate::server::ServerOptions::default(),
        shutdown.clone(),
    ));

    let (text, trials) = sweep_toml(args.trials);
    let mut sweeps = SweepServiceClient::connect(url.clone()).await?;
    let trial = Duration::from_millis(args.trial_ms);
    let done = CancellationToken::new();

    let start = Instant::now();
    let sweep_id = sweeps
        .submit_sweep(pb::SubmitSweepRequest {
            sweep_toml: text,
            source_name: "bench.toml".into(),
        })
        .await?
        .into_inner()
        .sweep_id;
    let submit_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let handles: Vec<_> = (0..args.workers)
        .map(|i| match args.protocol {
            Protocol::Reserve => {
                tokio::spawn(simulated_worker(url.clone(), i, trial, done.clone()))
            }
            Protocol::Acquire => {
                tokio::spawn(acquiring_worker(url.clone(), i, trial, done.clone()))
            }
        })
        .collect();
    let mut watch = coordinator.watch(&sweep_id)?;
    loop {
        let p = watch.borrow_and_update().clone();
        if p.completed + p.failed >= p.total {
            break;
        }
        if watch.changed().await.is_err() {
            break;
        }
    }
    let makespan = start.elapsed().as_secs_f64();
    done.cancel();
    let mut completed = 0;
    let (mut acquire_s, mut train_s, mut reserved) = (0.0, 0.0, 0);
    for h in handles {
        let s = h.await.context("worker task")??;
        completed += s.trials;
        acquire_s += s.acquire_s;
        reserved += s.reserved;
        train_s += s.train_s;
    }
    shutdown.cancel();
    let _ = server.await;

    let mut lines = Vec::new();
    let ideal = trials as f64 * trial.as_secs_f64() / args.workers as f64;
    lines.push(format!(
        "store: {description}; {} simulated workers ({:?} protocol); {trials} trials of {} ms (submit of the {trials}-trial sweep: {submit_s:.2} s)",
        args.workers, args.protocol, args.trial_ms
    ));
    lines.push(format!(
        "completed {completed} trials in {makespan:.3} s: {:.0} trials/s",
        trials as f64 / makespan
    ));
    if ideal > 0.0 {
        lines.push(format!(
            "makespan {makespan:.3} s vs ideal M×T/N = {ideal:.3} s: overhead {:+.2}%",
            (makespan - ideal) / ideal * 100.0
        ));
    }
    if completed > 0 {
        lines.push(format!(
            "per trial, mean over workers: idle waiting for an assignment {:.3} ms, simulated training {:.3} ms (asked for {} ms)",
            acquire_s / completed as f64 * 1e3,
            train_s / completed as f64 * 1e3,
            args.trial_ms
        ));
        lines.push(format!(
            "trials started from a reservation: {reserved} of {completed} ({:.1}%)",
            reserved as f64 / completed as f64 * 100.0
        ));
    }
    if completed as usize != trials {
        bail!("completed {completed} trials, expected {trials}");
    }
    Ok(lines.join("\n"))
}
