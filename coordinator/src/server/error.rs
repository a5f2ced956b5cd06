//! The one mapping from the coordinator's errors to gRPC statuses, with the
//! typed [`sigsweep_proto::ErrorCode`] attached so clients never match text.

use tonic::Status;

use crate::service::CoordinatorError;

impl From<CoordinatorError> for Status {
    fn from(e: CoordinatorError) -> Self {
        use sigsweep_proto::ErrorCode;
        let msg = e.to_string();
        match e {
            CoordinatorError::Sweep(_) | CoordinatorError::Invalid(_) => {
                ErrorCode::Invalid.attach(Status::invalid_argument(msg))
            }
            CoordinatorError::UnknownSweep(_) => {
                ErrorCode::UnknownSweep.attach(Status::not_found(msg))
            }
            CoordinatorError::UnknownTrial(_) => {
                ErrorCode::UnknownTrial.attach(Status::not_found(msg))
            }
            CoordinatorError::UnknownWorker(_) => {
                ErrorCode::UnknownWorker.attach(Status::not_found(msg))
            }
            CoordinatorError::StaleGeneration { .. } => {
                ErrorCode::StaleGeneration.attach(Status::failed_precondition(msg))
            }
            // A deposed leader's write was refused: the caller retries and
            // lands on the new leader.
            CoordinatorError::Store(
                crate::store::StoreError::Unavailable(_) | crate::store::StoreError::Fenced { .. },
            ) => Status::unavailable(msg),
            CoordinatorError::Store(_) => Status::internal(msg),
            CoordinatorError::Full(_) => Status::resource_exhausted(msg),
        }
    }
}
