//! A corpus of malformed sweep files, each answered by `sigsweep run` before
//! any worker starts: a non-zero exit, the file named and, for content
//! errors, the line and key; no panic, no state directory, nothing written
//! outside it, no unbounded allocation.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_sigsweep");

const VALID: &str = r#"name = "corpus"
seeds = 2
baseline = { modality_hidden = 8 }

[model]
name = "late-fusion"
hidden = 16

[dataset]
kind = "synthetic"
generator = "fusion"
params = { n_train = 64, n_valid = 32, n_test = 32, classes = 3 }

[training]
epochs = 1
batch_size = 32
lr = 0.005

[grid]
modality_hidden = [2, 8]

[metrics]
select = "accuracy"
report = { accuracy = "max" }
"#;

fn run_in(cwd: &Path, file: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(cwd)
        .arg("run")
        .arg(file)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("SIGSWEEP_STATE_DIR")
        .output()
        .expect("run sigsweep")
}

/// (description, text of the file, expected key, expected line). A line of
/// 0 means "no line" (the error is about the file, not its content).
fn corpus() -> Vec<(&'static str, String, &'static str, usize)> {
    let r = |from: &str, to: &str| VALID.replacen(from, to, 1);
    vec![
        (
            "model parameter of the wrong type",
            r("hidden = 16", "hidden = \"wide\""),
            "model.hidden",
            7,
        ),
        (
            "negative width",
            r("hidden = 16", "hidden = -8"),
            "model.hidden",
            7,
        ),
        (
            "absurd width",
            r("hidden = 16", "hidden = 100000000"),
            "model.hidden",
            7,
        ),
        (
            "unknown model parameter",
            r("hidden = 16", "hiden = 16"),
            "model.hiden",
            7,
        ),
        (
            "unknown model",
            r("name = \"late-fusion\"", "name = \"late-fuson\""),
            "model.name",
            6,
        ),
        (
            "grid value out of range",
            r("modality_hidden = [2, 8]", "modality_hidden = [0, 8]"),
            "grid.modality_hidden",
            20,
        ),
        (
            "grid value of the wrong type",
            r("modality_hidden = [2, 8]", "modality_hidden = [2, \"8\"]"),
            "grid.modality_hidden",
            20,
        ),
        (
            "unknown dataset parameter",
            r("classes = 3", "clases = 3"),
            "dataset.params.clases",
            12,
        ),
        (
            "dataset parameter of the wrong type",
            r("n_train = 64", "n_train = \"many\""),
            "dataset.params.n_train",
            12,
        ),
        (
            "empty split",
            r("n_train = 64", "n_train = 0"),
            "dataset.params.n_train",
            12,
        ),
        (
            "one class",
            r("classes = 3", "classes = 1"),
            "dataset.params.classes",
            12,
        ),
        (
            "a dataset too big for memory",
            r("n_train = 64", "n_train = 100000000000"),
            "dataset.params.n_train",
            12,
        ),
        (
            "unknown generator",
            r("generator = \"fusion\"", "generator = \"fuson\""),
            "dataset.generator",
            10,
        ),
        (
            "missing dataset file",
            r(
                "kind = \"synthetic\"\ngenerator = \"fusion\"\nparams = { n_train = 64, n_valid = 32, n_test = 32, classes = 3 }",
                "kind = \"iemocap\"\npath = \"no/such/file.pkl\"",
            ),
            "dataset.path",
            11,
        ),
        (
            "a billion seeds",
            r("seeds = 2", "seeds = 1000000000"),
            "seeds",
            2,
        ),
        (
            "a sweep name that escapes the state dir",
            r("name = \"corpus\"", "name = \"../../escaped\""),
            "name",
            1,
        ),
        (
            "a sweep name with a slash",
            r("name = \"corpus\"", "name = \"a/b\""),
            "name",
            1,
        ),
        (
            "zero epochs",
            r("epochs = 1", "epochs = 0"),
            "training.epochs",
            15,
        ),
        (
            "epochs as text",
            r("epochs = 1", "epochs = \"one\""),
            "training.epochs",
            15,
        ),
        (
            "unknown training key",
            r("lr = 0.005", "lr = 0.005\nlearning_rate = 1"),
            "training.learning_rate",
            18,
        ),
        (
            "weight decay past its declared range",
            r("lr = 0.005", "lr = 0.005\nweight_decay = 1000000"),
            "training.weight_decay",
            18,
        ),
        (
            "validation carve past its declared range",
            r("lr = 0.005", "lr = 0.005\nvalid_fraction = 0.99"),
            "training.valid_fraction",
            18,
        ),
        (
            "GPU trials in a run whose workers train on the CPU",
            format!("{VALID}\n[resources]\ngpus_per_trial = 1\n"),
            "resources.gpus_per_trial",
            27,
        ),
        (
            "more GPUs per trial than a worker can have",
            format!("{VALID}\n[resources]\ngpus_per_trial = 5000\n"),
            "resources.gpus_per_trial",
            27,
        ),
        (
            "baseline outside the grid",
            r("modality_hidden = 8 }", "modality_hidden = 9 }"),
            "baseline.modality_hidden",
            3,
        ),
        (
            "empty report",
            r("report = { accuracy = \"max\" }", "report = {}"),
            "metrics.report",
            24,
        ),
        (
            "bad select split",
            r(
                "select = \"accuracy\"",
                "select = \"accuracy\"\nselect_split = \"train\"",
            ),
            "metrics.select_split",
            24,
        ),
        (
            "selection on an empty validation split",
            r(
                "generator = \"fusion\"\nparams = { n_train = 64, n_valid = 32, n_test = 32, classes = 3 }",
                "generator = \"erc\"\nparams = { preset = \"small\", valid_rate = 0.0 }",
            ),
            "dataset.params.valid_rate",
            12,
        ),
        ("not TOML", r("[grid]", "[grid"), "", 19),
    ]
}

