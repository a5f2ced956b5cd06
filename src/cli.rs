//! Command-line definitions. Every flag can also be set through a
//! `SIGSWEEP_<FLAG>` environment variable (flags win over the environment).
//!
//! The doc comments below are clap's `--help` text, read by people at a
//! terminal: `<sweep name>` there is a placeholder, not HTML.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "sigsweep",
    version,
    about = "Run hyperparameter sweeps × seeds and get paired significance reports",
    long_about = "sigsweep expands a sweep file into trials (one per configuration and seed), trains them on worker processes, and writes a report comparing every configuration with the baseline seed by seed (paired tests, corrected p-values, effect sizes)."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SIGSWEEP_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// More logging (debug level).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a sweep on this machine: an embedded coordinator, N worker
    /// processes, a progress bar, then the report.
    Run(RunArgs),
    /// Run a worker process that pulls trials from a coordinator.
    Worker(WorkerArgs),
    /// Run a coordinator server.
    Coordinator(CoordinatorArgs),
    /// Submit a sweep file to a remote coordinator and print its id.
    Submit(SubmitArgs),
    /// Show the status of one sweep or of every sweep.
    Status(StatusArgs),
    /// Follow a sweep's progress live.
    Watch(SweepRef),
    /// Cancel a sweep.
    Cancel(SweepRef),
    /// Print a sweep's per-trial results.
    Results(ResultsArgs),
    /// Print the output (stdout and stderr) of a training program's trial:
    /// the live log file of a local run (--state), or the end of its last
    /// attempt from a coordinator.
    Logs(LogsArgs),
    /// Write the significance report of a finished sweep, from a state
    /// directory (offline) or from a coordinator.
    Report(ReportArgs),
    /// Compare two per-seed score files (or adjust p-values) with every
    /// statistic sigsweep reports.
    Stats(StatsArgs),
    /// Inspect datasets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Rerun the winner and the baseline of a finished sweep on fresh seeds
    /// and report the confirmatory comparison.
    Confirm(ConfirmArgs),
    /// Load a weights file (safetensors), run a split of a dataset in
    /// inference mode and write its per-example predictions (JSON lines).
    Predict(PredictArgs),
    /// Benchmarks (training throughput, scheduler throughput).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The weights file (`weights/<trial_id>.safetensors` of a sweep that
    /// saves `weights`, or a PyTorch `state_dict` saved as safetensors).
    pub weights: PathBuf,
    /// Where the predictions go (one JSON line per example).
    #[arg(long, default_value = "predictions.jsonl")]
    pub out: PathBuf,
    /// The model (default: the one the file names).
    #[arg(long)]
    pub model: Option<String>,
    /// Model parameters over the file's, `key=value` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// The dataset: a file (with --format), or synthetic-iemocap,
    /// synthetic-meld, synthetic-mosi, synthetic-mosei, synthetic-fusion
    /// (default: the trial's own dataset, named in the file).
    #[arg(long)]
    pub data: Option<String>,
    /// The file's format: iemocap, meld, m3ed or mmsa.
    #[arg(long, default_value = "iemocap")]
    pub format: String,
    /// Loader parameters of the file, as JSON (e.g. `{"valid_rate": 0.1}`).
    #[arg(long)]
    pub data_params: Option<String>,
    /// Seed of synthetic data (default: the file's trial seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The split: test, valid or train.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// The state directory of the finished sweep (or its sweep file, whose
    /// default state directory is used).
    pub target: PathBuf,
    /// Number of fresh seeds (default 10, chosen above every seed used so far).
    #[arg(long, default_value_t = 10)]
    pub seeds: u32,
    /// Worker processes (default: the number of cores; at most 1024).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Backend the workers train on: cpu or cuda (a sweep with
    /// `gpus_per_trial > 0` needs cuda).
    #[arg(long, default_value = "cpu", env = "SIGSWEEP_BACKEND")]
    pub backend: sigsweep_worker::backend::BackendKind,
    /// Where the confirmation's state goes (default <target>/confirm).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Training throughput of one model on a synthetic dataset.
    Train(BenchTrainArgs),
    /// Scheduler throughput: a real coordinator and N simulated workers
    /// (real gRPC clients whose training sleeps).
    Scheduler(BenchSchedulerArgs),
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// Model: late-fusion, mmic, fdcmdie.
    #[arg(long)]
    pub model: String,
    /// Dataset: synthetic-fusion, synthetic-iemocap, synthetic-meld,
    /// synthetic-mosi, synthetic-mosei; or a file in a published format,
    /// `iemocap:PATH`, `meld:PATH`, `m3ed:PATH`, `mmsa:PATH` (the file a
    /// reference implementation reads: `make bench-reference`).
    #[arg(long)]
    pub dataset: String,
    #[arg(long, default_value_t = 3)]
    pub epochs: u32,
    #[arg(long, default_value = "cpu")]
    pub backend: String,
    /// Extra model parameters, `key=value` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Compute threads of the CPU backend.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// single: one trial; packed: `--k` trials at once, one process each
    /// (sharing the device); fused: `--seeds` seeds as one fused model
    /// against the same seeds one after another; dp: one trial data-parallel
    /// over `--devices` devices against one device.
    #[arg(long, value_enum, default_value = "single")]
    pub mode: BenchMode,
    /// Concurrent trials in `packed` mode.
    #[arg(long, default_value_t = 4)]
    pub k: usize,
    /// Seeds in `fused` mode.
    #[arg(long, default_value_t = 10)]
    pub seeds: usize,
    /// Devices in `dp` mode.
    #[arg(long, default_value_t = 2)]
    pub devices: usize,
    /// Epochs of a full trial, for "trials per GPU-hour" (default: the
    /// paper's budget for the model).
    #[arg(long)]
    pub trial_epochs: Option<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also count the matrix products of the CPU nodes: operations, time
    /// and throughput per steady epoch (single mode, CPU backend; adds
    /// two clock reads per product).
    #[arg(long)]
    pub count_products: bool,
    /// Run what the CUDA backend runs (burn's operations and the
    /// recomputing attention node) instead of the CPU nodes, on the CPU
    /// backend: that graph's memory and results without a GPU.
    #[arg(long)]
    pub generic_ops: bool,
    /// Attention as burn's composite operations instead of the recomputing
    /// node on the CUDA backend (and with --generic-ops): the node's effect
    /// on time and memory, side by side.
    #[arg(long)]
    pub composite_attention: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    Single,
    Packed,
    Fused,
    Dp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchProtocol {
    Reserve,
    Acquire,
}

