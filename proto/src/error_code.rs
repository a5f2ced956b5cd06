//! A typed reason in a gRPC error, so that clients branch on a code instead
//! of matching message text. The coordinator attaches it to the `Status` it
//! answers with (metadata key [`ErrorCode::METADATA_KEY`]); clients read it
//! back with [`ErrorCode::of`]. A status without one (from a proxy, an older
//! coordinator, tonic itself) reads as `None`: decide on the gRPC code then.

/// Why the coordinator refused a call, beyond the gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The worker id is not registered (the coordinator restarted or expired
    /// it): register again.
    UnknownWorker,
    /// The sweep id names no sweep.
    UnknownSweep,
    /// The trial id names no trial.
    UnknownTrial,
    /// The worker's generation is older than its registration: another
    /// process registered under its name.
    StaleGeneration,
    /// The sweep file or request is invalid.
    Invalid,
}

impl ErrorCode {
    /// The metadata key of the code in a `Status`.
    pub const METADATA_KEY: &'static str = "sigsweep-error";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownWorker => "unknown-worker",
            Self::UnknownSweep => "unknown-sweep",
            Self::UnknownTrial => "unknown-trial",
            Self::StaleGeneration => "stale-generation",
            Self::Invalid => "invalid",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::UnknownWorker,
            Self::UnknownSweep,
            Self::UnknownTrial,
            Self::StaleGeneration,
            Self::Invalid,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// `status` with this code attached.
    pub fn attach(self, mut status: tonic::Status) -> tonic::Status {
        status.metadata_mut().insert(
            Self::METADATA_KEY,
            tonic::metadata::MetadataValue::from_static(self.as_str()),
        );
        status
    }

    /// The code attached to `status`, if any.
    pub fn of(status: &tonic::Status) -> Option<Self> {
        status
            .metadata()
            .get(Self::METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn a_code_survives_the_status_and_text_is_not_read() {
        for code in [
            ErrorCode::UnknownWorker,
            ErrorCode::UnknownSweep,
            ErrorCode::UnknownTrial,
            ErrorCode::StaleGeneration,
            ErrorCode::Invalid,
        ] {
            let s = code.attach(tonic::Status::not_found("whatever"));
            assert_eq!(ErrorCode::of(&s), Some(code));
        }
        // The message alone means nothing.
        assert_eq!(
            ErrorCode::of(&tonic::Status::not_found("unknown worker w1")),
            None
        );
    }
}
