//! The metrics protocol of training programs: one JSON object per line in
//! the file named by `SIGSWEEP_METRICS`, or lines of the program's output
//! matched by the sweep's `metrics_regex`.
//!
//! - an epoch line: `{"epoch": 3, "train_loss": 0.41, "valid": {…}, "test": {…}}`;
//!   epochs are 1-based and strictly increasing;
//! - a final line: `{"final": {"epoch": n, "valid": {…}, "test": {…}}}`, for a
//!   program that selects its own epoch; it is then the trial's result;
//! - unknown top-level keys are ignored; every metric is a finite number.
//!
//! Every error names the line.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Most epoch lines one trial may report.
pub const MAX_EPOCHS: u32 = 100_000;
/// Most metrics per split on one line.
const MAX_METRICS: usize = 256;
/// Longest metric name.
const MAX_NAME: usize = 128;

/// One epoch's report.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochLine {
    pub epoch: u32,
    pub train_loss: f64,
    pub valid: BTreeMap<String, f64>,
    pub test: BTreeMap<String, f64>,
}

/// What one line says.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Epoch(EpochLine),
    /// The program's own selection (its `train_loss` is not used).
    Final(EpochLine),
}

/// Checks the order of a program's lines and turns them into [`Line`]s.
#[derive(Debug, Default)]
pub struct Reader {
    last_epoch: u32,
    epochs: u32,
    final_seen: bool,
}

impl Reader {
    /// Reads line `number` (1-based) of the metrics file. Blank lines are
    /// skipped (`Ok(None)`).
    pub fn json_line(&mut self, number: usize, text: &str) -> Result<Option<Line>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let at = |m: String| format!("SIGSWEEP_METRICS line {number}: {m}");
        let value: Value = serde_json::from_str(text).map_err(|e| {
            if text.contains("NaN") || text.contains("Infinity") {
                at("a value is not finite (NaN or Infinity)".into())
            } else {
                at(format!("not a JSON object: {e}"))
            }
        })?;
        let Value::Object(obj) = value else {
            return Err(at("not a JSON object".into()));
        };
        let line = if let Some(f) = obj.get("final") {
            let Value::Object(f) = f else {
                return Err(at("`final` must be an object".into()));
            };
            Line::Final(epoch_line(f, false).map_err(at)?)
        } else {
            Line::Epoch(epoch_line(&obj, true).map_err(at)?)
        };
        self.accept(line).map(Some).map_err(at)
    }

    /// Reads line `number` of the program's output through `regex`: a line
    /// that does not match is not a report (`Ok(None)`).
    pub fn regex_line(
        &mut self,
        regex: &regex::Regex,
        number: usize,
        text: &str,
    ) -> Result<Option<Line>, String> {
        let Some(caps) = regex.captures(text) else {
            return Ok(None);
        };
        let at = |m: String| format!("output line {number} (matched by metrics_regex): {m}");
        let mut obj = Map::new();
        let mut valid = Map::new();
        let mut test = Map::new();
        for name in regex.capture_names().flatten() {
            let Some(m) = caps.name(name) else {
                continue;
            };
            let raw = m.as_str().trim();
            let number: f64 = raw
                .parse()
                .map_err(|_| at(format!("group `{name}` captured `{raw}`, not a number")))?;
            let value = serde_json::Number::from_f64(number)
                .map(Value::Number)
                .ok_or_else(|| at(format!("group `{name}` is not finite ({raw})")))?;
            if let Some(metric) = name.strip_prefix("valid_") {
                valid.insert(metric.to_string(), value);
            } else if let Some(metric) = name.strip_prefix("test_") {
                test.insert(metric.to_string(), value);
            } else if name == "epoch" {
                let epoch = raw
                    .parse::<u64>()
                    .map_err(|_| at(format!("the epoch `{raw}` is not a whole number")))?;
                obj.insert("epoch".into(), Value::from(epoch));
            } else {
                obj.insert(name.to_string(), value);
            }
        }
        obj.insert("valid".into(), Value::Object(valid));
        obj.insert("test".into(), Value::Object(test));
        let line = Line::Epoch(epoch_line(&obj, true).map_err(at)?);
        self.accept(line).map(Some).map_err(at)
    }

    fn accept(&mut self, line: Line) -> Result<Line, String> {
        if self.final_seen {
            return Err("nothing may follow the `final` line".into());
        }
        match &line {
            Line::Epoch(e) => {
                if e.epoch <= self.last_epoch {
                    return Err(format!(
                        "epoch {} after epoch {}: epochs are 1-based and strictly increasing",
                        e.epoch, self.last_epoch
                    ));
                }
                self.epochs += 1;
                if self.epochs > MAX_EPOCHS {
                    return Err(format!("more than {MAX_EPOCHS} epoch lines"));
                }
                self.last_epoch = e.epoch;
            }
            Line::Final(_) => self.final_seen = true,
        }
        Ok(line)
    }
}

