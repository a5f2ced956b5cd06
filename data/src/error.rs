//! The data crate's error: what went wrong with which file or parameter.

/// Errors raised while reading or generating a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Pickle {
        path: String,
        #[source]
        source: crate::pickle::PickleError,
    },
    #[error("invalid dataset parameter `{key}`: {message}")]
    Param { key: String, message: String },
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
