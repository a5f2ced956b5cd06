//! A training program as a workload (`[model] name = "command"`): the
//! researcher's own code (a PyTorch script, anything) trains, and reports
//! each epoch's metrics through the protocol of [`protocol`]. The plain
//! epoch loop drives it like any model through the [`Workload`] trait: the
//! program decides its epochs ([`Workload::next_epoch`] waits for its next
//! report), sigsweep's [`Selector`](crate::trial) selects the epoch unless the
//! program does so itself (a `final` line), and a failure names its cause.
//!
//! The program's environment: its parameters in `SIGSWEEP_PARAMS` (JSON),
//! `SIGSWEEP_TRIAL_ID`, `SIGSWEEP_SEED`, `SIGSWEEP_OUTPUT_DIR` (its own
//! files; `predictions.jsonl` there gets the report's per-example tests),
//! `SIGSWEEP_METRICS` (the file it appends reports to, created empty) and
//! `CUDA_VISIBLE_DEVICES` (its GPUs, empty on CPU).

mod process;
pub mod protocol;

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sigsweep_types::command::{TORCHRUN, fill};

use sigsweep_types::EpochRecord;

use crate::trial::{Ending, Prediction, ProgramRun, Split, TrainError, TrialRequest, Workload};

pub use process::tail as log_tail;
use process::{Launch, Program};
pub use protocol::MAX_EPOCHS;
use protocol::{EpochLine, Line, Reader};

/// How often the worker looks for new reports.
const POLL: Duration = Duration::from_millis(50);
/// Longest metrics line.
const MAX_METRICS_LINE: usize = 64 * 1024;
/// Largest predictions file read.
const MAX_PREDICTIONS: u64 = 256 * 1024 * 1024;

/// A running training program.
pub struct CommandWorkload {
    program: Program,
    reader: Reader,
    metrics: std::fs::File,
    /// Bytes of the metrics file after the last complete line read.
    partial: Vec<u8>,
    metrics_line: usize,
    regex: Option<regex::Regex>,
    stdout_line: usize,
    pending: VecDeque<EpochLine>,
    current: Option<EpochLine>,
    chosen: Option<EpochLine>,
    reported: u32,
    select: String,
    select_split: Split,
    /// The sweep's reported metrics.
    required: Vec<String>,
    output_dir: PathBuf,
    grace: Duration,
}

/// The value of a placeholder for `req`.
fn placeholder(req: &TrialRequest, run: &ProgramRun, name: &str) -> Option<String> {
    if let Some(v) = req.params.values().get(name) {
        return Some(v.to_string());
    }
    let d = &req.dataset;
    let has_dataset = !d.kind.is_empty();
    Some(match name {
        "seed" => req.seed.to_string(),
        "trial_id" => req.trial_id.clone(),
        "output_dir" => run.output_dir.display().to_string(),
        "fold" => d.fold.as_ref()?.fold.to_string(),
        "dataset_kind" if has_dataset => d.kind.clone(),
        "dataset_path" if has_dataset => d.path.clone(),
        "dataset_generator" if has_dataset => d.generator.clone(),
        "dataset_params" if has_dataset => d.params.to_string(),
        _ => return None,
    })
}

/// What starts a trial's program: argv, working directory, environment.
struct Parts {
    argv: Vec<String>,
    workdir: Option<PathBuf>,
    env: Vec<(String, String)>,
}

