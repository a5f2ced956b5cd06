//! Acceptance check of the wire contract from outside Rust: a Python client
//! whose stubs are generated from `proto/` by grpcio-tools
//! (`tests/python/client.py`) submits a sweep to a real coordinator process,
//! follows it while a real worker process trains it on the CPU, and reads its
//! status and results; a malformed sweep file submitted from Python gets
//! INVALID_ARGUMENT naming the file, the line and the key.
//!
//! Needs `python3` with grpcio-tools (`bash .ci/install-deps.sh` installs the
//! pinned versions); without it the test fails rather than skips.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

use sigsweep_coordinator::sweep::SweepSpec;

mod common;
use common::proc::{BIN, Proc, free_port};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Seconds the client waits for the sweep to finish.
const SWEEP_TIMEOUT_S: u32 = 300;

/// 2 configurations × 3 seeds of late-fusion on small synthetic data.
const SWEEP: &str = r#"name = "pyclient"
seeds = 3
baseline = { modality_hidden = 8 }

[model]
name = "late-fusion"
hidden = 16

[dataset]
kind = "synthetic"
generator = "fusion"
params = { n_train = 64, n_valid = 64, n_test = 64, classes = 3, noise = 1.0 }

[training]
epochs = 2
batch_size = 32
lr = 0.005

[grid]
modality_hidden = [2, 8]

[metrics]
select = "accuracy"
report = { accuracy = "max" }
"#;

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn python3(args: &[&str]) -> Output {
    Command::new("python3")
        .args(args)
        .current_dir(ROOT)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3 (is it installed?)")
}

/// Fails, with the fix, when grpcio-tools is missing.
fn require_grpc_tools() {
    let out = python3(&["-c", "import grpc, grpc_tools"]);
    assert!(
        out.status.success(),
        "python3 cannot import grpc_tools: run `bash .ci/install-deps.sh` \
         (installs the pinned grpcio-tools, grpcio and protobuf)\n{}",
        text(&out)
    );
}

/// Generates the Python stubs of `proto/sigsweep/v1/sigsweep.proto` into
/// `out` (as `sigsweep/v1/sigsweep_pb2{,_grpc}.py`).
fn generate_stubs(out: &Path) {
    std::fs::create_dir_all(out).expect("stub dir");
    let out = out.to_str().expect("utf8");
    let python_out = format!("--python_out={out}");
    let grpc_out = format!("--grpc_python_out={out}");
    let gen_out = python3(&[
        "-m",
        "grpc_tools.protoc",
        "-I",
        "proto",
        &python_out,
        &grpc_out,
        "proto/sigsweep/v1/sigsweep.proto",
    ]);
    assert!(gen_out.status.success(), "protoc: {}", text(&gen_out));
    for file in ["sigsweep_pb2.py", "sigsweep_pb2_grpc.py"] {
        let path = Path::new(out).join("sigsweep").join("v1").join(file);
        assert!(path.is_file(), "{} was not generated", path.display());
    }
}

/// Runs `tests/python/client.py`; its stdout parsed as one JSON object.
fn client(stubs: &Path, target: &str, args: &[&str], procs: &[&Proc]) -> serde_json::Value {
    let script = Path::new(ROOT)
        .join("tests")
        .join("python")
        .join("client.py");
    let mut all = vec![
        script.to_str().expect("utf8"),
        "--stubs",
        stubs.to_str().expect("utf8"),
        "--target",
        target,
    ];
    all.extend_from_slice(args);
    let out = python3(&all);
    let logs = || procs.iter().map(|p| p.log()).collect::<Vec<_>>().join("\n");
    assert!(
        out.status.success(),
        "client.py {args:?} failed\n{}\n{}",
        text(&out),
        logs()
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("client.py printed no JSON object ({e})\n{}", text(&out)))
}

