//! TRANSITIONAL (issue #12, part 3): the store functions of the payouts, ambassadors, codes and
//! program side still answer `ApiError` on this branch (they move to `app` on their own
//! branch). The use cases reach them through [`api`], and lost unique races through
//! [`unique_race`]. The lead deletes this module at the merge: once those functions return
//! `QueryResult`, `StoreError` or `app::Result`, `?` converts them as it is, and every call
//! site reads `.map_err(bridge::…)`.

use super::Error;
use crate::error::ApiError;
use crate::store::StoreError;

/// An `ApiError` from a store function not yet moved, as the use case's error.
pub(crate) fn api(e: ApiError) -> Error {
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

/// [`StoreError::unique_race`] for a use case: a unique index refused the row → `LostRace`,
/// any other database error as it is.
pub(crate) fn unique_race(e: diesel::result::Error) -> Error {
    api(StoreError::unique_race(e))
}
