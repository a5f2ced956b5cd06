//! `[model] name = "command"`: a training program instead of a built-in
//! model. Its keys (`argv`, `workdir`, `env`, `launcher`, `processes`,
//! `metrics_regex`) describe how to run it; every other key of `[model]` is a
//! fixed parameter, filled into the templates like the grid's.

use indexmap::IndexMap;
use sigsweep_types::command::{
    CommandSpec, DATASET_PLACEHOLDERS, MAX_ARGS, MAX_TEMPLATE_LEN, TORCHRUN, TRIAL_PLACEHOLDERS,
    placeholders,
};

use super::locate::SpanLocator;
use super::{MODEL_KEY, SweepError, SweepSpec};

/// The keys of `[model]` that describe the program rather than parameters.
pub(super) const COMMAND_KEYS: &[&str] = &[
    "argv",
    "workdir",
    "env",
    "launcher",
    "processes",
    "metrics_regex",
];

/// Most processes torchrun may start for one CPU trial.
const MAX_PROCESSES: i64 = 64;

/// Reads the program's keys from `[model]`.
pub(super) fn command_spec(
    params: &IndexMap<String, toml::Value>,
    loc: &SpanLocator<'_>,
) -> Result<CommandSpec, SweepError> {
    let err = |key: &str, message: String| loc.key_error("model", key, message);
    let long = |what: &str, s: &str| -> Result<(), SweepError> {
        if s.len() > MAX_TEMPLATE_LEN {
            return Err(err(
                what,
                format!("longer than the limit of {MAX_TEMPLATE_LEN} bytes"),
            ));
        }
        if s.contains('\0') {
            return Err(err(what, "must not contain a NUL byte".into()));
        }
        Ok(())
    };
    let mut spec = CommandSpec::default();
    match params.get("argv") {
        Some(toml::Value::Array(items)) if !items.is_empty() => {
            if items.len() > MAX_ARGS {
                return Err(err("argv", format!("more than {MAX_ARGS} arguments")));
            }
            for item in items {
                let toml::Value::String(a) = item else {
                    return Err(err(
                        "argv",
                        "every argument is a string (write numbers as \"{lr}\" placeholders or quoted text)".into(),
                    ));
                };
                long("argv", a)?;
                spec.argv.push(a.clone());
            }
            if spec.argv[0].trim().is_empty() {
                return Err(err("argv", "the program (argv[0]) is empty".into()));
            }
        }
        Some(_) => {
            return Err(err(
                "argv",
                "must be a non-empty list of strings, e.g. [\"python3\", \"train.py\", \"--lr\", \"{lr}\"]".into(),
            ));
        }
        None => {
            return Err(err(
                "name",
                "a training program needs `argv = [\"program\", \"arg\", …]` in [model]".into(),
            ));
        }
    }
    if let Some(v) = params.get("workdir") {
        let toml::Value::String(w) = v else {
            return Err(err("workdir", "must be a string (a directory)".into()));
        };
        long("workdir", w)?;
        spec.workdir = w.clone();
    }
    if let Some(v) = params.get("env") {
        let toml::Value::Table(table) = v else {
            return Err(err(
                "env",
                "must be a table of strings, e.g. env = { PYTHONUNBUFFERED = \"1\" }".into(),
            ));
        };
        if table.len() > MAX_ARGS {
            return Err(err("env", format!("more than {MAX_ARGS} variables")));
        }
        for (k, value) in table {
            let valid = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(err(
                    "env",
                    format!("`{k}` is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"),
                ));
            }
            if k.starts_with("SIGSWEEP_") || k == "CUDA_VISIBLE_DEVICES" {
                return Err(err(
                    "env",
                    format!("`{k}` is set by sigsweep for every trial and cannot be overridden"),
                ));
            }
            let toml::Value::String(s) = value else {
                return Err(err("env", format!("the value of `{k}` must be a string")));
            };
            long("env", s)?;
            spec.env.insert(k.clone(), s.clone());
        }
    }
    if let Some(v) = params.get("launcher") {
        match v.as_str() {
            Some(TORCHRUN) => spec.launcher = TORCHRUN.into(),
            _ => {
                return Err(err(
                    "launcher",
                    format!(
                        "the only launcher is \"{TORCHRUN}\" (leave it out to run argv as it is)"
                    ),
                ));
            }
        }
    }
    if let Some(v) = params.get("processes") {
        match v.as_integer() {
            Some(n) if (1..=MAX_PROCESSES).contains(&n) && spec.launcher == TORCHRUN => {
                spec.processes = Some(n as u32);
            }
            Some(_) if spec.launcher != TORCHRUN => {
                return Err(err(
                    "processes",
                    format!(
                        "needs launcher = \"{TORCHRUN}\" (the processes torchrun starts for a trial without GPUs)"
                    ),
                ));
            }
            _ => {
                return Err(err(
                    "processes",
                    format!("must be an integer between 1 and {MAX_PROCESSES}"),
                ));
            }
        }
    }
    if let Some(v) = params.get("metrics_regex") {
        let Some(pattern) = v.as_str() else {
            return Err(err("metrics_regex", "must be a string".into()));
        };
        long("metrics_regex", pattern)?;
        let re = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| err("metrics_regex", format!("not a regular expression: {e}")))?;
        let names: Vec<&str> = re.capture_names().flatten().collect();
        if !names.contains(&"epoch") {
            return Err(err(
                "metrics_regex",
                "needs a named group `epoch`, e.g. (?P<epoch>\\d+)".into(),
            ));
        }
        if let Some(bad) = names.iter().find(|n| {
            **n != "epoch"
                && **n != "train_loss"
                && !n.starts_with("valid_")
                && !n.starts_with("test_")
        }) {
            return Err(err(
                "metrics_regex",
                format!(
                    "group `{bad}` is neither `epoch`, `train_loss`, `valid_<metric>` nor `test_<metric>`"
                ),
            ));
        }
        spec.metrics_regex = pattern.to_string();
    }
    Ok(spec)
}

