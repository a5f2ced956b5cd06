//! A hostile network client against a real coordinator over loopback gRPC.
//!
//! With a token configured, a client without it (or with a wrong one) can
//! neither read, submit, cancel, register, acquire, heartbeat, complete nor
//! fail anything. With the token, malformed completions are refused with a
//! reason, oversized ones name the limit, and the coordinator keeps serving.

use std::collections::HashMap;

use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

use sigsweep_coordinator::server::{self, Auth, ServerOptions};
use sigsweep_proto::v1 as pb;
use sigsweep_proto::v1::sweep_service_client::SweepServiceClient;
use sigsweep_proto::v1::worker_service_client::WorkerServiceClient;

const TOKEN: &str = "correct-horse-battery-staple";

const SWEEP: &str = r#"name = "hostile"
seeds = 2
[model]
name = "late-fusion"
[dataset]
kind = "synthetic"
generator = "fusion"
[training]
epochs = 1
batch_size = 4
lr = 0.1
[metrics]
select = "accuracy"
report = { accuracy = "max", f1_weighted = "max" }
"#;

async fn start() -> sigsweep_testkit::node::Node {
    sigsweep_testkit::node::start_node(ServerOptions {
        tls: None,
        auth: Auth::with_token(TOKEN),
    })
    .await
}

fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        let v: MetadataValue<_> = format!("Bearer {t}").parse().expect("header");
        r.metadata_mut().insert("authorization", v);
    }
    r
}

type Sweeps = SweepServiceClient<tonic::transport::Channel>;
type Workers = WorkerServiceClient<tonic::transport::Channel>;

/// Submits `toml` with the token; returns the sweep id.
async fn submit(sweeps: &mut Sweeps, toml: &str) -> String {
    sweeps
        .submit_sweep(with_token(
            pb::SubmitSweepRequest {
                sweep_toml: toml.into(),
                source_name: "hostile.toml".into(),
            },
            Some(TOKEN),
        ))
        .await
        .expect("submit with the token")
        .into_inner()
        .sweep_id
}

/// Registers worker `name` with the token.
async fn register(workers: &mut Workers, name: &str) -> pb::RegisterResponse {
    workers
        .register(with_token(
            pb::RegisterRequest {
                name: name.into(),
                capabilities: None,
            },
            Some(TOKEN),
        ))
        .await
        .expect("register with the token")
        .into_inner()
}

/// Leases the next trial to `reg` with the token: (lease id, trial id).
async fn acquire(workers: &mut Workers, reg: &pb::RegisterResponse) -> (String, String) {
    let a = workers
        .acquire_trial(with_token(
            pb::AcquireTrialRequest {
                worker_id: reg.worker_id.clone(),
                generation: reg.generation,
                wait_ms: 100,
                ..Default::default()
            },
            Some(TOKEN),
        ))
        .await
        .expect("acquire")
        .into_inner()
        .assignment
        .expect("a trial");
    (a.lease_id, a.trial.expect("trial").trial_id)
}