/// The program's argv, working directory and environment for `req`.
fn launch_parts(req: &TrialRequest, run: &ProgramRun, metrics: &Path) -> Result<Parts, TrainError> {
    let value = |n: &str| placeholder(req, run, n);
    let bad = |what: &str, m: String| TrainError::Program(format!("[model] {what}: {m}"));
    let mut argv = Vec::with_capacity(run.spec.argv.len() + 4);
    for (i, a) in run.spec.argv.iter().enumerate() {
        argv.push(fill(a, value).map_err(|m| bad(&format!("argv[{i}]"), m))?);
    }
    if run.spec.launcher == TORCHRUN {
        // torchrun runs the script with its own interpreter.
        let script = argv.first().map(|p| {
            Path::new(p)
                .file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with("python"))
        });
        if script == Some(true) {
            argv.remove(0);
        }
        let procs = if run.gpus > 0 {
            run.gpus
        } else {
            run.spec.processes.unwrap_or(1)
        };
        let mut launcher = vec![
            TORCHRUN.to_string(),
            "--standalone".to_string(),
            "--nnodes".to_string(),
            "1".to_string(),
            "--nproc_per_node".to_string(),
            procs.to_string(),
        ];
        launcher.append(&mut argv);
        argv = launcher;
    }
    let workdir = if run.spec.workdir.is_empty() {
        None
    } else {
        Some(PathBuf::from(
            fill(&run.spec.workdir, value).map_err(|m| bad("workdir", m))?,
        ))
    };
    let params: serde_json::Map<String, serde_json::Value> = req
        .params
        .values()
        .iter()
        .map(|(k, v)| {
            let json = match v {
                crate::trial::Value::Bool(b) => serde_json::json!(b),
                crate::trial::Value::Int(i) => serde_json::json!(i),
                crate::trial::Value::Float(x) => serde_json::json!(x),
                crate::trial::Value::Text(s) => serde_json::json!(s),
            };
            (k.clone(), json)
        })
        .collect();
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in &run.spec.env {
        env.push((
            k.clone(),
            fill(v, value).map_err(|m| bad(&format!("env.{k}"), m))?,
        ));
    }
    env.extend([
        ("SIGSWEEP_TRIAL_ID".into(), req.trial_id.clone()),
        ("SIGSWEEP_SEED".into(), req.seed.to_string()),
        (
            "SIGSWEEP_PARAMS".into(),
            serde_json::Value::Object(params).to_string(),
        ),
        (
            "SIGSWEEP_OUTPUT_DIR".into(),
            run.output_dir.display().to_string(),
        ),
        ("SIGSWEEP_METRICS".into(), metrics.display().to_string()),
        ("CUDA_VISIBLE_DEVICES".into(), run.visible_devices.clone()),
    ]);
    if let Some(f) = &req.dataset.fold {
        env.push(("SIGSWEEP_FOLD".into(), f.fold.to_string()));
    }
    Ok(Parts { argv, workdir, env })
}