#[derive(Debug, Args)]
pub struct BenchSchedulerArgs {
    #[arg(long, default_value_t = 50)]
    pub workers: usize,
    #[arg(long, default_value_t = 10_000)]
    pub trials: usize,
    /// Simulated training time per trial, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub trial_ms: u64,
    /// Store: embedded or etcd (etcd starts a local etcd-server).
    #[arg(long, default_value = "embedded")]
    pub store: String,
    /// Worker protocol: `reserve` (the real worker's: report, start and
    /// reserve in one call while a trial trains) or `acquire` (acquire after
    /// each trial, report in the background), for comparison.
    #[arg(long, value_enum, default_value = "reserve")]
    pub protocol: BenchProtocol,
    /// Use an already running etcd instead of starting one.
    #[arg(long)]
    pub etcd_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The sweep file (TOML).
    pub sweep: PathBuf,
    /// Where results and the report go (default ./sigsweep-state/<sweep name>).
    /// Running again with the same directory resumes: finished trials are not
    /// run again.
    #[arg(long, env = "SIGSWEEP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Worker processes to start (default: the number of cores; at most
    /// 1024).
    #[arg(long, env = "SIGSWEEP_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Backend the workers train on: cpu or cuda.
    #[arg(long, default_value = "cpu", env = "SIGSWEEP_BACKEND")]
    pub backend: sigsweep_worker::backend::BackendKind,
    /// Lease TTL: a trial whose worker stops heartbeating returns to the
    /// queue after this long (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = sigsweep_types::duration::parse, env = "SIGSWEEP_LEASE_TTL")]
    pub lease_ttl: std::time::Duration,
    /// No progress bar (plain log lines instead).
    #[arg(long)]
    pub no_progress: bool,
    /// Check the sweep file (and its local dataset file), print its
    /// configurations and trial count, and start nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run the trials that failed in an earlier run of this sweep again
    /// (after fixing the cause); completed trials keep their results.
    #[arg(long)]
    pub retry_failed: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Configuration file (TOML; its `[worker]` table). Flags and
    /// SIGSWEEP_… variables override it.
    #[arg(long, env = "SIGSWEEP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (TOML) and exit.
    #[arg(long)]
    pub print_config: bool,
    #[command(flatten)]
    pub settings: crate::config::WorkerSettings,
}