fn metrics(pairs: &[(&str, f64)]) -> Option<pb::Metrics> {
    Some(pb::Metrics {
        values: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_nothing_can_be_read_or_written() {
    let s = start().await;
    let mut sweeps = SweepServiceClient::connect(s.url.clone())
        .await
        .expect("connect");
    let mut workers = WorkerServiceClient::connect(s.url.clone())
        .await
        .expect("connect");

    // The real user submits a sweep and a real worker registers.
    let sweep_id = submit(&mut sweeps, SWEEP).await;
    let reg = register(&mut workers, "real").await;

    for token in [None, Some("wrong"), Some("correct-horse-battery-stapl")] {
        let denied = |r: Result<(), tonic::Status>, what: &str| {
            let status = r.expect_err(what);
            assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
            assert!(
                !status.message().contains(TOKEN),
                "the token leaked: {status:?}"
            );
        };
        let id = sweep_id.clone();
        denied(
            sweeps
                .submit_sweep(with_token(
                    pb::SubmitSweepRequest {
                        sweep_toml: SWEEP.replace("hostile", "forged"),
                        source_name: "x.toml".into(),
                    },
                    token,
                ))
                .await
                .map(drop),
            "submit",
        );
        denied(
            sweeps
                .get_sweep(with_token(
                    pb::GetSweepRequest {
                        sweep_id: id.clone(),
                    },
                    token,
                ))
                .await
                .map(drop),
            "get",
        );
        denied(
            sweeps
                .list_sweeps(with_token(pb::ListSweepsRequest {}, token))
                .await
                .map(drop),
            "list",
        );
        denied(
            sweeps
                .watch_sweep(with_token(
                    pb::GetSweepRequest {
                        sweep_id: id.clone(),
                    },
                    token,
                ))
                .await
                .map(drop),
            "watch",
        );
        denied(
            sweeps
                .list_results(with_token(
                    pb::ListResultsRequest {
                        sweep_id: id.clone(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            "results",
        );
        denied(
            sweeps
                .get_trial_log(with_token(
                    pb::GetTrialLogRequest {
                        sweep_id: id.clone(),
                        trial_id: "t".into(),
                    },
                    token,
                ))
                .await
                .map(drop),
            "trial log",
        );
        denied(
            sweeps
                .cancel_sweep(with_token(
                    pb::CancelSweepRequest {
                        sweep_id: id.clone(),
                    },
                    token,
                ))
                .await
                .map(drop),
            "cancel",
        );
        // Registering under the real worker's name would fence its leases.
        denied(
            workers
                .register(with_token(
                    pb::RegisterRequest {
                        name: "real".into(),
                        capabilities: None,
                    },
                    token,
                ))
                .await
                .map(drop),
            "register",
        );
        denied(
            workers
                .acquire_trial(with_token(
                    pb::AcquireTrialRequest {
                        worker_id: reg.worker_id.clone(),
                        generation: reg.generation,
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            "acquire",
        );
        denied(
            workers
                .heartbeat(with_token(
                    pb::HeartbeatRequest {
                        worker_id: reg.worker_id.clone(),
                        generation: reg.generation,
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            "heartbeat",
        );
        denied(
            workers
                .complete_trial(with_token(
                    pb::CompleteTrialRequest {
                        worker_id: reg.worker_id.clone(),
                        generation: reg.generation,
                        test_metrics: metrics(&[("accuracy", 1.0)]),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            "complete",
        );
        denied(
            workers
                .fail_trial(with_token(
                    pb::FailTrialRequest {
                        worker_id: reg.worker_id.clone(),
                        generation: reg.generation,
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            "fail",
        );
    }

    // The real worker still holds its registration (nobody fenced it) and
    // the sweep is untouched.
    acquire(&mut workers, &reg).await;
    let listed = sweeps
        .list_sweeps(with_token(pb::ListSweepsRequest {}, Some(TOKEN)))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.sweeps.len(), 1, "no forged sweep");
    s.shutdown.cancel();
    s.task.await.expect("join").expect("serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_completions_are_refused_and_the_coordinator_keeps_serving() {
    let s = start().await;
    let mut sweeps = SweepServiceClient::connect(s.url.clone())
        .await
        .expect("connect");
    let mut workers = WorkerServiceClient::connect(s.url.clone())
        .await
        .expect("connect");
    let t = Some(TOKEN);
    let sweep_id = submit(&mut sweeps, SWEEP).await;
    let reg = register(&mut workers, "w").await;
    let mut leases = Vec::new();
    for _ in 0..2 {
        leases.push(acquire(&mut workers, &reg).await);
    }
    // A trial log over the limit is refused, and stores nothing.
    let err = workers
        .fail_trial(with_token(
            pb::FailTrialRequest {
                worker_id: reg.worker_id.clone(),
                generation: reg.generation,
                lease_id: leases[0].0.clone(),
                trial_id: leases[0].1.clone(),
                reason: "x".into(),
                log: "y".repeat(65 * 1024),
                ..Default::default()
            },
            t,
        ))
        .await
        .expect_err("huge log");
    assert!(err.message().contains("65536"), "names the limit: {err:?}");
    let missing = sweeps
        .get_trial_log(with_token(
            pb::GetTrialLogRequest {
                sweep_id: sweep_id.clone(),
                trial_id: leases[0].1.clone(),
            },
            t,
        ))
        .await
        .expect_err("no log stored");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    let good = || metrics(&[("accuracy", 0.5), ("f1_weighted", 0.4)]);
    // Sends a completion of `leases[trial]` under `leases[lease]`'s lease id
    // and returns the refusal.
    let mut refused = async |lease: usize, trial: usize, test, valid, what: &str| {
        let request = pb::CompleteTrialRequest {
            worker_id: reg.worker_id.clone(),
            generation: reg.generation,
            lease_id: leases[lease].0.clone(),
            trial_id: leases[trial].1.clone(),
            test_metrics: test,
            valid_metrics: valid,
            selected_epoch: 1,
            seconds: 1.0,
            next: None,
            predictions: String::new(),
            weights: String::new(),
            history: Vec::new(),
            hardware: String::new(),
            ..Default::default()
        };
        workers
            .complete_trial(with_token(request, t))
            .await
            .expect_err(what)
    };
    let map = |values: HashMap<String, f64>| Some(pb::Metrics { values });

    // Oversized: too many metrics, a huge name, a huge message.
    let many: HashMap<String, f64> = (0..2000).map(|i| (format!("m{i}"), 0.5)).collect();
    let err = refused(0, 0, map(many), good(), "too many metrics").await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("1024"), "names the limit: {err:?}");
    let long = HashMap::from([("x".repeat(500), 0.5)]);
    let err = refused(0, 0, map(long), good(), "long name").await;
    assert!(err.message().contains("128"), "names the limit: {err:?}");
    let huge = HashMap::from([("accuracy".to_string(), 0.5), ("y".repeat(2 << 20), 0.1)]);
    let err = refused(0, 0, map(huge), good(), "huge message").await;
    assert!(
        err.message()
            .contains(&server::MAX_WORKER_MESSAGE_BYTES.to_string()),
        "names the limit: {err:?}"
    );

    // A lease that is live for another trial.
    let err = refused(1, 0, good(), good(), "another trial's lease").await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Missing a reported metric: the trial fails once, with the reason.
    let partial = metrics(&[("accuracy", 0.5)]);
    let err = refused(0, 0, partial, good(), "missing f1_weighted").await;
    assert!(err.message().contains("f1_weighted"), "{err:?}");
    // Non-finite: the same.
    let nan = metrics(&[("accuracy", f64::NAN), ("f1_weighted", 0.4)]);
    let err = refused(1, 1, good(), nan, "NaN").await;
    assert!(err.message().contains("not finite"), "{err:?}");

    let results = sweeps
        .list_results(with_token(
            pb::ListResultsRequest {
                sweep_id: sweep_id.clone(),
                ..Default::default()
            },
            t,
        ))
        .await
        .expect("the coordinator still serves")
        .into_inner()
        .results;
    assert_eq!(results.len(), 2, "{results:?}");
    for r in &results {
        assert_eq!(r.outcome, pb::TrialOutcome::Failed as i32, "{r:?}");
        assert_eq!(r.attempts, 1, "failed once, without retries: {r:?}");
    }
    assert!(results.iter().any(|r| r.failure.contains("f1_weighted")));
    assert!(results.iter().any(|r| r.failure.contains("not finite")));
    let status = sweeps
        .get_sweep(with_token(pb::GetSweepRequest { sweep_id }, t))
        .await
        .expect("get")
        .into_inner();
    assert_eq!((status.completed, status.failed), (0, 2));
    s.shutdown.cancel();
    s.task.await.expect("join").expect("serve");
}

/// A registration cannot make the coordinator hold more than a worker's
/// worth: a GPU list of a quarter million entries or a backend name of a
/// megabyte is refused, and the coordinator keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_registrations_are_refused() {
    let s = start().await;
    let mut workers = WorkerServiceClient::connect(s.url.clone())
        .await
        .expect("connect");
    let register = |capabilities: pb::WorkerCapabilities| {
        with_token(
            pb::RegisterRequest {
                name: String::new(),
                capabilities: Some(capabilities),
            },
            Some(TOKEN),
        )
    };
    for (caps, what) in [
        (
            pb::WorkerCapabilities {
                backend: "cuda".into(),
                gpus: (0..250_000).collect(),
                ..Default::default()
            },
            "250 000 GPUs",
        ),
        (
            pb::WorkerCapabilities {
                backend: "x".repeat(900_000),
                ..Default::default()
            },
            "a 900 kB backend name",
        ),
        (
            pb::WorkerCapabilities {
                backend: "cuda".into(),
                gpus: vec![0],
                trials_per_gpu: u32::MAX,
                ..Default::default()
            },
            "4 billion trials per GPU",
        ),
    ] {
        let status = workers.register(register(caps)).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(status.message().contains("at most 1024 GPUs"), "{status:?}");
    }
    let ok = pb::WorkerCapabilities {
        backend: "cuda".into(),
        gpus: (0..8).collect(),
        trials_per_gpu: 4,
        ..Default::default()
    };
    workers
        .register(register(ok))
        .await
        .expect("an eight-GPU worker registers");
    s.shutdown.cancel();
    s.task.await.expect("join").expect("serve");
}

/// `ListResults` pages a sweep whose results are larger than a message:
/// 40 results of about 430 kB each (17 MB) come in pages under 4 MiB, each
/// result once; a page token the coordinator did not give
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_larger_than_a_message_come_in_pages() {
    let s = start().await;
    let t = Some(TOKEN);
    // A client that takes any size: the limit met is the coordinator's.
    let mut sweeps = SweepServiceClient::connect(s.url.clone())
        .await
        .expect("connect")
        .max_decoding_message_size(usize::MAX);
    let mut workers = WorkerServiceClient::connect(s.url.clone())
        .await
        .expect("connect");
    let sweep = SWEEP
        .replace("seeds = 2", "seeds = 40")
        .replace("name = \"hostile\"", "name = \"wide\"");
    let sweep_id = submit(&mut sweeps, &sweep).await;
    let reg = register(&mut workers, "w").await;
    // 24 epochs of 1 000 validation metrics: about 430 kB a result (within
    // a history's 512 KiB), 17 MB for the sweep.
    let wide: HashMap<String, f64> = (0..1000).map(|k| (format!("m{k:04}"), 0.5)).collect();
    let history: Vec<pb::EpochMetrics> = (1..=24)
        .map(|epoch| pb::EpochMetrics {
            epoch,
            train_loss: 0.1,
            valid: Some(pb::Metrics {
                values: wide.clone(),
            }),
            test: None,
        })
        .collect();
    let mut order = Vec::new();
    for _ in 0..40 {
        let (lease_id, trial_id) = acquire(&mut workers, &reg).await;
        workers
            .complete_trial(with_token(
                pb::CompleteTrialRequest {
                    worker_id: reg.worker_id.clone(),
                    generation: reg.generation,
                    lease_id,
                    trial_id: trial_id.clone(),
                    test_metrics: metrics(&[("accuracy", 0.5), ("f1_weighted", 0.4)]),
                    valid_metrics: metrics(&[("accuracy", 0.5), ("f1_weighted", 0.4)]),
                    selected_epoch: 1,
                    seconds: 1.0,
                    history: history.clone(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .expect("complete");
        order.push(trial_id);
    }
    let list = |page_size: u32, page_token: String| {
        with_token(
            pb::ListResultsRequest {
                sweep_id: sweep_id.clone(),
                page_size,
                page_token,
            },
            t,
        )
    };
    let whole = sweeps
        .list_results(list(0, String::new()))
        .await
        .expect_err("one message cannot hold them");
    assert_eq!(whole.code(), Code::OutOfRange, "{whole:?}");

    let mut got = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = sweeps
            .list_results(list(1000, token))
            .await
            .expect("a page")
            .into_inner();
        pages += 1;
        assert!(
            prost::Message::encoded_len(&page) <= 4 * 1024 * 1024 + 64 * 1024,
            "page {pages} within its budget"
        );
        got.extend(page.results.into_iter().map(|r| r.trial_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(pages >= 3, "{pages} pages, {} results", got.len());
    let mut sorted_got = got.clone();
    sorted_got.sort();
    let mut sorted_order = order.clone();
    sorted_order.sort();
    assert_eq!(sorted_got, sorted_order, "each result once");

    let bad = sweeps
        .list_results(list(10, "not-a-token".into()))
        .await
        .expect_err("bad token");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    // Past the end: an empty last page.
    let past = sweeps
        .list_results(list(10, "1000000".into()))
        .await
        .expect("past the end")
        .into_inner();
    assert!(past.results.is_empty() && past.next_page_token.is_empty());
    s.shutdown.cancel();
    s.task.await.expect("join").expect("serve");
}