fn epoch_line(obj: &Map<String, Value>, needs_loss: bool) -> Result<EpochLine, String> {
    let epoch = match obj.get("epoch") {
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|e| (1..=u64::from(u32::MAX)).contains(e))
            .ok_or_else(|| format!("`epoch` is {n}, not a whole number from 1"))?
            as u32,
        Some(other) => return Err(format!("`epoch` is {other}, not a number")),
        None => return Err("no `epoch` (1-based)".into()),
    };
    let train_loss = match obj.get("train_loss") {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("`train_loss` of epoch {epoch} is not a finite number"))?,
        Some(other) => {
            return Err(format!(
                "`train_loss` of epoch {epoch} is {other}, not a number"
            ));
        }
        None if needs_loss => {
            return Err(format!(
                "epoch {epoch} has no `train_loss` (the epoch's mean training loss)"
            ));
        }
        None => f64::NAN,
    };
    Ok(EpochLine {
        epoch,
        train_loss,
        valid: metrics(obj, "valid", epoch)?,
        test: metrics(obj, "test", epoch)?,
    })
}

fn metrics(
    obj: &Map<String, Value>,
    split: &str,
    epoch: u32,
) -> Result<BTreeMap<String, f64>, String> {
    let Some(v) = obj.get(split) else {
        return Ok(BTreeMap::new());
    };
    let Value::Object(m) = v else {
        return Err(format!(
            "`{split}` of epoch {epoch} is not an object of metrics"
        ));
    };
    if m.len() > MAX_METRICS {
        return Err(format!(
            "`{split}` of epoch {epoch} has more than {MAX_METRICS} metrics"
        ));
    }
    m.iter()
        .map(|(k, v)| {
            if k.is_empty() || k.len() > MAX_NAME || k.chars().any(char::is_control) {
                return Err(format!(
                    "`{split}` of epoch {epoch}: metric names are 1 to {MAX_NAME} printable bytes"
                ));
            }
            let x = v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                format!("`{split}.{k}` of epoch {epoch} is {v}, not a finite number")
            })?;
            Ok((k.clone(), x))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{Line, Reader};

    #[test]
    fn epoch_and_final_lines() {
        let mut r = Reader::default();
        let l = r
            .json_line(1, r#"{"epoch": 1, "train_loss": 0.5, "valid": {"acc": 0.6}, "test": {"acc": 0.55}, "lr": 0.1}"#)
            .unwrap()
            .unwrap();
        let Line::Epoch(e) = l else { panic!("epoch") };
        assert_eq!(
            (e.epoch, e.train_loss, e.valid["acc"], e.test["acc"]),
            (1, 0.5, 0.6, 0.55)
        );
        assert!(r.json_line(2, "  ").unwrap().is_none());
        let err = r
            .json_line(3, r#"{"epoch": 1, "train_loss": 0.4}"#)
            .unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("strictly increasing"),
            "{err}"
        );
        assert!(
            r.json_line(4, r#"{"epoch": 3, "train_loss": 0.4}"#).is_ok(),
            "gaps are fine"
        );
        let f = r
            .json_line(
                5,
                r#"{"final": {"epoch": 1, "valid": {"acc": 0.6}, "test": {"acc": 0.55}}}"#,
            )
            .unwrap()
            .unwrap();
        assert!(matches!(f, Line::Final(ref e) if e.epoch == 1));
        let err = r
            .json_line(6, r#"{"epoch": 4, "train_loss": 0.4}"#)
            .unwrap_err();
        assert!(err.contains("follow the `final`"), "{err}");
    }

    #[test]
    fn malformed_lines_name_the_line_and_the_problem() {
        let cases = [
            ("not json", "not a JSON object"),
            ("[1, 2]", "not a JSON object"),
            (r#"{"epoch": 1, "train_loss": NaN}"#, "not finite"),
            (r#"{"epoch": 0, "train_loss": 1}"#, "from 1"),
            (r#"{"epoch": 1.5, "train_loss": 1}"#, "whole number"),
            (r#"{"train_loss": 1}"#, "no `epoch`"),
            (r#"{"epoch": 1}"#, "no `train_loss`"),
            (
                r#"{"epoch": 1, "train_loss": 1, "valid": {"acc": "x"}}"#,
                "`valid.acc`",
            ),
            (
                r#"{"epoch": 1, "train_loss": 1, "test": [1]}"#,
                "not an object",
            ),
            (r#"{"final": 3}"#, "`final` must be an object"),
        ];
        for (text, expected) in cases {
            let err = Reader::default().json_line(7, text).unwrap_err();
            assert!(
                err.contains("line 7") && err.contains(expected),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn regex_lines() {
        let re = regex::Regex::new(
            r"epoch (?P<epoch>\d+) loss (?P<train_loss>\S+) val_acc (?P<valid_acc>\S+) test_acc (?P<test_acc>\S+)",
        )
        .unwrap();
        let mut r = Reader::default();
        assert!(r.regex_line(&re, 1, "loading data").unwrap().is_none());
        let Line::Epoch(e) = r
            .regex_line(&re, 2, "epoch 1 loss 0.7 val_acc 0.5 test_acc 0.4")
            .unwrap()
            .unwrap()
        else {
            panic!("epoch")
        };
        assert_eq!((e.epoch, e.valid["acc"], e.test["acc"]), (1, 0.5, 0.4));
        let err = r
            .regex_line(&re, 3, "epoch 2 loss nan val_acc 0.5 test_acc 0.4")
            .unwrap_err();
        assert!(
            err.contains("output line 3") && err.contains("not finite"),
            "{err}"
        );
    }
}
