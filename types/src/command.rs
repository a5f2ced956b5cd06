//! A training program run as a trial (`[model] name = "command"`): the
//! command's description, and the placeholders of its argument templates.
//! The coordinator checks the templates when it parses a sweep file; the
//! worker fills them for each trial. Both use [`placeholders`] and [`fill`],
//! so they cannot disagree about what a template means.
//!
//! Template syntax: `{name}` is replaced by the value of `name`; `{{` and
//! `}}` are literal braces. A name is `[A-Za-z_][A-Za-z0-9_.]*`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The model name of a training program.
pub const COMMAND_MODEL: &str = "command";

/// The launcher that starts one process per GPU with PyTorch's elastic
/// launcher (`torchrun --standalone --nproc_per_node N …`).
pub const TORCHRUN: &str = "torchrun";

/// Longest argument template, environment value or working directory.
pub const MAX_TEMPLATE_LEN: usize = 4096;
/// Most arguments and environment variables.
pub const MAX_ARGS: usize = 256;

/// Placeholders every trial fills besides its parameters.
pub const TRIAL_PLACEHOLDERS: &[&str] = &["seed", "trial_id", "output_dir", "fold"];

/// Placeholders a `[dataset]` table adds.
pub const DATASET_PLACEHOLDERS: &[&str] = &[
    "dataset_kind",
    "dataset_path",
    "dataset_generator",
    "dataset_params",
];

/// How a worker runs a `command` trial.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// The program and its arguments, as templates.
    pub argv: Vec<String>,
    /// The working directory (a template); the worker's own when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workdir: String,
    /// Extra environment variables (values are templates).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Empty, or [`TORCHRUN`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub launcher: String,
    /// Processes torchrun starts when the trial has no GPU (with GPUs: one
    /// per GPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u32>,
    /// A regular expression applied to each line the program prints, for
    /// programs that do not write `SIGSWEEP_METRICS` (named groups: `epoch`,
    /// optionally `train_loss`, and `valid_<metric>` / `test_<metric>`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metrics_regex: String,
}

impl CommandSpec {
    /// Every template of the command: the arguments, the working directory
    /// and the environment values, each with where it is written.
    pub fn templates(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = self
            .argv
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("argv[{i}]"), a.as_str()))
            .collect();
        if !self.workdir.is_empty() {
            out.push(("workdir".into(), &self.workdir));
        }
        out.extend(
            self.env
                .iter()
                .map(|(k, v)| (format!("env.{k}"), v.as_str())),
        );
        out
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Brace(char),
    Name(&'a str),
}

fn parse(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let bytes = template.as_bytes();
    let (mut i, mut start) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'}' if bytes.get(i + 1) == Some(&bytes[i]) => {
                out.push(Piece::Text(&template[start..i]));
                out.push(Piece::Brace(bytes[i] as char));
                i += 2;
                start = i;
            }
            b'{' => {
                out.push(Piece::Text(&template[start..i]));
                let close = template[i + 1..].find('}').ok_or_else(|| {
                    format!("`{{` at byte {i} is never closed (write `{{{{` for a literal brace)")
                })?;
                let name = &template[i + 1..i + 1 + close];
                let valid = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                if !valid {
                    return Err(format!(
                        "`{{{name}}}` is not a placeholder: names are letters, digits, `_` and `.` (write `{{{{` for a literal brace)"
                    ));
                }
                out.push(Piece::Name(name));
                i += close + 2;
                start = i;
            }
            b'}' => {
                return Err(format!(
                    "`}}` at byte {i} closes nothing (write `}}}}` for a literal brace)"
                ));
            }
            _ => i += 1,
        }
    }
    out.push(Piece::Text(&template[start..]));
    Ok(out)
}

/// The placeholder names of `template`, in order (repeats kept).
pub fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    Ok(parse(template)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Name(n) => Some(n),
            _ => None,
        })
        .collect())
}

/// `template` with every placeholder replaced by `value(name)`; a name
/// without a value is an error naming it.
pub fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    for piece in parse(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Brace(c) => out.push(c),
            Piece::Name(n) => out.push_str(
                &value(n).ok_or_else(|| format!("`{{{n}}}` names no parameter of this trial"))?,
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{fill, placeholders};

    #[test]
    fn placeholders_and_escapes() {
        assert_eq!(
            placeholders("--lr={lr} --seed {seed}").unwrap(),
            vec!["lr", "seed"]
        );
        assert_eq!(placeholders("{{literal}} x").unwrap(), Vec::<&str>::new());
        assert!(
            placeholders("{unclosed")
                .unwrap_err()
                .contains("never closed")
        );
        assert!(placeholders("a}b").unwrap_err().contains("closes nothing"));
        assert!(
            placeholders("{a b}")
                .unwrap_err()
                .contains("not a placeholder")
        );
        assert!(
            placeholders("{}")
                .unwrap_err()
                .contains("not a placeholder")
        );
        let v = |n: &str| (n == "lr").then(|| "0.001".to_string());
        assert_eq!(fill("--lr={lr} {{x}}", v).unwrap(), "--lr=0.001 {x}");
        assert!(fill("{seed}", v).unwrap_err().contains("`{seed}`"));
        assert_eq!(fill("plain", v).unwrap(), "plain");
        assert_eq!(fill("é{lr}ü", v).unwrap(), "é0.001ü");
    }
}
