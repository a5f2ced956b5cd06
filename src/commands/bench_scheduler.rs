//! `sigsweep bench scheduler`: a real coordinator (embedded store or a local
//! etcd) on loopback and N simulated workers — real gRPC clients, one
//! connection each, that register, acquire, "train" by sleeping T ms and
//! complete. Prints trials/s and the makespan's overhead over M×T/N.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use sigsweep_coordinator::store::{Catalog, EmbeddedStore, EtcdOptions, EtcdStore, Store};
use sigsweep_coordinator::{Coordinator, CoordinatorConfig};
use sigsweep_proto::v1 as pb;
use sigsweep_proto::v1::sweep_service_client::SweepServiceClient;
use sigsweep_proto::v1::worker_service_client::WorkerServiceClient;

use crate::cli::BenchSchedulerArgs;

/// A throw-away etcd on loopback (killed on drop).
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
    let values: Vec<String> = (0..configs).map(|i| i.to_string()).collect();
    let text = format!(
        r#"name = "bench-scheduler"
seeds = 10
baseline = {{ i = 0 }}
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
i = [{}]
[metrics]
select = "accuracy"
report = {{ accuracy = "max" }}
"#,
        values.join(", ")
    );
    (text, configs * 10)
}

async fn simulated_worker(
    url: String,
    i: usize,
    trial: Duration,
    done: CancellationToken,
) -> anyhow::Result<u64> {
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
    let mut completed = 0;
    // Like the real worker, a finished trial's report is sent in the
    // background while the next trial is acquired: the worker does not wait
    // for the coordinator's durable write before training again.
    let mut reports = tokio::task::JoinSet::new();
    while !done.is_cancelled() {
        let a = client
            .acquire_trial(pb::AcquireTrialRequest {
                worker_id: reg.worker_id.clone(),
                generation: reg.generation,
                wait_ms: 200,
                max_trials: 1,
            })
            .await?
            .into_inner();
        let Some(a) = a.assignment else { continue };
        let Some(spec) = a.trial else { continue };
        if !trial.is_zero() {
            tokio::time::sleep(trial).await;
        }
        let mut reporter = client.clone();
        let request = pb::CompleteTrialRequest {
            worker_id: reg.worker_id.clone(),
            generation: reg.generation,
            lease_id: a.lease_id,
            trial_id: spec.trial_id,
            test_metrics: Some(pb::Metrics {
                values: [("accuracy".to_string(), 0.5)].into(),
            }),
            valid_metrics: Some(pb::Metrics {
                values: [("accuracy".to_string(), 0.5)].into(),
            }),
            selected_epoch: 1,
            seconds: trial.as_secs_f64(),
        };
        reports.spawn(async move { reporter.complete_trial(request).await });
        completed += 1;
        while let Some(r) = reports.try_join_next() {
            r??;
        }
    }
    while let Some(r) = reports.join_next().await {
        r??;
    }
    Ok(completed)
}

pub async fn run(args: BenchSchedulerArgs) -> anyhow::Result<ExitCode> {
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
        },
    )
    .await?;
    let shutdown = CancellationToken::new();
    let listener =
        sigsweep_coordinator::server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(sigsweep_coordinator::server::serve(
        listener,
        coordinator.clone(),
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
        .map(|i| tokio::spawn(simulated_worker(url.clone(), i, trial, done.clone())))
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
    for h in handles {
        completed += h.await.context("worker task")??;
    }
    shutdown.cancel();
    let _ = server.await;

    let ideal = trials as f64 * trial.as_secs_f64() / args.workers as f64;
    println!(
        "store: {description}; {} simulated workers; {trials} trials of {} ms (submit of the {trials}-trial sweep: {submit_s:.2} s)",
        args.workers, args.trial_ms
    );
    println!(
        "completed {completed} trials in {makespan:.3} s: {:.0} trials/s",
        trials as f64 / makespan
    );
    if ideal > 0.0 {
        println!(
            "makespan {makespan:.3} s vs ideal M×T/N = {ideal:.3} s: overhead {:+.2}%",
            (makespan - ideal) / ideal * 100.0
        );
    }
    if completed as usize != trials {
        bail!("completed {completed} trials, expected {trials}");
    }
    Ok(ExitCode::SUCCESS)
}