impl CommandWorkload {
    /// Starts `req`'s program.
    pub fn start(req: &TrialRequest) -> Result<Self, TrainError> {
        let run = req
            .program
            .as_ref()
            .ok_or_else(|| TrainError::InvalidParam {
                key: "model.name".into(),
                message:
                    "this worker does not run training programs: start it with --allow-command \
                      if whoever can submit sweeps to its coordinator may run code here"
                        .into(),
            })?;
        let io = |what: &str, p: &Path, e: std::io::Error| {
            TrainError::ProgramExit(format!("cannot create {what} {}: {e}", p.display()))
        };
        std::fs::create_dir_all(&run.output_dir)
            .map_err(|e| io("the output directory", &run.output_dir, e))?;
        if let Some(dir) = run.log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("the log directory", dir, e))?;
        }
        // One file per attempt (the output directory is the trial's, shared
        // by its attempts): an attempt elsewhere never truncates this one's.
        let metrics_path = run.output_dir.join(format!(
            "sigsweep-metrics.{}.{}.jsonl",
            run.worker
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                })
                .collect::<String>(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        // Created empty before the program starts (a report of an earlier
        // attempt must not count for this one).
        std::fs::File::create(&metrics_path)
            .map_err(|e| io("the metrics file", &metrics_path, e))?;
        let metrics = std::fs::File::open(&metrics_path)
            .map_err(|e| io("the metrics file", &metrics_path, e))?;
        let Parts { argv, workdir, env } = launch_parts(req, run, &metrics_path)?;
        if let Some(dir) = &workdir
            && !dir.is_dir()
        {
            return Err(TrainError::Program(format!(
                "[model] workdir `{}` is not a directory on this worker",
                dir.display()
            )));
        }
        if let Some(p) = process::resolve_hint(&argv[0], workdir.as_deref())
            && !p.exists()
        {
            return Err(TrainError::Program(format!(
                "the program `{}` does not exist on this worker",
                p.display()
            )));
        }
        let regex = if run.spec.metrics_regex.is_empty() {
            None
        } else {
            Some(
                regex::RegexBuilder::new(&run.spec.metrics_regex)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| TrainError::Program(format!("metrics_regex: {e}")))?,
            )
        };
        let header = format!(
            "=== sigsweep: trial {} seed {} on {} at {} ===\n=== {} ===",
            req.trial_id,
            req.seed,
            run.worker,
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            argv.join(" ")
        );
        let program = Program::start(Launch {
            argv: &argv,
            workdir: workdir.as_deref(),
            env,
            log: &run.log,
            capture_stdout: regex.is_some(),
            header,
        })
        .map_err(TrainError::ProgramExit)?;
        tracing::info!(trial = %req.trial_id, program = %argv.join(" "), log = %run.log.display(), "training program started");
        Ok(Self {
            program,
            reader: Reader::default(),
            metrics,
            partial: Vec::new(),
            metrics_line: 0,
            regex,
            stdout_line: 0,
            pending: VecDeque::new(),
            current: None,
            chosen: None,
            reported: 0,
            select: req.select.clone(),
            select_split: req.select_split,
            required: run.required.clone(),
            output_dir: run.output_dir.clone(),
            grace: run.grace,
        })
    }

    /// Reads the reports the program has written since the last call.
    fn poll(&mut self) -> Result<(), TrainError> {
        let mut lines: Vec<(usize, String, bool)> = Vec::new();
        if let (Some(rx), Some(_)) = (&self.program.stdout_lines, &self.regex) {
            while let Ok(line) = rx.try_recv() {
                self.stdout_line += 1;
                lines.push((self.stdout_line, line, false));
            }
        } else {
            let mut chunk = Vec::new();
            (&mut self.metrics)
                .take(1 << 20)
                .read_to_end(&mut chunk)
                .map_err(|e| {
                    TrainError::ProgramExit(format!("cannot read SIGSWEEP_METRICS: {e}"))
                })?;
            self.partial.extend_from_slice(&chunk);
            while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = self.partial.drain(..=i).collect();
                self.metrics_line += 1;
                let text = String::from_utf8(raw).map_err(|_| {
                    TrainError::Program(format!(
                        "SIGSWEEP_METRICS line {}: not UTF-8",
                        self.metrics_line
                    ))
                })?;
                lines.push((self.metrics_line, text, true));
            }
            if self.partial.len() > MAX_METRICS_LINE {
                return Err(TrainError::Program(format!(
                    "SIGSWEEP_METRICS line {} is longer than {MAX_METRICS_LINE} bytes",
                    self.metrics_line + 1
                )));
            }
        }
        for (number, text, json) in lines {
            let line = if json {
                self.reader.json_line(number, &text)
            } else if let Some(re) = &self.regex {
                self.reader.regex_line(re, number, &text)
            } else {
                Ok(None)
            }
            .map_err(TrainError::Program)?;
            let where_ = if json {
                format!("SIGSWEEP_METRICS line {number}")
            } else {
                format!("output line {number}")
            };
            match line {
                None => {}
                Some(Line::Epoch(e)) => {
                    self.check_select(&e, &where_)?;
                    self.pending.push_back(e);
                }
                Some(Line::Final(e)) => {
                    self.check_select(&e, &where_)?;
                    if e.test.is_empty() {
                        return Err(TrainError::Program(format!(
                            "{where_}: the `final` line has no `test` metrics"
                        )));
                    }
                    self.chosen = Some(e);
                }
            }
        }
        Ok(())
    }

    /// Every report carries the metric that selects epochs and those the
    /// sweep reports, in the splits the protocol uses (the selection split;
    /// and test): the coordinator's rule for any completion, checked here
    /// so that the failure names the line.
    fn check_select(&self, e: &EpochLine, where_: &str) -> Result<(), TrainError> {
        let (split, metrics) = match self.select_split {
            Split::Test => ("test", &e.test),
            _ => ("valid", &e.valid),
        };
        if !metrics.contains_key(&self.select) {
            return Err(TrainError::Program(format!(
                "{where_} (epoch {}): no `{split}.{}`, the metric that selects epochs",
                e.epoch, self.select
            )));
        }
        let mut splits = vec![(split, metrics)];
        if split == "valid" {
            splits.push(("test", &e.test));
        }
        for (split, metrics) in splits {
            if let Some(m) = self.required.iter().find(|m| !metrics.contains_key(*m)) {
                return Err(TrainError::Program(format!(
                    "{where_} (epoch {}): no `{split}.{m}`, which the sweep's [metrics] reports",
                    e.epoch
                )));
            }
        }
        Ok(())
    }

    /// Why the program failed: its exit status and the end of its stderr.
    fn exit_failure(&self, status: std::process::ExitStatus) -> TrainError {
        use std::os::unix::process::ExitStatusExt;
        let how = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            _ => format!("ended with {status}"),
        };
        let tail = self.program.stderr_tail();
        let stderr = if tail.is_empty() {
            " (nothing on stderr)".to_string()
        } else {
            format!(
                "; last {} lines of stderr:\n{}",
                tail.len(),
                tail.join("\n")
            )
        };
        TrainError::ProgramExit(format!("the program {how}{stderr}"))
    }
}