/// The names the program's templates may use: its fixed parameters and
/// grid keys, the training settings when `[training]` is given, the
/// dataset's keys when `[dataset]` is, and the trial's own.
fn available(spec: &SweepSpec) -> Vec<String> {
    let mut names: Vec<String> = spec.model.params.keys().cloned().collect();
    names.extend(spec.grid.keys().filter(|k| *k != MODEL_KEY).cloned());
    if let Some(t) = &spec.training {
        names.extend(t.as_params().into_keys());
    }
    if let Some(d) = &spec.dataset {
        names.extend(DATASET_PLACEHOLDERS.iter().map(|s| s.to_string()));
        if d.folds.is_some() {
            names.push("fold".into());
        }
    }
    names.extend(
        TRIAL_PLACEHOLDERS
            .iter()
            .filter(|n| **n != "fold")
            .map(|s| s.to_string()),
    );
    names
}

/// Checks every template of the program: each placeholder names a
/// parameter, a training or dataset key, or one of the trial's own
/// (`seed`, `trial_id`, `output_dir`, `fold` with folds).
pub(super) fn check_templates(
    spec: &SweepSpec,
    command: &CommandSpec,
    loc: &SpanLocator<'_>,
) -> Result<(), SweepError> {
    let names = available(spec);
    for (what, template) in command.templates() {
        let key = what.split(['[', '.']).next().unwrap_or("argv");
        let found = placeholders(template)
            .map_err(|m| loc.key_error("model", key, format!("{what}: {m}")))?;
        if let Some(missing) = found.iter().find(|n| !names.iter().any(|a| a == *n)) {
            let mut known = names.clone();
            known.sort_unstable();
            known.dedup();
            let hint = match *missing {
                "epochs" | "batch_size" | "lr" | "weight_decay" | "grad_clip"
                | "valid_fraction" => {
                    " (training settings are placeholders when the sweep has a [training] table)"
                }
                m if m.starts_with("dataset_") => {
                    " (dataset keys are placeholders when the sweep has a [dataset] table)"
                }
                "fold" => " (`fold` needs `folds` in [dataset])",
                _ => "",
            };
            return Err(loc.key_error(
                "model",
                key,
                format!(
                    "{what}: `{{{missing}}}` names no parameter of the sweep{hint}; known: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Parameters no template of the program uses (it may read them from
/// `SIGSWEEP_PARAMS`).
pub(super) fn unused(spec: &SweepSpec, command: &CommandSpec) -> Vec<String> {
    let used: Vec<&str> = command
        .templates()
        .into_iter()
        .filter_map(|(_, t)| placeholders(t).ok())
        .flatten()
        .collect();
    spec.model
        .params
        .keys()
        .chain(spec.grid.keys().filter(|k| *k != MODEL_KEY))
        .filter(|k| !used.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// Why `command`'s program cannot start on this machine, when its name has
/// no placeholder: a path (relative to `workdir`, when that has none) that
/// is not a file, or a bare name on no `PATH` directory.
pub(super) fn missing_program(command: &CommandSpec) -> Option<String> {
    let program = command.argv.first()?;
    if program.contains('{') || command.workdir.contains('{') {
        return None;
    }
    let exists = |p: &std::path::Path| p.is_file();
    if program.contains('/') {
        let path = std::path::Path::new(program);
        let path = if path.is_relative() && !command.workdir.is_empty() {
            std::path::Path::new(&command.workdir).join(path)
        } else {
            path.to_path_buf()
        };
        return (!exists(&path))
            .then(|| format!("the program `{}` does not exist", path.display()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| exists(&dir.join(program)));
    (!found).then(|| format!("the program `{program}` is on no directory of PATH"))
}