#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Configuration file (TOML; its `[coordinator]` table). Flags and
    /// SIGSWEEP_… variables override it.
    #[arg(long, env = "SIGSWEEP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (TOML) and exit.
    #[arg(long)]
    pub print_config: bool,
    #[command(flatten)]
    pub settings: crate::config::CoordinatorSettings,
}

#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// Coordinator URL (http:// or https://).
    #[arg(
        long,
        default_value = "http://127.0.0.1:50051",
        env = "SIGSWEEP_COORDINATOR"
    )]
    pub coordinator: String,
    #[command(flatten)]
    pub credentials: Credentials,
}

/// How a client proves who it is to a coordinator, and what it trusts.
#[derive(Debug, Clone, Default, Args)]
pub struct Credentials {
    /// CA (PEM) that signed the coordinator's certificate (https:// URLs).
    #[arg(long, env = "SIGSWEEP_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    #[arg(long, env = "SIGSWEEP_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM), for mutual TLS.
    #[arg(long, env = "SIGSWEEP_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// File holding the bearer token (every call needs it when the
    /// coordinator has one and no client certificate is presented).
    #[arg(long, env = "SIGSWEEP_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Allow plaintext http:// to a non-loopback coordinator.
    #[arg(long, env = "SIGSWEEP_INSECURE", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure: Option<bool>,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    pub sweep: PathBuf,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub sweep: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub struct SweepRef {
    pub sweep: String,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    pub sweep: String,
    #[arg(long, default_value = "jsonl")]
    pub format: ResultsFormat,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The sweep id (with --coordinator); ignored with --state.
    pub sweep: String,
    /// The trial id (`sigsweep results` lists them).
    pub trial: String,
    /// A local run's state directory: read `artifacts/logs/<trial>.log`
    /// there (every attempt, live while the trial runs).
    #[arg(long)]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ResultsFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A state directory (offline) or, with --coordinator, a sweep id.
    /// Several (one per dataset) with --layout paper.
    #[arg(required = true, num_args = 1..)]
    pub targets: Vec<String>,
    /// `sweep`: the full report of one sweep. `paper`: one table over all
    /// targets, rows = configurations, column groups = datasets, corrected
    /// across the whole table (tex, md, html or json).
    #[arg(long, value_enum, default_value = "sweep")]
    pub layout: ReportLayout,
    /// Output format.
    #[arg(long, default_value = "term")]
    pub format: ReportFormat,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compare against this configuration (its key, e.g. `hidden=32,dropout=0.0`)
    /// instead of the sweep's baseline.
    #[arg(long)]
    pub baseline: Option<String>,
    /// Multiple-comparison correction.
    #[arg(long, default_value = "holm")]
    pub correction: String,
    /// Test used for the comparisons: t (paired t-test), wilcoxon,
    /// permutation, aso.
    #[arg(long, default_value = "t")]
    pub test: String,
    /// The workers' artifacts directory, where the trials' predictions
    /// files are (default: `artifacts/` in the state directory). With
    /// predictions the report adds its per-example tests.
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
    /// Read from a running coordinator instead of a state directory.
    #[arg(long, env = "SIGSWEEP_COORDINATOR")]
    pub coordinator: Option<String>,
    #[command(flatten)]
    pub credentials: Credentials,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportLayout {
    Sweep,
    Paper,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Term,
    Md,
    Tex,
    Csv,
    Json,
    Html,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Two CSV files of per-seed scores (A and B), or with --adjust the
    /// p-values to adjust.
    pub inputs: Vec<String>,
    /// Column that pairs rows (the seed).
    #[arg(long, default_value = "seed")]
    pub seed_column: String,
    /// Score column (default: the only numeric column besides the seed).
    #[arg(long)]
    pub column: Option<String>,
    /// Adjust the given p-values: holm, bh or bonferroni.
    #[arg(long)]
    pub adjust: Option<String>,
    /// Print one JSON object (or a JSON list with --adjust).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Print a dataset file's format, splits, counts, dims and labels.
    Inspect {
        path: PathBuf,
        #[arg(long, default_value = "auto")]
        format: String,
        #[arg(long)]
        json: bool,
    },
}