impl Workload for CommandWorkload {
    fn decides_epochs(&self) -> bool {
        true
    }

    fn next_epoch(&mut self, _count: u32, cancel: &AtomicBool) -> Result<Option<u32>, TrainError> {
        loop {
            let exited = self.program.try_wait().map_err(TrainError::ProgramExit)?;
            self.poll()?;
            if let Some(e) = self.pending.pop_front() {
                let epoch = e.epoch;
                self.current = Some(e);
                self.reported += 1;
                return Ok(Some(epoch));
            }
            if let Some(status) = exited {
                if !status.success() {
                    return Err(self.exit_failure(status));
                }
                if !self.partial.is_empty() {
                    return Err(TrainError::Program(format!(
                        "SIGSWEEP_METRICS line {} does not end with a newline",
                        self.metrics_line + 1
                    )));
                }
                return Ok(None);
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(TrainError::Cancelled);
            }
            std::thread::sleep(POLL);
        }
    }

    fn train_epoch(&mut self, epoch: u32, _cancel: &AtomicBool) -> Result<f64, TrainError> {
        self.current
            .as_ref()
            .filter(|e| e.epoch == epoch)
            .map(|e| e.train_loss)
            .ok_or_else(|| TrainError::Backend(format!("no report of epoch {epoch}")))
    }

    fn evaluate(&self, split: Split) -> Result<BTreeMap<String, f64>, TrainError> {
        let e = self
            .current
            .as_ref()
            .ok_or_else(|| TrainError::Backend("no epoch reported yet".into()))?;
        Ok(match split {
            Split::Valid => e.valid.clone(),
            Split::Test => e.test.clone(),
            Split::Train => BTreeMap::new(),
        })
    }

    fn ended(&mut self) -> Result<Ending, TrainError> {
        if self.reported == 0 && self.chosen.is_none() {
            return Err(TrainError::Program(
                "the program exited successfully without reporting an epoch: append JSON lines \
                 to the file named by $SIGSWEEP_METRICS (clients/python/sigsweep_report.py), \
                 or set [model] metrics_regex to read them from its output"
                    .into(),
            ));
        }
        let predictions = read_predictions(&self.output_dir.join("predictions.jsonl"))?;
        Ok(Ending {
            selected: self.chosen.take().map(|e| EpochRecord {
                epoch: e.epoch,
                train_loss: e.train_loss,
                valid: e.valid,
                test: e.test,
            }),
            predictions,
        })
    }
}

impl Drop for CommandWorkload {
    fn drop(&mut self) {
        // Stopped early (cancelled, failed, lease lost): the whole process
        // group goes, SIGTERM first.
        self.program.stop(self.grace);
    }
}

/// The program's per-example predictions, when it wrote them.
fn read_predictions(path: &Path) -> Result<Option<Vec<Prediction>>, TrainError> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    let bad = |m: String| TrainError::Program(format!("{}: {m}", path.display()));
    if meta.len() > MAX_PREDICTIONS {
        return Err(bad(format!("larger than {MAX_PREDICTIONS} bytes")));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(0))?;
            f.read_to_string(&mut text)
        })
        .map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let p: Prediction = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "line {}: {e} (expected {{\"id\", \"gold\", \"pred\"}})",
                i + 1
            ))
        })?;
        if !(p.gold.is_finite() && p.pred.is_finite()) {
            return Err(bad(format!("line {}: gold and pred must be finite", i + 1)));
        }
        if !seen.insert(p.id.clone()) {
            return Err(bad(format!("line {}: id `{}` appears twice", i + 1, p.id)));
        }
        out.push(p);
    }
    Ok(Some(out))
}
