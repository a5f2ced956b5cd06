//! Whether a metric is maximised or minimised: one definition for the sweep
//! file, the scheduler's selection and the report.

use serde::{Deserialize, Serialize};

/// Whether higher or lower values of a metric are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    /// Higher is better (accuracy, F1, correlation).
    Max,
    /// Lower is better (MAE, loss).
    Min,
}

impl Goal {
    /// Whether `a` is strictly better than `b` under this goal.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Goal::Max => a > b,
            Goal::Min => a < b,
        }
    }

    /// `+1` for [`Goal::Max`], `-1` for [`Goal::Min`]: multiply a value to make higher better.
    pub fn sign(self) -> f64 {
        match self {
            Goal::Max => 1.0,
            Goal::Min => -1.0,
        }
    }

    /// `"max"` or `"min"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Goal::Max => "max",
            Goal::Min => "min",
        }
    }
}
