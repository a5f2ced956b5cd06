//! Why a pickle could not be read.

use std::fmt;

/// Why a pickle could not be read: what went wrong, at which byte offset,
/// and while executing which opcode (when one was being executed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleError {
    /// Offset of the opcode being executed (or of the end of input).
    pub offset: u64,
    /// The opcode's name, e.g. `BINUNICODE`.
    pub opcode: Option<&'static str>,
    pub message: String,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pickle: {} (byte {}", self.message, self.offset)?;
        if let Some(op) = self.opcode {
            write!(f, ", opcode {op}")?;
        }
        write!(f, ")")
    }
}

impl std::error::Error for PickleError {}
