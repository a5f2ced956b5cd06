//! The data crate's error: what went wrong with which file or parameter.

/// Errors raised while reading or generating a dataset. Each message is
/// whole: the underlying error is part of it and not also exposed as the
/// error's source, so a printed chain (`{:#}`) says it once.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: {error}")]
    Pickle {
        path: String,
        error: crate::pickle::PickleError,
    },
    #[error("invalid dataset parameter `{key}`: {message}")]
    Param { key: String, message: String },
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