#[test]
fn every_malformed_sweep_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path().join("cwd");
    std::fs::create_dir_all(&cwd).expect("cwd");
    let mut failures = Vec::new();
    for (i, (what, text, key, line)) in corpus().into_iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&file, &text).expect("write");
        let out = run_in(&cwd, &file, &["--workers", "1"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let name = file.display().to_string();
        let mut problems = Vec::new();
        if out.status.success() {
            problems.push("exit 0".to_string());
        }
        if err.contains("panicked") {
            problems.push("panic".into());
        }
        if !err.contains(&name) {
            problems.push("the file is not named".into());
        }
        if line > 0 && !err.contains(&format!("{name}:{line}:")) {
            problems.push(format!("line {line} is not named"));
        }
        if !key.is_empty() && !err.contains(&format!("key `{key}`")) {
            problems.push(format!("key `{key}` is not named"));
        }
        if !problems.is_empty() {
            failures.push(format!("{what}: {}\n  stderr: {err}", problems.join(", ")));
        }
    }
    // Nothing started: no state directory anywhere, nothing outside it.
    let written: Vec<_> = std::fs::read_dir(&cwd).expect("cwd").collect();
    assert!(written.is_empty(), "files written: {written:?}");
    assert!(!dir.path().join("escaped").exists());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_billion_seeds_is_refused_within_a_small_address_space() {
    // Before the fix, expanding the seeds allocated 8 GB first.
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("seeds.toml");
    std::fs::write(&file, VALID.replacen("seeds = 2", "seeds = 1000000000", 1)).expect("write");
    let out = Command::new("prlimit")
        .arg(format!("--as={}", 6u64 << 30))
        .arg(BIN)
        .arg("run")
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .expect("prlimit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("more than the limit of 100000"), "{err}");
}

#[test]
fn dry_run_lists_the_plan_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ok.toml");
    std::fs::write(&file, VALID).expect("write");
    let out = run_in(dir.path(), &file, &["--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 configuration(s)"), "{text}");
    assert!(text.contains("modality_hidden=8  (baseline)"), "{text}");
    assert!(text.contains("2 seed(s) -> 4 trial(s)"), "{text}");
    assert!(text.contains("nothing was started"), "{text}");
    assert!(!dir.path().join("sigsweep-state").exists());
}

/// A GPU sweep file is valid: a dry run on a machine whose run would train
/// on the CPU passes it with a warning (the file may be meant for a
/// cluster), while the run itself refuses it before anything starts.
#[test]
fn a_gpu_sweep_dry_runs_with_a_warning_and_a_cpu_run_refuses_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gpu.toml");
    std::fs::write(&file, format!("{VALID}\n[resources]\ngpus_per_trial = 1\n")).expect("write");
    let out = run_in(dir.path(), &file, &["--dry-run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: `sigsweep run` on this machine would refuse it")
            && err.contains("--backend cpu"),
        "{err}"
    );
    let out = run_in(dir.path(), &file, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("gpu.toml:27:1: key `resources.gpus_per_trial`"),
        "{err}"
    );
    assert!(!dir.path().join("sigsweep-state").exists());
}

/// What only a model's own reading of its parameters can refuse (`hidden`
/// even for MMIC's bidirectional encoders, `heads` dividing `width`, the
/// format of `speaker_weights`) is refused before anything runs too,
/// naming the line the configuration took the value from.
#[test]
fn model_settings_are_checked_before_anything_runs() {
    const MMIC: &str = r#"name = "settings"
seeds = 1
baseline = { hidden = 16 }
[model]
name = "mmic"
speaker_weights = "3-0-1"
[dataset]
kind = "synthetic"
generator = "erc"
params = { preset = "small", n_train = 8, n_test = 4 }
[training]
epochs = 1
batch_size = 4
lr = 0.001
[grid]
hidden = [16, 32]
[metrics]
select = "accuracy"
report = { accuracy = "max" }
"#;
    let cases = [
        (
            MMIC.replace("\"3-0-1\"", "\"3-0\""),
            "settings.toml:6:1: key `model.speaker_weights`: expected three weights",
        ),
        (
            MMIC.replace("[16, 32]", "[16, 15]"),
            "settings.toml:16:1: key `grid.hidden`: must be even (two directions) (configuration `hidden=15`)",
        ),
    ];
    for (text, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("settings.toml");
        std::fs::write(&file, &text).expect("write");
        let out = run_in(dir.path(), &file, &["--dry-run"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