#[test]
fn a_python_client_generated_from_the_proto_submits_a_sweep_and_reads_its_status() {
    require_grpc_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let stubs = dir.path().join("stubs");
    generate_stubs(&stubs);

    let sweep = dir.path().join("pyclient.toml");
    std::fs::write(&sweep, SWEEP).expect("write sweep");
    let sweep_path = sweep.to_str().expect("utf8");
    let spec = SweepSpec::parse(SWEEP, sweep_path).expect("the sweep parses");
    let expected_id = spec.sweep_id();
    let expected_trials = spec.trials().len();
    assert_eq!(expected_trials, 6);

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        SWEEP.replace("lr = 0.005", "lr = 0.005\nlearning_rate = 1"),
    )
    .expect("write bad sweep");

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");
    let store = format!("embedded:{}", dir.path().join("store").display());
    let coordinator = Proc::spawn(
        "coordinator",
        dir.path(),
        &[
            "coordinator",
            "--listen",
            &listen,
            "--store",
            &store,
            "--lease-ttl",
            "5s",
        ],
        &[],
    );
    let worker = Proc::spawn(
        "worker",
        dir.path(),
        &[
            "worker",
            "--coordinator",
            &url,
            "--name",
            "w0",
            "--backend",
            "cpu",
        ],
        &[],
    );
    let procs = [&coordinator, &worker];

    // A malformed file first: refused with INVALID_ARGUMENT naming the file,
    // the line and the key, and no sweep is created.
    let refused = client(
        &stubs,
        &listen,
        &["submit", bad.to_str().expect("utf8")],
        &procs,
    );
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["code"], "INVALID_ARGUMENT", "{refused}");
    let details = refused["details"].as_str().expect("details");
    assert!(
        details.contains("bad.toml:18:") && details.contains("training.learning_rate"),
        "{details}"
    );

    // The real sweep, followed to the end.
    let timeout = SWEEP_TIMEOUT_S.to_string();
    let seen = client(
        &stubs,
        &listen,
        &["run", sweep_path, "--timeout", &timeout],
        &procs,
    );
    let logs = || procs.iter().map(|p| p.log()).collect::<Vec<_>>().join("\n");
    assert_eq!(seen["sweep_id"], expected_id.as_str(), "{seen}");
    assert_eq!(seen["created"], true, "{seen}");
    assert_eq!(seen["total_trials"], expected_trials, "{seen}");
    assert_eq!(seen["timed_out"], false, "{seen}\n{}", logs());
    assert_eq!(seen["state"], "SWEEP_STATE_FINISHED", "{seen}\n{}", logs());
    assert_eq!(seen["total"], expected_trials, "{seen}");
    assert_eq!(seen["completed"], expected_trials, "{seen}\n{}", logs());
    assert_eq!(seen["failed"], 0, "{seen}");
    assert_eq!(seen["name"], "pyclient", "{seen}");

    // ListSweeps: exactly this sweep (the malformed one started nothing).
    let listed = seen["listed_sweeps"].as_array().expect("listed_sweeps");
    assert_eq!(listed.len(), 1, "{seen}");
    assert_eq!(listed[0]["sweep_id"], expected_id.as_str(), "{seen}");
    assert_eq!(listed[0]["state"], "SWEEP_STATE_FINISHED", "{seen}");

    // ListResults: one completed result per (configuration, seed).
    assert_eq!(seen["results"], expected_trials, "{seen}");
    let pairs: HashSet<(String, u64)> = seen["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .map(|p| {
            (
                p[0].as_str().expect("config_key").to_string(),
                p[1].as_u64().expect("seed"),
            )
        })
        .collect();
    let planned: HashSet<(String, u64)> = spec
        .trials()
        .into_iter()
        .map(|t| (t.config.key, t.seed))
        .collect();
    assert_eq!(
        pairs.len(),
        expected_trials,
        "no (config, seed) repeats: {seen}"
    );
    assert_eq!(pairs, planned, "the planned trials, no others");
    for (outcome, accuracy) in seen["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .zip(seen["test_accuracy"].as_array().expect("accuracy"))
    {
        assert_eq!(outcome, "TRIAL_OUTCOME_COMPLETED", "{seen}");
        let a = accuracy.as_f64().expect("accuracy");
        assert!((0.0..=1.0).contains(&a), "{seen}");
    }

    // The Rust CLI sees the same sweep the Python client created.
    let out = Command::new(BIN)
        .args(["status", &expected_id, "--coordinator", &url])
        .env("RUST_LOG", "warn")
        .output()
        .expect("sigsweep status");
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    let done = format!("{expected_trials}/{expected_trials} done");
    assert!(
        status.contains(&expected_id) && status.contains("finished") && status.contains(&done),
        "{status}"
    );

    // Resubmitting the same file from Python: same id, nothing new.
    let again = client(&stubs, &listen, &["submit", sweep_path], &procs);
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(again["sweep_id"], expected_id.as_str(), "{again}");
    assert_eq!(again["created"], false, "{again}");
}
