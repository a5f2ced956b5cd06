//! An error in a sweep file: file, line, column, key and what is wrong.

/// An error in a sweep file: where it is and what is wrong.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{file}:{line}:{column}: {}{message}", key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
pub struct SweepError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub key: Option<String>,
    pub message: String,
}
