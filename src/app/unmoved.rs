//! Interim (issue #12, part 3): flows that have not moved here yet still answer `ApiError`; a
//! use case that calls one turns the answer back into its own error with [`from_api`]. This
//! module goes once they answer [`Error`].

use super::Error;
use crate::error::ApiError;

pub(crate) fn from_api(e: ApiError) -> Error {
    match e {
        ApiError::Validation(errors) => Error::Validation(errors),
        ApiError::NotFound(what) => Error::NotFound(what),
        ApiError::Forbidden => Error::Forbidden,
        ApiError::Conflict { kind, detail, field } => Error::Conflict { kind, detail, field },
        ApiError::Unprocessable { kind, detail, field } => Error::Unprocessable { kind, detail, field },
        ApiError::DuplicateReferral { existing_referral_id } => Error::DuplicateReferral { existing_referral_id },
        ApiError::InvalidTransition { entity, current, event, hint } => {
            Error::InvalidTransition { entity, current, event, hint }
        }
        ApiError::Store(e) => Error::Store(e),
        ApiError::Unavailable(cause) => Error::Unavailable(cause),
        other => Error::Internal(other.to_string()),
    }
}
