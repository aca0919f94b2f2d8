//! What a use case can answer besides success, in the domain's words. Nothing here knows HTTP:
//! `crate::error` maps every variant to a problem+json response once, at the edge.

use diesel::{OptionalExtension, QueryResult};

use crate::domain::{DomainError, FieldError};
use crate::store::{StoreError, WriteError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not do this to this record (beyond what its role already allows).
    #[error("forbidden")]
    Forbidden,
    /// A uniqueness or state rule: `kind` is the problem type (`email-taken`, `code-taken`, …).
    #[error("{detail}")]
    Conflict { kind: &'static str, detail: String, field: Option<&'static str> },
    /// A business rule refused otherwise well-formed input: `kind` is the problem type
    /// (`invalid-code`, `ambassador-inactive`, `self-referral`, …).
    #[error("{detail}")]
    Unprocessable { kind: &'static str, detail: String, field: Option<&'static str> },
    /// The client was already referred; names the live referral that won.
    #[error("client already referred")]
    DuplicateReferral { existing_referral_id: String },
    /// `hint`, when given, tells the caller which step comes first.
    #[error("cannot {event} a {entity} that is {current}")]
    InvalidTransition { entity: &'static str, current: String, event: String, hint: Option<String> },
    /// A concurrent request won and the use case gave it no more precise meaning.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database is busy, restarting or lost the connection: the caller may retry.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The request's `Idempotency-Key` is held by another request, so its change was not made
    /// (`db::claim`); the HTTP edge answers for the other request instead.
    #[error("idempotency key held by another request")]
    KeyInUse,
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
}

impl From<DomainError> for Error {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Validation(errors) => Self::Validation(errors),
            DomainError::InvalidTransition { entity, current, event } => {
                Self::InvalidTransition { entity, current, event, hint: None }
            }
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as Diesel};
        match e {
            Diesel::NotFound => Self::NotFound("resource"),
            ref e if crate::db::claim::is_key_in_use(e) => Self::KeyInUse,
            // Lost a serialisation race or hit a lock timeout: the client may simply retry.
            Diesel::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
                Self::Unavailable(info.message().to_owned())
            }
            Diesel::DatabaseError(_, ref info) if is_busy(info.message()) => Self::Unavailable(e.to_string()),
            // PostgreSQL broke a lock cycle by aborting this transaction (nothing of it stays):
            // a retry runs alone. The write paths take their locks in one order so that this
            // should not happen (see the `ambassador_tallies` migration); if it does, it is
            // a retry, not a server error.
            Diesel::DatabaseError(_, ref info) if info.message().contains("deadlock detected") => {
                Self::Unavailable(e.to_string())
            }
            // The database went away under the connection (restart, failover, a terminated
            // backend): the connection is thrown away when it returns to the pool, and a
            // retry gets a fresh one.
            Diesel::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _)
            | Diesel::BrokenTransactionManager => Self::Unavailable(e.to_string()),
            Diesel::DatabaseError(_, ref info) if is_connection_lost(info.message()) => {
                Self::Unavailable(e.to_string())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

fn is_busy(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database is busy")
}

/// libpq's and the server's words for a connection that is gone (not every path sets
/// diesel's `ClosedConnection` kind).
fn is_connection_lost(message: &str) -> bool {
    [
        "server closed the connection",
        "terminating connection",
        "no connection to the server",
        "connection to server",
        "could not receive data from server",
        "could not send data to server",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl From<crate::db::TaskError> for Error {
    fn from(e: crate::db::TaskError) -> Self {
        use crate::db::TaskError;
        match e {
            TaskError::Pool(e) => e.into(),
            TaskError::Queued(_) => Self::Unavailable(e.to_string()),
            TaskError::Query(e) => e.into(),
            TaskError::Task(cause) => Self::Internal(cause),
        }
    }
}

impl From<WriteError> for Error {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Race(e) => e.into(),
            WriteError::Query(e) => e.into(),
        }
    }
}

/// A store lookup's row, or [`Error::NotFound`] naming what was looked for.
pub trait Found<T> {
    fn or_not_found(self, what: &'static str) -> Result<T>;
}

impl<T> Found<T> for QueryResult<T> {
    fn or_not_found(self, what: &'static str) -> Result<T> {
        self.optional()?.ok_or(Error::NotFound(what))
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Self::Unavailable(format!("database pool: {e}"))
    }
}
